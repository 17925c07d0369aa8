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
 *   - json_decode, given an array metatable (as trigger.json passes json.array_mt), marks
 *     exactly the arrays: a marked table has the keys 1..n and nothing else, an unmarked one
 *     only string keys (it was an object), at every depth;
 *   - superjson_leaves on the decoded document ({"json":…, "meta":{"values":…}}) either applies
 *     or leaves the value untouched, and never raises;
 *   - superjson_decode (the one pass) takes only documents json_decode takes whose annotations
 *     superjson_leaves takes, and gives what json_decode then superjson_leaves give;
 *   - core.shape_reader, fed the body in pieces (one byte at a time for short bodies, else at
 *     split points drawn from the body itself), gives exactly what shape_messages gives: the
 *     same list (value for value) or the same refusal text; and so does reader:parse, given
 *     the whole body 1 to 3 messages at a time; both with values as tables and as row blobs;
 *   - with row blobs (shape_messages(body, null, true)) the list is the tables' list but for
 *     the values kept as blobs: each reads back (row_table) as the table, row_column gives
 *     each of its columns, and run_fields gives the same nine results for blob and table;
 *     row_merge of two blobs reads back as the first table with the second's columns set;
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

/* Calls core[name](text, null) protected (json_decode: with depth 128 and the array
 * metatable at index 2 too; "shape_blobs": shape_messages with row blobs); leaves its results
 * (or nil, error) on the stack. */
static int call(lua_State *L, const char *name, const uint8_t *data, size_t size) {
    int json = strcmp(name, "json_decode") == 0, blobs = strcmp(name, "shape_blobs") == 0;
    lua_getfield(L, 1, blobs ? "shape_messages" : name);
    lua_pushlstring(L, (const char *)data, size);
    lua_pushlightuserdata(L, NULL); /* stands for JSON null */
    if (json) {
        lua_pushinteger(L, 128);
        lua_pushvalue(L, 2);
    }
    if (blobs) lua_pushboolean(L, 1);
    int rc = lua_pcall(L, json ? 4 : blobs ? 3 : 2, 2, 0);
    FUZZ_ASSERT(rc == LUA_OK, "a decoder raised instead of returning nil, message");
    return !lua_isnil(L, -2);
}

static void check_list(lua_State *L, int list, int blobs) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    FUZZ_ASSERT(n % 3 == 0, "the list is not made of triples");
    for (lua_Integer i = 1; i <= n; i += 3) {
        lua_rawgeti(L, list, i);
        lua_rawgeti(L, list, i + 1);
        lua_rawgeti(L, list, i + 2);
        FUZZ_ASSERT(lua_type(L, -3) == LUA_TSTRING, "an entry without operation or control");
        if (lua_type(L, -2) == LUA_TSTRING)
            FUZZ_ASSERT(lua_istable(L, -1) || (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) ||
                            (blobs && lua_type(L, -1) == LUA_TSTRING),
                        "a row message without a value table (or blob) or false");
        else
            FUZZ_ASSERT(lua_isboolean(L, -2) && !lua_toboolean(L, -2) && lua_isboolean(L, -1) &&
                            !lua_toboolean(L, -1),
                        "a control entry that is not control, false, false");
        lua_pop(L, 3);
    }
}

/* The table at `t` and those inside it: marked (metatable at index 2) iff an array. */
static void check_marks(lua_State *L, int t) {
    int marked = 0;
    if (lua_getmetatable(L, t)) {
        FUZZ_ASSERT(lua_rawequal(L, -1, 2), "a decoded table with a metatable not the marker");
        lua_pop(L, 1);
        marked = 1;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, t), keys = 0;
    FUZZ_ASSERT(lua_checkstack(L, 4), "no stack left");
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        keys++;
        if (marked)
            FUZZ_ASSERT(lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 &&
                            lua_tointeger(L, -2) <= n,
                        "a marked table (an array) with a key that is not 1..n");
        else
            FUZZ_ASSERT(lua_type(L, -2) == LUA_TSTRING, "an unmarked table (an object) with a key "
                                                        "that is not a string");
        if (lua_istable(L, -1)) check_marks(L, lua_gettop(L));
        lua_pop(L, 1);
    }
    if (marked) FUZZ_ASSERT(keys == n, "a marked table (an array) with a hole");
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

static int same_value(lua_State *L, int a, int b);

