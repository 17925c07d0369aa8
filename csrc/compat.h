/* One header that lets the bindings build against Lua 5.4 and LuaJIT 2.1 (Lua 5.1 ABI).
 * Names carry our own prefix so they never clash with LuaJIT's or lua-compat's. */
#ifndef TR_COMPAT_H
#define TR_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

/* The one symbol each module exports (built with -fvisibility=hidden: the tr_* functions stay
 * inside their .so, so core.so and curl.so never clash over the buf.c both link). */
#if defined(__GNUC__) || defined(__clang__)
#define TR_EXPORT __attribute__((visibility("default")))
#else
#define TR_EXPORT
#endif

#if LUA_VERSION_NUM >= 502
#define tr_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
#define tr_newlib(L, l) luaL_newlib((L), (l))
#define tr_rawlen(L, i) lua_rawlen((L), (i))
#define tr_setuservalue(L, i) lua_setuservalue((L), (i))
#define tr_getuservalue(L, i) lua_getuservalue((L), (i))
#define tr_absindex(L, i) lua_absindex((L), (i))
#else
static inline void tr_setfuncs(lua_State *L, const luaL_Reg *l) {
    for (; l->name != NULL; l++) {
        lua_pushcfunction(L, l->func);
        lua_setfield(L, -2, l->name);
    }
}
#define tr_newlib(L, l) (lua_newtable(L), tr_setfuncs((L), (l)))
#define tr_rawlen(L, i) lua_objlen((L), (i))
/* LuaJIT userdata environments must be tables: that is all we store there. */
#define tr_setuservalue(L, i) lua_setfenv((L), (i))
#define tr_getuservalue(L, i) lua_getfenv((L), (i))
#define tr_absindex(L, i) ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)
#endif

/* luaL_newmetatable sets __name only on 5.3+; set it ourselves so error messages name our types. */
static inline int tr_newmetatable(lua_State *L, const char *name) {
    if (!luaL_newmetatable(L, name)) return 0;
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    return 1;
}

/* A userdata class: metatable `name` with `methods` as __index and `gc` as both __gc and
 * __close (it must be safe to call twice). Leaves the metatable on the stack for extras. */
static inline void tr_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                               lua_CFunction gc) {
    tr_newmetatable(L, name);
    lua_newtable(L);
    tr_setfuncs(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
}

static inline void *tr_checkudata(lua_State *L, int i, const char *name) {
    return luaL_checkudata(L, i, name);
}

#endif
