/* core.superjson_leaves: the common shape of a super+json annotation tree, applied in C.
 *
 * Most packets annotate fields of the top-level object with one plain annotation each:
 * {"createdAt": ["Date"], "id": ["bigint"]}. Walking that in Lua cost as much as decoding the
 * whole packet, once per run handed out. This takes exactly that shape and nothing else; for
 * anything else (paths with dots, nested trees, maps, custom classes, a field that is not
 * there) it changes nothing and says so, and lua/trigger/run/superjson.lua does the general walk
 * with the same meaning. What each annotation means (and a bigint's text as an integer, the
 * special numbers, which names can be leaves) is decided by csrc/lib/superjson.c; this file only
 * walks the Lua tables, or the packet as it is parsed, and pushes the values. */
#include <stdint.h>
#include <string.h>

#include "compat.h"
#include "lcore.h"
#include "lib/json.h"
#include "lib/superjson.h"
#include "lvalue.h"

/* More entries than this go the general way, which counts them against its own budget. */
#define LEAVES_MAX 1000

/* Is the entry on top of the stack (key at -2, annotation at -1) a leaf on a field of the
 * object at index `value`? On success *annotation is its name. */
static int is_leaf(lua_State *L, int value, const char **annotation) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE) return 0;
    size_t kn, an = 0;
    const char *key = lua_tolstring(L, -2, &kn);
    /* (a NUL byte would hide the rest of the key or annotation from the C string functions:
     * such entries go the general way, which compares whole Lua strings) */
    if (memchr(key, '\0', kn) || !tr_superjson_plain_field(key, kn)) return 0;
    lua_rawgeti(L, -1, 2);
    int single = lua_isnil(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, -1, 1);
    int named = lua_type(L, -1) == LUA_TSTRING;
    *annotation = named ? lua_tolstring(L, -1, &an) : NULL;
    lua_pop(L, 1); /* the string stays alive in the annotation table */
    if (!single || !named || memchr(*annotation, '\0', an) ||
        tr_superjson_kind_of(*annotation, an) == TR_SUPERJSON_MAP)
        return 0;
    lua_pushvalue(L, -2);
    lua_rawget(L, value);
    int present = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return present;
}

/* A bigint's text as an integer when tr_superjson_bigint says it is one; else the text stays. */
static void push_bigint(lua_State *L, int at) {
#if LUA_VERSION_NUM >= 503
    size_t n;
    const char *s = lua_tolstring(L, at, &n);
    int64_t v;
    if (tr_superjson_bigint(s, n, &v)) {
        lua_pushinteger(L, (lua_Integer)v);
        return;
    }
#endif
    lua_pushvalue(L, at); /* no integers (LuaJIT), or not one that fits */
}

/* Apply a leaf of `kind` to the field whose name is on top of the stack, of the table at index
 * `value` (a field that is there: is_leaf checked). The name stays. */
static void apply_leaf(lua_State *L, int value, int kind) {
    if (kind == TR_SUPERJSON_KEEP) return;
    lua_pushvalue(L, -1);
    lua_rawget(L, value); /* name, field value */
    int field = lua_gettop(L);
    int is_text = lua_type(L, field) == LUA_TSTRING;
    size_t text_len = 0;
    const char *text = is_text ? lua_tolstring(L, field, &text_len) : NULL;
    double special;
    lua_pushvalue(L, field - 1);
    if (kind == TR_SUPERJSON_UNDEFINED) {
        lua_pushnil(L);
    } else if (kind == TR_SUPERJSON_BIGINT && is_text) {
        push_bigint(L, field);
    } else if (kind == TR_SUPERJSON_NUMBER && is_text &&
               tr_superjson_special_number(text, text_len, &special)) {
        lua_pushnumber(L, (lua_Number)special); /* NaN, the infinities, -0 */
    } else {
        lua_pop(L, 2);
        return;
    }
    lua_rawset(L, value);
    lua_pop(L, 1); /* the field value */
}

/* superjson_leaves(value, values) -> true when every annotation of `values` was a leaf and has
 * been applied to `value` (in place), false when nothing was done. */