/* superjson_decode against the document json_decode made (at doc, or nil when it refused):
 * when the one pass answers, its value is the document's json with its leaves applied. Runs
 * before check_superjson, which may change the document in place. */
static void check_one_pass(lua_State *L, const uint8_t *data, size_t size, int as_json, int doc) {
    lua_getfield(L, 1, "superjson_decode");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushlightuserdata(L, NULL);
    lua_pushinteger(L, 128);
    lua_pushvalue(L, 2);
    FUZZ_ASSERT(lua_pcall(L, 4, 2, 0) == LUA_OK, "superjson_decode raised");
    if (!lua_toboolean(L, -1)) {
        FUZZ_ASSERT(lua_isboolean(L, -2), "superjson_decode gave up without saying false");
        lua_pop(L, 2);
        return;
    }
    FUZZ_ASSERT(as_json && lua_istable(L, doc), "the one pass took what json_decode refuses");
    int got = lua_gettop(L) - 1;
    lua_getfield(L, doc, "json");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlightuserdata(L, NULL);
    }
    int value = lua_gettop(L);
    lua_getfield(L, doc, "meta");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "values");
        if (!lua_isnil(L, -1) && !(lua_islightuserdata(L, -1) && !lua_touserdata(L, -1))) {
            lua_getfield(L, 1, "superjson_leaves");
            lua_pushvalue(L, value);
            lua_pushvalue(L, -3);
            FUZZ_ASSERT(lua_pcall(L, 2, 1, 0) == LUA_OK, "superjson_leaves raised");
            FUZZ_ASSERT(lua_toboolean(L, -1), "the one pass took annotations the leaves refuse");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    FUZZ_ASSERT(same_value(L, got, value), "the one pass and json_decode + leaves differ");
    lua_pop(L, 3);
}

/* Are the Lua values at a and b the same (tables key by key, at every depth)? */
static int same_value(lua_State *L, int a, int b) {
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    if (lua_type(L, a) != lua_type(L, b)) return 0;
    if (lua_type(L, a) == LUA_TNUMBER && lua_tonumber(L, a) != lua_tonumber(L, a))
        return lua_tonumber(L, b) != lua_tonumber(L, b); /* NaN (a "number" annotation) */
    if (!lua_istable(L, a)) return lua_rawequal(L, a, b);
    FUZZ_ASSERT(lua_checkstack(L, 6), "no stack left");
    int same = 1;
    lua_pushnil(L);
    while (same && lua_next(L, a) != 0) {
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        same = same_value(L, -2, -1);
        lua_pop(L, 2);
    }
    if (!same) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, b) != 0) {
        lua_pushvalue(L, -2);
        lua_rawget(L, a);
        int absent = lua_isnil(L, -1);
        lua_pop(L, 2);
        if (absent) {
            lua_pop(L, 1);
            return 0;
        }
    }
    return 1;
}

/* run_fields(row, null, array marker), its nine results on the stack. */
static void run_fields(lua_State *L, int row) {
    lua_getfield(L, 1, "run_fields");
    lua_pushvalue(L, row);
    lua_pushlightuserdata(L, NULL);
    lua_pushvalue(L, 2);
    FUZZ_ASSERT(lua_pcall(L, 3, 9, 0) == LUA_OK, "run_fields raised");
}

