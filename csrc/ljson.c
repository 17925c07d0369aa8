/* core.json_decode: JSON text straight into Lua tables through the csrc/lib/json.c parser and the
 * value builder of lvalue.c. */
#include <stddef.h>

#include "compat.h"
#include "lcore.h"
#include "lib/json.h"
#include "lvalue.h"

/* json_decode(text [, null [, max_depth [, array_mt]]]) -> value, or nil, message
 * array_mt (a table, or nil): the metatable every array gets (trigger.json.array_mt), so that
 * an empty one still encodes as []. */
/* Upvalues: 1, 2 the short-string cache; 3 the scratch box between calls. */
#define SCRATCH_HOME lua_upvalueindex(3)

static int json_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer max_depth = luaL_optinteger(L, 3, TR_LJSON_DEFAULT_DEPTH);
    luaL_argcheck(L, max_depth >= 1 && max_depth <= TR_LJSON_MAX_DEPTH, 3, "depth out of range");
    int marked = !lua_isnoneornil(L, 4);
    if (marked) luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4); /* 2: the null value (nil when not given), 4: array_mt */
    tr_buf *scratch = tr_scratch_take_from(L, SCRATCH_HOME); /* 5 */
    /* On the C stack, not a userdata: nothing to free after a Lua error either, and no ~9 KB
     * allocation per call (per packet of every run: it made the GC run several times as often). */
    tr_ljson_builder bb;
    tr_ljson_builder *b = &bb;
    tr_ljson_builder_init(b, L, 2, marked ? 4 : 0, 1);
    int base = lua_gettop(L);
    tr_json_sink sink = tr_ljson_sink(b);
    size_t at = 0;
    const char *what = NULL;
    tr_json_status st = tr_json_parse_with(s, n, (int)max_depth, &sink, scratch, &at, &what);
    tr_scratch_give_to(L, 5, SCRATCH_HOME);
    if (st != TR_JSON_OK) return tr_ljson_failed(L, base, st, at, what);
    return 1;
}

void tr_open_json(lua_State *L) {
    tr_ljson_push_intern_upvalues(L);
    lua_pushboolean(L, 0); /* the scratch box's home */
    lua_pushcclosure(L, json_decode, 3);
    lua_setfield(L, -2, "json_decode");
}
