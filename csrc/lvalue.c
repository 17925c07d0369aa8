/* The Lua values the bindings push for the cores' values, shared by them (none binds a module
 * of its own here, as lauxlib serves Lua's libraries): the JSON value builder (a sink of the
 * json.c parser that builds Lua tables; json_decode, shape_messages, shape_reader, row blobs,
 * superjson, run_fields), Postgres arrays as nested tables (pg_array, run_fields) and row blob
 * members (row_column, run_fields). */
#include <stdint.h>
#include <string.h>

#include "compat.h"
#include "lcore.h"
#include "lib/json.h"
#include "lib/pgtext.h"
#include "lib/rowblob.h"
#include "lvalue.h"

/* Values of an open container wait on the Lua stack above its slot and go into the table in
 * batches: when the container ends, the table is made at its final size in one allocation
 * instead of growing through every power of two (a 30-column row rehashed six times was a
 * good part of an initial sync's decoding). A container longer than FLUSH_AT gets its table
 * at that size, then takes the rest FLUSH_AT at a time. */
#define FLUSH_AT 128

/* Short strings through a cache. Lua interns every short string it is given: it hashes the
 * bytes and searches its string table, ~200 instructions a string, and a shape log hands it
 * the same 27 column names for every row and the same keys for every packet (a third of the
 * strings of an initial sync). The cache is direct-mapped: a slot keeps the bytes of the last
 * string that fell there (in C, to compare) and the Lua string itself (in a table, which
 * keeps it alive); a string equal to its slot's bytes is that Lua string. Keys and values
 * have separate halves, so that the values that differ row by row (ids, timestamps) do not
 * push the column names out. One cache per Lua state, in the registry; its strings are at
 * most INTERN_SLOTS of at most INTERN_MAX bytes. */
#define INTERN_SLOTS 512 /* a power of two */
#define INTERN_MAX 31

struct tr_ljson_intern {
    struct {
        unsigned char len; /* 0: empty */
        char bytes[INTERN_MAX];
    } slot[INTERN_SLOTS];
};

static const char intern_key = 0; /* its address is the registry key */

