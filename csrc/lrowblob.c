/* trigger.core.row_table, row_column: a stored row blob (rowblob.h) read from Lua, for the
 * places that need a row's columns other than the run object's build (merging a partial
 * update, comparing two states of a run, a saved position). */
#include <string.h>

#include "compat.h"
#include "lcore.h"
#include "lib/rowblob.h"
#include "lvalue.h"

static const char *check_blob(lua_State *L, size_t *n) {
    const char *s = luaL_checklstring(L, 1, n);
    luaL_argcheck(L, tr_rowblob_is(s, *n), 1, "not a stored row");
    return s;
}

/* row_table(blob, null) -> the table the value object decodes to (as core.json_decode with
 * this null gives it) */
static int row_table(lua_State *L) {
    size_t n;
    const char *s = check_blob(L, &n);
    lua_settop(L, 2);
    tr_ljson_builder b;
    tr_ljson_builder_init(&b, L, 2, 0, 1);
    tr_json_sink sink = tr_ljson_sink(&b);
    if (tr_rowblob_replay(s, n, &sink, 1, 1) != 0) return luaL_argerror(L, 1, "not a stored row");
    return 1;
}

/* row_column(blob, name, null) -> the value of column `name` (the last one of that name), or
 * nil when the row has none */
static int row_column(lua_State *L) {
    size_t n, want;
    const char *s = check_blob(L, &n);
    const char *name = luaL_checklstring(L, 2, &want);
    lua_settop(L, 3);
    tr_rowblob_member m, found;
    found.tag = 0; /* (none) */
    int rc;
    size_t pos = 0;
    while ((rc = tr_rowblob_next(s, n, &pos, &m)) == 1)
        if (m.name_len == want && memcmp(m.name, name, want) == 0) found = m;
    if (rc < 0) return luaL_argerror(L, 1, "not a stored row");
    tr_push_rowblob_member(L, &found, 3, NULL, 0);
    return 1;
}

/* row_merge(old, changes) -> the blob of `old` with the columns of `changes` set over it */
static int row_merge(lua_State *L) {
    size_t n, k;
    const char *old = check_blob(L, &n);
    const char *changes = luaL_checklstring(L, 2, &k);
    luaL_argcheck(L, tr_rowblob_is(changes, k), 2, "not a stored row");
    lua_settop(L, 2);
    tr_buf *out = tr_scratch_take(L); /* 3 */
    int rc = tr_rowblob_merge(old, n, changes, k, out);
    if (rc == -2) {
        tr_scratch_give(L, 3);
        return luaL_error(L, "out of memory");
    }
    if (rc != 0) {
        tr_scratch_give(L, 3);
        return luaL_argerror(L, 1, "not a stored row");
    }
    return tr_scratch_push(L, 0, NULL);
}

void tr_open_rowblob(lua_State *L) {
    tr_ljson_push_intern_upvalues(L);
    lua_pushcclosure(L, row_table, 2);
    lua_setfield(L, -2, "row_table");
    lua_pushcfunction(L, row_column);
    lua_setfield(L, -2, "row_column");
    lua_pushcfunction(L, row_merge);
    lua_setfield(L, -2, "row_merge");
}
