/* trigger.core bindings of the Postgres text values (csrc/pgtext.c): pg_array, pg_timestamp,
 * and the array builder run_fields (lrunfields.c) shares. */
#include "compat.h"
#include "lcore.h"
#include "pgtext.h"

typedef struct array_builder {
    lua_State *L;
    int null_index; /* stack index of the value that stands for NULL */
    int mt_index;   /* stack index of the metatable of arrays, 0: none */
    int depth;
} array_builder;

static int ab_open(void *ud) {
    array_builder *b = ud;
    if (!lua_checkstack(b->L, 4)) return -1;
    lua_newtable(b->L);
    if (b->mt_index != 0) {
        lua_pushvalue(b->L, b->mt_index);
        lua_setmetatable(b->L, -2);
    }
    b->depth++;
    return 0;
}

static void ab_append(lua_State *L) { /* pops the value into the table below it */
    lua_rawseti(L, -2, (int)tr_rawlen(L, -2) + 1);
}

static int ab_close(void *ud) {
    array_builder *b = ud;
    if (--b->depth > 0) ab_append(b->L);
    return 0;
}

static int ab_element(void *ud, const char *s, size_t n, int is_null) {
    array_builder *b = ud;
    if (is_null)
        lua_pushvalue(b->L, b->null_index);
    else
        lua_pushlstring(b->L, s, n);
    ab_append(b->L);
    return 0;
}

/* Push the array literal s as a nested table (NULL elements as the value at null_index, each
 * table with the metatable at mt_index unless it is 0). Returns 0, or the tr_pg_array_parse
 * code with the stack as it was. */
int tr_push_pg_array(lua_State *L, const char *s, size_t n, int null_index, int mt_index,
                     size_t *at) {
    int top = lua_gettop(L);
    tr_buf *scratch = tr_scratch_take(L); /* top + 1 */
    array_builder b = {L, null_index, mt_index, 0};
    tr_pg_array_sink sink = {ab_open, ab_close, ab_element, &b};
    int rc = tr_pg_array_parse_with(s, n, &sink, scratch, at);
    tr_scratch_give(L, top + 1);
    if (rc != 0)
        lua_settop(L, top);
    else
        lua_remove(L, top + 1);
    return rc;
}

void tr_pg_array_problem(lua_State *L, int rc, size_t at) {
    if (rc == -2)
        lua_pushliteral(L, "array too deep or out of memory");
    else
        lua_pushfstring(L, "malformed Postgres array at byte %d", (int)at + 1);
}

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