static int superjson_leaves(lua_State *L) {
    if (!lua_istable(L, 1) || !lua_istable(L, 2)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_settop(L, 2);
    lua_rawgeti(L, 2, 1);
    int rooted = !lua_isnil(L, -1); /* ["map", ...]: an annotation of the root itself */
    lua_pop(L, 1);
    int count = 0;
    const char *annotation;
    lua_pushnil(L);
    while (!rooted && lua_next(L, 2) != 0) {
        if (++count > LEAVES_MAX || !is_leaf(L, 1, &annotation)) {
            lua_pushboolean(L, 0);
            return 1;
        }
        lua_pop(L, 1);
    }
    if (rooted) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        lua_rawgeti(L, -1, 1);
        annotation = lua_tostring(L, -1);
        lua_pop(L, 2); /* key on top */
        apply_leaf(L, 1, (int)tr_superjson_kind_of(annotation, strlen(annotation)));
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* --- core.superjson_decode: the whole packet in one pass --------------------------------------
 *
 * A super+json packet is {"json": value, "meta": {"values": annotations}}. Decoding it whole
 * made a table for the document, for meta, for values and for every annotation (["Date"]),
 * only to read them once and drop them: a third of the tables of a run handed out. This sink
 * builds the json value (with lvalue.c's builder) and reads the annotations as they go by,
 * keeping the leaves (a field of the top-level object, one plain annotation) in C. Anything
 * else (a path, a nested tree, a map, a repeated or odd name, more leaves than it keeps, a
 * document that is not an object, bad JSON) stops it, and the caller decodes the packet the
 * general way, which also says what is wrong. */

enum { AT_START, AT_ROOT, AT_META, AT_VALUES, AT_LEAF, AT_DONE }; /* where the parse is */
enum { NEXT_OTHER, NEXT_JSON, NEXT_META, NEXT_VALUES };           /* whose value comes next */

typedef struct doc {
    tr_ljson_builder b; /* builds the json value (b.depth > 0 while it does) */
    int at, next;
    int skipped;    /* nesting inside a container nobody needs */
    int json_slot;  /* stack index of the json value (nil: none yet) */
    int leaf_items; /* elements of the annotation array being read */
    tr_superjson_kind leaf_kind;
    tr_superjson_leaves leaves; /* (lib/superjson.h: what it keeps, what it refuses) */
} doc;

#define GENERAL (-1) /* stop: the general way decodes this packet */

/* The json value is complete on top of the stack. */
static int doc_json_done(doc *d) {
    lua_replace(d->b.L, d->json_slot);
    d->next = NEXT_OTHER;
    return 0;
}

/* A scalar outside the json value. */
static int doc_scalar(doc *d, const char *s, size_t n, int is_string, int is_null) {
    if (d->skipped > 0) return 0;
    switch (d->at) {
    case AT_ROOT: /* (meta as a scalar: no annotations) */
    case AT_META: {
        int bad_values = d->at == AT_META && d->next == NEXT_VALUES && !is_null;
        d->next = NEXT_OTHER;
        return bad_values ? GENERAL : 0; /* values neither null nor a tree: malformed, said there */
    }
    case AT_LEAF:
        if (d->leaf_items++ > 0 || !is_string) return GENERAL;
        d->leaf_kind = tr_superjson_kind_of(s, n);
        return d->leaf_kind == TR_SUPERJSON_MAP ? GENERAL : 0;
    default: /* the document itself, or an annotation, that is not a container */
        return GENERAL;
    }
}

/* Which field of the root (AT_ROOT) or of meta (AT_META), or which annotated field
 * (AT_VALUES, kept for its leaf), comes next. */
static int doc_key(void *ud, const char *s, size_t n) {
    doc *d = ud;
    if (d->b.depth > 0) return tr_ljson_key(&d->b, s, n);
    if (d->skipped > 0) return 0;
    if (d->at == AT_ROOT) {
        d->next = n == 4 && memcmp(s, "json", 4) == 0   ? NEXT_JSON
                  : n == 4 && memcmp(s, "meta", 4) == 0 ? NEXT_META
                                                        : NEXT_OTHER;
        if (d->next == NEXT_META) d->leaves.count = 0; /* of two metas, the last counts */
        return 0;
    }
    if (d->at == AT_META) {
        d->next = n == 6 && memcmp(s, "values", 6) == 0 ? NEXT_VALUES : NEXT_OTHER;
        if (d->next == NEXT_VALUES) d->leaves.count = 0;
        return 0;
    }
    /* AT_VALUES: a plain field name (no path, no escape), not seen before. (Names and
     * annotations are compared by their length here: a NUL byte in one is just a byte.) */
    return tr_superjson_leaves_name(&d->leaves, s, n) == 0 ? 0 : GENERAL;
}

static int doc_begin(doc *d, int object) {
    if (d->b.depth > 0 || (d->skipped == 0 && d->at == AT_ROOT && d->next == NEXT_JSON))
        return tr_ljson_begin(&d->b, object);
    if (d->skipped > 0) {
        d->skipped++;
        return 0;
    }
    switch (d->at) {
    case AT_START:
        if (!object) return GENERAL;
        d->at = AT_ROOT;
        return 0;
    case AT_ROOT:
        if (d->next == NEXT_META && object) {
            d->at = AT_META;
            return 0;
        }
        d->skipped = 1; /* (meta as an array: a table without values) */
        return 0;
    case AT_META:
        if (d->next != NEXT_VALUES) {
            d->skipped = 1;
            return 0;
        }
        if (!object) return GENERAL; /* ["map", ...]: the root annotated */
        d->at = AT_VALUES;
        d->leaves.names_len = 0;
        return 0;
    case AT_VALUES:
        if (object) return GENERAL; /* a nested tree */
        d->at = AT_LEAF;
        d->leaf_items = 0;
        return 0;
    default:
        return GENERAL;
    }
}

static int doc_end(doc *d) {
    if (d->b.depth > 0) {
        if (tr_ljson_end(&d->b) != 0) return -1;
        return d->b.depth == 0 ? doc_json_done(d) : 0;
    }
    if (d->skipped > 0) {
        d->skipped--;
        return 0;
    }
    d->next = NEXT_OTHER;
    switch (d->at) {
    case AT_LEAF:
        if (d->leaf_items != 1) return GENERAL;
        tr_superjson_leaves_keep(&d->leaves, d->leaf_kind);
        d->at = AT_VALUES;
        return 0;
    case AT_VALUES:
        d->at = AT_META;
        return 0;
    case AT_META:
        d->at = AT_ROOT;
        return 0;
    default:
        d->at = AT_DONE;
        return 0;
    }
}

#define DOC_SCALAR(name, args, build, ...)                                                         \
    static int name args {                                                                         \
        doc *d = ud;                                                                               \
        if (d->b.depth > 0) return build;                                                          \
        if (d->skipped == 0 && d->at == AT_ROOT && d->next == NEXT_JSON) {                         \
            if (build != 0) return -1;                                                             \
            return doc_json_done(d);                                                               \
        }                                                                                          \
        return doc_scalar(d, __VA_ARGS__);                                                         \
    }
DOC_SCALAR(doc_null, (void *ud), tr_ljson_null(&d->b), NULL, 0, 0, 1)
DOC_SCALAR(doc_boolean, (void *ud, int v), tr_ljson_boolean(&d->b, v), NULL, 0, 0, 0)
DOC_SCALAR(doc_integer, (void *ud, int64_t v), tr_ljson_integer(&d->b, v), NULL, 0, 0, 0)
DOC_SCALAR(doc_number, (void *ud, double v), tr_ljson_number(&d->b, v), NULL, 0, 0, 0)
DOC_SCALAR(doc_string, (void *ud, const char *s, size_t n), tr_ljson_string(&d->b, s, n), s, n, 1,
           0)
static int doc_begin_object(void *ud) { return doc_begin(ud, 1); }
static int doc_begin_array(void *ud) { return doc_begin(ud, 0); }
static int doc_end_any(void *ud) { return doc_end(ud); }

/* Upvalues of superjson_decode: 1, 2 the short-string cache; 3 the scratch box between calls. */
#define SCRATCH_HOME lua_upvalueindex(3)

/* superjson_decode(text, null, max_depth [, array_mt]) -> value, true; or false when the
 * packet is not of the common shape (or not valid): then trigger.superjson decodes it. */
static int superjson_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer max_depth = luaL_checkinteger(L, 3);
    luaL_argcheck(L, max_depth >= 1 && max_depth <= TR_LJSON_MAX_DEPTH, 3, "depth out of range");
    int marked = !lua_isnoneornil(L, 4);
    if (marked) luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4);
    tr_buf *scratch = tr_scratch_take_from(L, SCRATCH_HOME); /* 5 */
    lua_pushnil(L);                                          /* 6: the json value */
    doc dd; /* (on the C stack, as json_decode's builder) */
    doc *d = &dd;
    tr_ljson_builder_init(&d->b, L, 2, marked ? 4 : 0, 1);
    d->at = AT_START;
    d->next = NEXT_OTHER;
    d->skipped = 0;
    d->json_slot = 6;
    tr_superjson_leaves_init(&d->leaves);
    tr_json_sink sink = {
        doc_null, doc_boolean, doc_integer,     doc_number,  doc_string, doc_begin_object,
        doc_key,  doc_end_any, doc_begin_array, doc_end_any, d};
    size_t at = 0;
    const char *what = NULL;
    tr_json_status st = tr_json_parse_with(s, n, (int)max_depth, &sink, scratch, &at, &what);
    tr_scratch_give_to(L, 5, SCRATCH_HOME);
    lua_settop(L, 6);
    if (st != TR_JSON_OK) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (lua_isnil(L, 6)) { /* no json: null */
        lua_pushvalue(L, 2);
        lua_replace(L, 6);
    }
    if (d->leaves.count > 0) {
        /* Every annotated field must be there, in a table (else the general way says what it
         * makes of it), before any is changed. */
        if (!lua_istable(L, 6)) {
            lua_pushboolean(L, 0);
            return 1;
        }
        size_t len;
        for (int i = 0; i < d->leaves.count; i++) {
            const char *name = tr_superjson_leaf_name(&d->leaves, i, &len);
            lua_pushlstring(L, name, len);
            lua_rawget(L, 6);
            int present = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (!present) {
                lua_pushboolean(L, 0);
                return 1;
            }
        }
        for (int i = 0; i < d->leaves.count; i++) {
            const char *name = tr_superjson_leaf_name(&d->leaves, i, &len);
            lua_pushlstring(L, name, len);
            apply_leaf(L, 6, d->leaves.leaf[i].kind);
            lua_pop(L, 1);
        }
    }
    lua_pushvalue(L, 6);
    lua_pushboolean(L, 1);
    return 2;
}

void tr_open_superjson(lua_State *L) {
    lua_pushcfunction(L, superjson_leaves);
    lua_setfield(L, -2, "superjson_leaves");
    tr_ljson_push_intern_upvalues(L);
    lua_pushboolean(L, 0); /* the scratch box's home */
    lua_pushcclosure(L, superjson_decode, 3);
    lua_setfield(L, -2, "superjson_decode");
}