/* row_merge of the blobs at pa and pb against the tables at ta and tb merged in Lua. */
static void check_merge(lua_State *L, int pa, int pb, int ta, int tb) {
    lua_getfield(L, 1, "row_merge");
    lua_pushvalue(L, pa);
    lua_pushvalue(L, pb);
    FUZZ_ASSERT(lua_pcall(L, 2, 1, 0) == LUA_OK, "row_merge raised on blobs it was given");
    lua_getfield(L, 1, "row_table");
    lua_insert(L, -2);
    lua_pushlightuserdata(L, NULL);
    FUZZ_ASSERT(lua_pcall(L, 2, 1, 0) == LUA_OK, "row_table raised on a merged blob");
    lua_newtable(L);
    for (int t = ta; t; t = t == ta ? tb : 0) {
        lua_pushnil(L);
        while (lua_next(L, t) != 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    }
    FUZZ_ASSERT(same_value(L, -1, -2), "row_merge is not the tables merged");
    lua_pop(L, 2);
}

/* The blob-mode list at `blobs` against the table-mode list at `tables` (both good). */
static void check_blobs(lua_State *L, int tables, int blobs) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, tables), last = 0;
    FUZZ_ASSERT(n == (lua_Integer)lua_rawlen(L, blobs), "the blob list has another length");
    FUZZ_ASSERT(lua_checkstack(L, 30), "no stack left");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, tables, i);
        lua_rawgeti(L, blobs, i);
        int t = lua_gettop(L) - 1, b = t + 1;
        if (i % 3 != 0 || lua_type(L, b) != LUA_TSTRING) {
            FUZZ_ASSERT(same_value(L, t, b), "the blob list differs but for its blobs");
            lua_pop(L, 2);
            continue;
        }
        FUZZ_ASSERT(lua_istable(L, t), "a blob where the tables' list has no table");
        lua_getfield(L, 1, "row_table");
        lua_pushvalue(L, b);
        lua_pushlightuserdata(L, NULL);
        FUZZ_ASSERT(lua_pcall(L, 2, 1, 0) == LUA_OK, "row_table raised on a blob it made");
        FUZZ_ASSERT(same_value(L, -1, t), "a blob does not read back as the table");
        lua_pop(L, 1);
        lua_pushnil(L);
        while (lua_next(L, t) != 0) {
            lua_getfield(L, 1, "row_column");
            lua_pushvalue(L, b);
            lua_pushvalue(L, -4);
            lua_pushlightuserdata(L, NULL);
            FUZZ_ASSERT(lua_pcall(L, 3, 1, 0) == LUA_OK, "row_column raised");
            FUZZ_ASSERT(same_value(L, -1, -2), "row_column gives another value");
            lua_pop(L, 2);
        }
        run_fields(L, t);
        run_fields(L, b);
        for (int k = 0; k < 9; k++)
            FUZZ_ASSERT(same_value(L, b + 1 + k, b + 10 + k), "run_fields: blob and table differ");
        lua_pop(L, 18);
        if (last) { /* with the blob before it */
            lua_rawgeti(L, tables, last);
            lua_rawgeti(L, blobs, last);
            check_merge(L, b + 2, b, b + 1, t);
            lua_pop(L, 2);
        }
        last = i;
        lua_pop(L, 2);
    }
}

/* core.shape_reader (with row blobs when `blobs`) fed data in pieces ending at cuts[0..n) (then
 * the rest), finished; leaves its two results (list, nil or nil, message) on the stack. */
static void read_in_pieces(lua_State *L, const uint8_t *data, size_t size, const size_t *cuts,
                           size_t n, int blobs) {
    lua_getfield(L, 1, "shape_reader");
    lua_pushlightuserdata(L, NULL);
    lua_pushboolean(L, blobs);
    FUZZ_ASSERT(lua_pcall(L, 2, 1, 0) == LUA_OK, "shape_reader raised");
    int r = lua_gettop(L);
    size_t at = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t to = i < n ? cuts[i] : size;
        if (to > size) to = size;
        if (to < at) to = at;
        lua_getfield(L, r, "feed");
        lua_pushvalue(L, r);
        lua_pushlstring(L, (const char *)data + at, to - at);
        FUZZ_ASSERT(lua_pcall(L, 2, 2, 0) == LUA_OK, "reader:feed raised");
        int ok = lua_toboolean(L, -2);
        lua_pop(L, 2);
        at = to;
        if (!ok) break; /* refused: finish() says why */
    }
    lua_getfield(L, r, "finish");
    lua_pushvalue(L, r);
    FUZZ_ASSERT(lua_pcall(L, 1, 2, 0) == LUA_OK, "reader:finish raised");
    lua_remove(L, r);
}

/* core.shape_reader given the whole body by reader:parse(body, max) until it is done (at most
 * `max` messages a call), finished; leaves its two results on the stack. */