tr_ljson_intern *tr_ljson_push_intern(lua_State *L) {
    lua_pushlightuserdata(L, (void *)&intern_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        /* The table with a slot for every string, each false until used: storing a string
         * later never allocates (so a failed allocation never leaves a slot's bytes naming a
         * string that is not there). */
        lua_createtable(L, INTERN_SLOTS, 1);
        for (int i = 1; i <= INTERN_SLOTS; i++) {
            lua_pushboolean(L, 0);
            lua_rawseti(L, -2, i);
        }
        tr_ljson_intern *c = lua_newuserdata(L, sizeof *c);
        memset(c, 0, sizeof *c);
        lua_rawseti(L, -2, 0);
        lua_pushlightuserdata(L, (void *)&intern_key);
        lua_pushvalue(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, -1, 0);
    tr_ljson_intern *c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return c;
}

void tr_ljson_push_intern_upvalues(lua_State *L) {
    tr_ljson_push_intern(L); /* the table */
    lua_rawgeti(L, -1, 0);   /* the cache: a userdata in it */
}

tr_ljson_intern *tr_ljson_intern_upvalue(lua_State *L, int first) {
    return lua_touserdata(L, lua_upvalueindex(first + 1));
}

/* Unaligned loads (memcpy of a constant size is one instruction). */
static inline uint64_t load8(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint32_t load4(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Are the n bytes (1 <= n <= 32) of a and b the same? Windows from both ends that overlap
 * cover all of them in two to four loads a side: no call, no loop, and this runs for every
 * short string of a sync. */
static inline int same_short(const unsigned char *a, const unsigned char *b, size_t n) {
    if (n >= 8) {
        if (load8(a) != load8(b) || load8(a + n - 8) != load8(b + n - 8)) return 0;
        return n <= 16 || (load8(a + 8) == load8(b + 8) && load8(a + n - 16) == load8(b + n - 16));
    }
    if (n >= 4) return load4(a) == load4(b) && load4(a + n - 4) == load4(b + n - 4);
    return a[0] == b[0] && a[n >> 1] == b[n >> 1] && a[n - 1] == b[n - 1];
}

/* The slot of n bytes (1 <= n <= 32) within a half: both ends and the length, multiplied
 * together. Column names differ at the front (createdAt, updatedAt), ids and timestamps at
 * the back. */
static inline unsigned slot_of(const unsigned char *u, size_t n) {
    uint64_t x;
    if (n >= 8)
        x = load8(u) ^ load8(u + n - 8) * UINT64_C(0xff51afd7ed558ccd);
    else if (n >= 4)
        x = load4(u) | (uint64_t)load4(u + n - 4) << 32;
    else
        x = u[0] | (uint64_t)u[n >> 1] << 8 | (uint64_t)u[n - 1] << 16;
    x = (x ^ n) * UINT64_C(0x9e3779b97f4a7c15);
    return (unsigned)(x >> 32) & (INTERN_SLOTS / 2 - 1);
}

void tr_ljson_push_cached(lua_State *L, tr_ljson_intern *c, int index, const char *s, size_t n,
                          int key) {
    if (c == NULL || n == 0 || n > INTERN_MAX) {
        lua_pushlstring(L, s, n);
        return;
    }
    const unsigned char *u = (const unsigned char *)s;
    unsigned h = slot_of(u, n) | (key ? 0 : INTERN_SLOTS / 2);
    if (c->slot[h].len == n && same_short((const unsigned char *)c->slot[h].bytes, u, n)) {
        lua_rawgeti(L, index, (int)h + 1);
        return;
    }
    lua_pushlstring(L, s, n);
    lua_pushvalue(L, -1);
    lua_rawseti(L, index, (int)h + 1);
    c->slot[h].len = (unsigned char)n;
    memcpy(c->slot[h].bytes, s, n);
}

static void push_string(tr_ljson_builder *b, const char *s, size_t n, int key) {
    tr_ljson_push_cached(b->L, b->intern, b->intern_index, s, n, key);
}

/* Move the waiting values of the innermost container into its table (made now if needed). */
static void flush(tr_ljson_builder *b) {
    lua_State *L = b->L;
    tr_ljson_level *lv = &b->levels[b->depth];
    int n = lv->pending;
    if (lua_isnil(L, lv->slot)) {
        lua_createtable(L, lv->object ? 0 : n, lv->object ? n : 0);
        if (!lv->object && b->array_mt_index != 0) { /* marks it an array, even when empty */
            lua_pushvalue(L, b->array_mt_index);
            lua_setmetatable(L, -2);
        }
        lua_replace(L, lv->slot);
    }
    int first = lv->slot + 1;
    if (lv->object) {
        /* In order, so that of two equal keys the last wins. */
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, first + 2 * i);
            lua_pushvalue(L, first + 2 * i + 1);
            lua_rawset(L, lv->slot);
        }
    } else {
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, first + i);
            lua_rawseti(L, lv->slot, (int)(lv->count + i + 1));
        }
        lv->count += n;
    }
    lua_settop(L, lv->slot);
    lv->pending = 0;
}

/* The value on top of the stack belongs to the innermost container (or stays, at the top). */
static int place(tr_ljson_builder *b) {
    if (b->depth == 0) return 0;
    tr_ljson_level *lv = &b->levels[b->depth];
    if (++lv->pending == FLUSH_AT) flush(b);
    return 0;
}

int tr_ljson_null(void *ud) {
    tr_ljson_builder *b = ud;
    lua_pushvalue(b->L, b->null_index);
    return place(b);
}

int tr_ljson_boolean(void *ud, int v) {
    tr_ljson_builder *b = ud;
    lua_pushboolean(b->L, v);
    return place(b);
}

