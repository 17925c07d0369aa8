/* trigger.core bindings of the Postgres text values (csrc/lib/pgtext.c): pg_array, pg_timestamp
 * (arrays pushed by tr_push_pg_array, lvalue.c). */
#include "compat.h"
#include "lcore.h"
#include "lib/pgtext.h"

/* pg_array(text [, null [, array_mt]]) -> nested table of strings, or nil, message
 * array_mt (a table, or nil): the metatable of each table (trigger.json.array_mt). */
static int pg_array(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    int marked = !lua_isnoneornil(L, 3);
    if (marked) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    size_t at = 0;
    int rc = tr_push_pg_array(L, s, n, 2, marked ? 3 : 0, &at);
    if (rc != 0) {
        lua_pushnil(L);
        tr_pg_array_problem(L, rc, at);
        return 2;
    }
    return 1;
}

/* pg_timestamp(text) -> "YYYY-MM-DDTHH:MM:SS.mmmZ", or nil, message */
static int pg_timestamp(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char out[TR_PG_ISO_LEN + 1];
    if (tr_pg_timestamp_iso(s, n, out) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "not a Postgres timestamp");
        return 2;
    }
    lua_pushlstring(L, out, TR_PG_ISO_LEN);
    return 1;
}
static const luaL_Reg functions[] = {
    {"pg_array", pg_array}, {"pg_timestamp", pg_timestamp}, {NULL, NULL}};

void tr_open_pgtext(lua_State *L) { tr_setfuncs(L, functions); }
