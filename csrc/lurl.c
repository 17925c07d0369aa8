/* trigger.core.url_encode and is_token (tr_url_encode, tr_is_token in csrc/shape.c). */
#include "compat.h"
#include "lcore.h"
#include "shape.h"

static int url_encode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    tr_buf *b = tr_scratch_take(L);
    return tr_scratch_push(L, tr_url_encode_n(b, s, n), "out of memory");
}

/* is_token(s) -> whether a value from the server may be sent back in a request header */
static int is_token(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_pushboolean(L, tr_is_token(s, n));
    return 1;
}

void tr_open_url(lua_State *L) {
    lua_pushcfunction(L, is_token);
    lua_setfield(L, -2, "is_token");
    lua_pushcfunction(L, url_encode);
    lua_setfield(L, -2, "url_encode");
}