int tr_ljson_integer(void *ud, int64_t v) {
    tr_ljson_builder *b = ud;
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(b->L, (lua_Integer)v);
#else
    lua_pushnumber(b->L, (lua_Number)v);
#endif
    return place(b);
}

int tr_ljson_number(void *ud, double v) {
    tr_ljson_builder *b = ud;
    lua_pushnumber(b->L, (lua_Number)v);
    return place(b);
}

int tr_ljson_string(void *ud, const char *s, size_t n) {
    tr_ljson_builder *b = ud;
    push_string(b, s, n, 0);
    return place(b);
}

int tr_ljson_key(void *ud, const char *s, size_t n) {
    tr_ljson_builder *b = ud;
    push_string(b, s, n, 1);
    return 0;
}

int tr_ljson_begin(tr_ljson_builder *b, int object) {
    /* Room for the slot, a full batch of pairs and the two copies flush() makes. */
    if (!lua_checkstack(b->L, 2 * FLUSH_AT + 4)) return -1;
    lua_pushnil(b->L);
    tr_ljson_level *lv = &b->levels[++b->depth];
    lv->slot = lua_gettop(b->L);
    lv->object = (unsigned char)object;
    lv->pending = 0;
    lv->count = 0;
    return 0;
}

int tr_ljson_end(tr_ljson_builder *b) {
    flush(b);
    b->depth--;
    return place(b);
}

static int on_begin_object(void *ud) { return tr_ljson_begin(ud, 1); }
static int on_begin_array(void *ud) { return tr_ljson_begin(ud, 0); }
static int on_end(void *ud) { return tr_ljson_end(ud); }

void tr_ljson_builder_init(tr_ljson_builder *b, lua_State *L, int null_index, int array_mt_index,
                           int first) {
    b->L = L;
    b->null_index = null_index;
    b->array_mt_index = array_mt_index;
    b->depth = 0;
    b->intern = tr_ljson_intern_upvalue(L, first);
    b->intern_index = lua_upvalueindex(first);
}

tr_json_sink tr_ljson_sink(tr_ljson_builder *b) {
    tr_json_sink sink = {tr_ljson_null,
                         tr_ljson_boolean,
                         tr_ljson_integer,
                         tr_ljson_number,
                         tr_ljson_string,
                         on_begin_object,
                         tr_ljson_key,
                         on_end,
                         on_begin_array,
                         on_end,
                         b};
    return sink;
}

/* A failed parse: the stack back to `base`, then nil and what went wrong where. */
int tr_ljson_failed(lua_State *L, int base, tr_json_status st, size_t at, const char *what) {
    lua_settop(L, base);
    lua_pushnil(L);
    if (st == TR_JSON_STOPPED)
        lua_pushliteral(L, "JSON too deep for the Lua stack");
    else
        lua_pushfstring(L, "%s at byte %d", what ? what : "invalid JSON", (int)at + 1);
    return 2;
}

/* --- Postgres arrays ---------------------------------------------------------------------- */

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

/* --- Row blob members -------------------------------------------------------------------- */

void tr_push_rowblob_member(lua_State *L, const tr_rowblob_member *m, int null_index,
                            tr_ljson_intern *c, int cache_index) {
    switch (m->tag) {
    case 's':
        tr_ljson_push_cached(L, c, cache_index, m->s, m->len, 0);
        break;
    case 'n':
        lua_pushvalue(L, null_index);
        break;
    case 't':
    case 'f':
        lua_pushboolean(L, m->tag == 't');
        break;
    case 'i': /* as the builder pushes it (above) */
#if LUA_VERSION_NUM >= 503
        lua_pushinteger(L, (lua_Integer)m->i);
#else
        lua_pushnumber(L, (lua_Number)m->i);
#endif
        break;
    case 'd':
        lua_pushnumber(L, (lua_Number)m->d);
        break;
    default:
        lua_pushnil(L);
    }
}
