/* trigger.core: the I/O-free parts (shape protocol, Postgres values, run fields, JWT bytes,
 * URL encoding, the clock, JSON, superjson, HTTP/1). Loads anywhere, including inside nginx: no
 * libcurl here. Each binding file adds its own functions (lcore.h). */
#include "lcore.h"
#include "compat.h"

TR_EXPORT int luaopen_trigger_core(lua_State *L) {
    lua_newtable(L);
    tr_open_scratch(L);
    tr_open_shape(L);
    tr_open_pgtext(L);
    tr_open_runfields(L);
    tr_open_rowblob(L);
    tr_open_jwt(L);
    tr_open_clock(L);
    tr_open_json(L);
    tr_open_superjson(L);
    tr_open_http1(L);
    tr_open_sse(L);
    return 1;
}
