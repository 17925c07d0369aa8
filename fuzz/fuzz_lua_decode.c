/* libFuzzer target: the decoders that build Lua values (csrc/ljson.c, csrc/lshape.c,
 * csrc/lsuperjson.c),
 * inside a real Lua 5.4 state.
 *
 * Checks, beyond the sanitizers (and Lua's own API checks, see LUAI_ASSERT below):
 *   - core.json_decode and core.shape_messages agree on what is JSON: a body shape_messages
 *     takes is one json_decode takes, and valid JSON it refuses is refused for its shape, not
 *     as bad JSON;
 *   - what shape_messages hands out is well formed: operation, key (a string), value (a table,
 *     or false) per row message; control, false, false per control message;
 *   - superjson_leaves on the decoded document ({"json":…, "meta":{"values":…}}) either applies
 *     or leaves the value untouched, and never raises;
 *   - the Lua stack is back where it was after every call. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_assert.h"
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lcore.h"

/* Calls core[name](text, null) protected; leaves its results (or nil, error) on the stack. */
static int call(lua_State *L, const char *name, const uint8_t *data, size_t size) {
    lua_getfield(L, 1, name);
    lua_pushlstring(L, (const char *)data, size);
    lua_pushlightuserdata(L, NULL); /* stands for JSON null */
    int rc = lua_pcall(L, 2, 2, 0);
    FUZZ_ASSERT(rc == LUA_OK, "a decoder raised instead of returning nil, message");
    return !lua_isnil(L, -2);
}

static void check_list(lua_State *L, int list) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    FUZZ_ASSERT(n % 3 == 0, "the list is not made of triples");
    for (lua_Integer i = 1; i <= n; i += 3) {
        lua_rawgeti(L, list, i);
        lua_rawgeti(L, list, i + 1);
        lua_rawgeti(L, list, i + 2);
        FUZZ_ASSERT(lua_type(L, -3) == LUA_TSTRING, "an entry without operation or control");
        if (lua_type(L, -2) == LUA_TSTRING)
            FUZZ_ASSERT(lua_istable(L, -1) || (lua_isboolean(L, -1) && !lua_toboolean(L, -1)),
                        "a row message without a value table or false");
        else
            FUZZ_ASSERT(lua_isboolean(L, -2) && !lua_toboolean(L, -2) && lua_isboolean(L, -1) &&
                            !lua_toboolean(L, -1),
                        "a control entry that is not control, false, false");
        lua_pop(L, 3);
    }
}

static void check_superjson(lua_State *L, int doc) {
    if (!lua_istable(L, doc)) return;
    lua_getfield(L, 1, "superjson_leaves");
    lua_getfield(L, doc, "json");
    lua_getfield(L, doc, "meta");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "values");
        lua_remove(L, -2);
    } else {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    int rc = lua_pcall(L, 2, 1, 0);
    FUZZ_ASSERT(rc == LUA_OK, "superjson_leaves raised");
    FUZZ_ASSERT(lua_isboolean(L, -1), "superjson_leaves did not answer true or false");
    lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = luaL_newstate();
    FUZZ_ASSERT(L != NULL, "no Lua state");
    lua_newtable(L); /* 1: the functions, as trigger.core has them */
    tr_open_json(L);
    tr_open_shape(L);
    tr_open_superjson(L);
    int top = lua_gettop(L);

    int as_json = call(L, "json_decode", data, size);
    int doc = lua_gettop(L) - 1;
    int as_shape = call(L, "shape_messages", data, size);
    if (as_shape) {
        FUZZ_ASSERT(as_json, "shape_messages took a body json_decode refuses");
        check_list(L, lua_gettop(L) - 1);
    } else {
        const char *why = lua_tostring(L, -1);
        FUZZ_ASSERT(why != NULL, "refused without a reason");
        if (as_json)
            FUZZ_ASSERT(strstr(why, " at byte ") == NULL, "JSON refused as if it were not JSON");
    }
    lua_pop(L, 2);
    if (as_json) check_superjson(L, doc);
    lua_pop(L, 2);
    FUZZ_ASSERT(lua_gettop(L) == top, "the stack is not back where it was");
    lua_close(L);
    return 0;
}