static void read_in_slices(lua_State *L, const uint8_t *data, size_t size, int max, int blobs) {
    lua_getfield(L, 1, "shape_reader");
    lua_pushlightuserdata(L, NULL);
    lua_pushboolean(L, blobs);
    FUZZ_ASSERT(lua_pcall(L, 2, 1, 0) == LUA_OK, "shape_reader raised");
    int r = lua_gettop(L);
    lua_pushlstring(L, (const char *)data, size); /* the same string every call */
    int body = lua_gettop(L);
    for (size_t calls = 0;; calls++) {
        FUZZ_ASSERT(calls <= size + 1, "reader:parse never gets done");
        lua_getfield(L, r, "parse");
        lua_pushvalue(L, r);
        lua_pushvalue(L, body);
        lua_pushinteger(L, max);
        FUZZ_ASSERT(lua_pcall(L, 3, 2, 0) == LUA_OK, "reader:parse raised");
        int more = lua_isboolean(L, -2) && !lua_toboolean(L, -2);
        FUZZ_ASSERT(lua_isboolean(L, -2) || lua_isstring(L, -1), "reader:parse: no reason");
        lua_pop(L, 2);
        if (!more) break; /* done, or refused: finish() says why */
    }
    lua_getfield(L, r, "finish");
    lua_pushvalue(L, r);
    FUZZ_ASSERT(lua_pcall(L, 1, 2, 0) == LUA_OK, "reader:finish raised");
    lua_remove(L, body);
    lua_remove(L, r);
}

/* The reader against shape_messages' results at whole (list or nil, message at whole+1). */
static void check_reader(lua_State *L, const uint8_t *data, size_t size, int whole, int blobs) {
    size_t cuts[256];
    size_t n = 0;
    if (size <= 256) {
        for (n = 0; n < size; n++)
            cuts[n] = n + 1;
    } else {
        uint32_t x = 2166136261u;
        for (size_t i = 0; i < 64 && i < size; i++)
            x = (x ^ data[i]) * 16777619u;
        for (n = 0; n < 16; n++) {
            x = x * 1103515245u + 12345u;
            cuts[n] = (n ? cuts[n - 1] : 0) + (x >> 8) % (size / 8 + 2);
        }
    }
    read_in_pieces(L, data, size, cuts, n, blobs);
    FUZZ_ASSERT(lua_isnil(L, -2) == lua_isnil(L, whole), "the reader and shape_messages differ "
                                                         "on whether the body is good");
    FUZZ_ASSERT(same_value(L, -2, whole), "the reader's list is not shape_messages' list");
    FUZZ_ASSERT(same_value(L, -1, whole + 1), "the reader refuses in other words");
    lua_pop(L, 2);
    read_in_slices(L, data, size, size > 0 ? 1 + data[size - 1] % 3 : 1, blobs);
    FUZZ_ASSERT(same_value(L, -2, whole), "reader:parse's list is not shape_messages' list");
    FUZZ_ASSERT(same_value(L, -1, whole + 1), "reader:parse refuses in other words");
    lua_pop(L, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = luaL_newstate();
    FUZZ_ASSERT(L != NULL, "no Lua state");
    lua_newtable(L); /* 1: the functions, as trigger.core has them */
    tr_open_json(L);
    tr_open_shape(L);
    tr_open_superjson(L);
    tr_open_rowblob(L);
    tr_open_runfields(L);
    lua_newtable(L); /* 2: the array marker (trigger.json.array_mt) */
    int top = lua_gettop(L);

    int as_json = call(L, "json_decode", data, size);
    int doc = lua_gettop(L) - 1;
    if (as_json && lua_istable(L, doc)) check_marks(L, doc);
    int as_shape = call(L, "shape_messages", data, size);
    int shape = lua_gettop(L) - 1;
    check_reader(L, data, size, shape, 0);
    int as_blobs = call(L, "shape_blobs", data, size);
    check_reader(L, data, size, shape + 2, 1);
    FUZZ_ASSERT(as_blobs == as_shape, "row blobs change whether the body is good");
    FUZZ_ASSERT(same_value(L, shape + 1, shape + 3), "row blobs change the refusal's words");
    if (as_blobs) {
        check_list(L, shape + 2, 1);
        check_blobs(L, shape, shape + 2);
    }
    lua_pop(L, 2);
    if (as_shape) {
        FUZZ_ASSERT(as_json, "shape_messages took a body json_decode refuses");
        check_list(L, lua_gettop(L) - 1, 0);
    } else {
        const char *why = lua_tostring(L, -1);
        FUZZ_ASSERT(why != NULL, "refused without a reason");
        if (as_json)
            FUZZ_ASSERT(strstr(why, " at byte ") == NULL, "JSON refused as if it were not JSON");
    }
    lua_pop(L, 2);
    check_one_pass(L, data, size, as_json, doc);
    if (as_json) check_superjson(L, doc);
    lua_pop(L, 2);
    FUZZ_ASSERT(lua_gettop(L) == top, "the stack is not back where it was");
    lua_close(L);
    return 0;
}
