/* The Lua value builder (lvalue.c): a sink of the json.c parser that builds Lua values, used
 * by core.json_decode (ljson.c), core.shape_messages (lshape.c) and the other decoders. Each
 * callback has the signature of the matching tr_json_sink member (ud: the builder). */
#ifndef TR_LVALUE_H
#define TR_LVALUE_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "lib/json.h"

#define TR_LJSON_MAX_DEPTH 1000
#define TR_LJSON_DEFAULT_DEPTH 128

/* One open container (its values wait on the Lua stack above its slot: lvalue.c). */
typedef struct tr_ljson_level {
    int slot; /* stack index of the table, nil until the first flush */
    unsigned char object;
    int pending;       /* values (objects: key/value pairs) waiting above the slot */
    lua_Integer count; /* array elements already in the table */
} tr_ljson_level;

/* The short-string cache of the builders (lvalue.c): one per Lua state. */
typedef struct tr_ljson_intern tr_ljson_intern;

typedef struct tr_ljson_builder {
    lua_State *L;
    int null_index;     /* stack index of the value that stands for null */
    int array_mt_index; /* stack index of the metatable arrays get; 0: none (memset builders) */
    int depth;
    tr_ljson_intern *intern; /* NULL: strings pushed as they come (memset builders) */
    int intern_index;        /* stack index of the cache's string table */
    tr_ljson_level levels[TR_LJSON_MAX_DEPTH + 1];
} tr_ljson_builder;

int tr_ljson_null(void *ud);
int tr_ljson_boolean(void *ud, int v);
int tr_ljson_integer(void *ud, int64_t v);
int tr_ljson_number(void *ud, double v);
int tr_ljson_string(void *ud, const char *s, size_t n);
int tr_ljson_key(void *ud, const char *s, size_t n);
/* A container starts (object: 1) or ends (the value then goes where tr_ljson_string's would). */
int tr_ljson_begin(tr_ljson_builder *b, int object);
int tr_ljson_end(tr_ljson_builder *b);
/* A builder on the C stack for a closure made with tr_ljson_push_intern_upvalues at upvalue
 * `first`: nothing open yet, null at stack index null_index, arrays marked with the metatable
 * at array_mt_index (0: not marked). */
void tr_ljson_builder_init(tr_ljson_builder *b, lua_State *L, int null_index, int array_mt_index,
                           int first);
/* The builder as a parser's sink (what json_decode gives tr_json_parse_with). */
tr_json_sink tr_ljson_sink(tr_ljson_builder *b);

/* Push the short-string cache's table (one value) and return the cache: a builder given both
 * (intern, and intern_index where that value stays) takes keys and short strings a decode has
 * seen recently (the column names of every row, the packets' keys, values such as
 * "application/json") from the cache instead of hashing and interning them again. */
tr_ljson_intern *tr_ljson_push_intern(lua_State *L);
/* For the C closures called once per packet or run: push the cache's table and the cache (two
 * values) as upvalues `first` and `first + 1` of the closure being made; at each call,
 * tr_ljson_intern_upvalue gives the cache, its table at lua_upvalueindex(first): no registry
 * look-up a call. */
void tr_ljson_push_intern_upvalues(lua_State *L);
tr_ljson_intern *tr_ljson_intern_upvalue(lua_State *L, int first);
/* Push s[0..n) as a Lua string through cache c (its table at stack index `index`; c NULL: as
 * lua_pushlstring does); key: 1 for object keys and names, 0 for values (separate halves). */
void tr_ljson_push_cached(lua_State *L, tr_ljson_intern *c, int index, const char *s, size_t n,
                          int key);

/* A failed parse: the stack back to `base`, then nil and what went wrong where (2 results). */
int tr_ljson_failed(lua_State *L, int base, tr_json_status st, size_t at, const char *what);

#endif
