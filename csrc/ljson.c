/* core.json_decode: JSON text straight into Lua tables through the csrc/json.c parser. */
#include <stdint.h>
#include <string.h>

#include "compat.h"
#include "json.h"

#define LJSON_MAX_DEPTH 1000
#define LJSON_DEFAULT_DEPTH 128

/* Values of an open container wait on the Lua stack above its slot and go into the table in
 * batches: when the container ends, the table is made at its final size in one allocation
 * instead of growing through every power of two (a 30-column row rehashed six times was a
 * good part of an initial sync's decoding). A container longer than FLUSH_AT gets its table
 * at that size, then takes the rest FLUSH_AT at a time. */
#define FLUSH_AT 128

typedef struct level {
    int slot; /* stack index of the table, nil until the first flush */
    unsigned char object;
    int pending;       /* values (objects: key/value pairs) waiting above the slot */
    lua_Integer count; /* array elements already in the table */
} level;

typedef struct builder {
    lua_State *L;
    int null_index; /* stack index of the value that stands for null */
    int depth;
    level levels[LJSON_MAX_DEPTH + 1];
} builder;

/* Move the waiting values of the innermost container into its table (made now if needed). */
static void flush(builder *b) {
    lua_State *L = b->L;
    level *lv = &b->levels[b->depth];
    int n = lv->pending;
    if (lua_isnil(L, lv->slot)) {
        lua_createtable(L, lv->object ? 0 : n, lv->object ? n : 0);
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
static int place(builder *b) {
    if (b->depth == 0) return 0;
    level *lv = &b->levels[b->depth];
    if (++lv->pending == FLUSH_AT) flush(b);
    return 0;
}

static int on_null(void *ud) {
    builder *b = ud;
    lua_pushvalue(b->L, b->null_index);
    return place(b);
}

static int on_boolean(void *ud, int v) {
    builder *b = ud;
    lua_pushboolean(b->L, v);
    return place(b);
}

static int on_integer(void *ud, int64_t v) {
    builder *b = ud;
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(b->L, (lua_Integer)v);
#else
    lua_pushnumber(b->L, (lua_Number)v);
#endif
    return place(b);
}

static int on_number(void *ud, double v) {
    builder *b = ud;
    lua_pushnumber(b->L, (lua_Number)v);
    return place(b);
}

static int on_string(void *ud, const char *s, size_t n) {
    builder *b = ud;
    lua_pushlstring(b->L, s, n);
    return place(b);
}

static int on_key(void *ud, const char *s, size_t n) {
    builder *b = ud;
    lua_pushlstring(b->L, s, n);
    return 0;
}

static int begin(builder *b, int object) {
    /* Room for the slot, a full batch of pairs and the two copies flush() makes. */
    if (!lua_checkstack(b->L, 2 * FLUSH_AT + 4)) return -1;
    lua_pushnil(b->L);
    level *lv = &b->levels[++b->depth];
    lv->slot = lua_gettop(b->L);
    lv->object = (unsigned char)object;
    lv->pending = 0;
    lv->count = 0;
    return 0;
}

static int end(builder *b) {
    flush(b);
    b->depth--;
    return place(b);
}

static int on_begin_object(void *ud) { return begin(ud, 1); }
static int on_begin_array(void *ud) { return begin(ud, 0); }
static int on_end(void *ud) { return end(ud); }

/* A failed parse: the stack back to `base`, then nil and what went wrong where. */
static int parse_failed(lua_State *L, int base, tr_json_status st, size_t at, const char *what) {
    lua_settop(L, base);
    lua_pushnil(L);
    if (st == TR_JSON_STOPPED)
        lua_pushliteral(L, "JSON too deep for the Lua stack");
    else
        lua_pushfstring(L, "%s at byte %d", what ? what : "invalid JSON", (int)at + 1);
    return 2;
}

/* json_decode(text [, null [, max_depth]]) -> value, or nil, message */
static int json_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer max_depth = luaL_optinteger(L, 3, LJSON_DEFAULT_DEPTH);
    luaL_argcheck(L, max_depth >= 1 && max_depth <= LJSON_MAX_DEPTH, 3, "depth out of range");
    lua_settop(L, 2); /* index 2: the null value (nil when not given) */
    /* On the C stack, not a userdata: nothing to free after a Lua error either, and no ~9 KB
     * allocation per call (per packet of every run: it made the GC run several times as often). */
    builder bb;
    builder *b = &bb;
    b->L = L;
    b->null_index = 2;
    b->depth = 0;
    int base = lua_gettop(L);
    tr_json_sink sink = {on_null, on_boolean, on_integer,     on_number, on_string, on_begin_object,
                         on_key,  on_end,     on_begin_array, on_end,    b};
    size_t at = 0;
    const char *what = NULL;
    tr_json_status st = tr_json_parse(s, n, (int)max_depth, &sink, &at, &what);
    if (st != TR_JSON_OK) return parse_failed(L, base, st, at, what);
    return 1;
}

/* --- Electric shape messages ------------------------------------------------------------------
 *
 * A shape-log response is an array of messages {"headers": {"operation": "insert", ...},
 * "key": "...", "value": {column: text, ...}} or {"headers": {"control": "up-to-date"}}. Only
 * the operation or control, the key and the value matter; building the message and header
 * tables only to take them apart again was a third of the decoding of an initial sync. So
 * this sink reads the messages itself, builds only the values (with the builder above), checks
 * each message as it ends, and hands out a flat list: operation, key, value for each row
 * message, and control, false, false for each control message; messages with neither are
 * left out. */

enum { IN_NOTHING, IN_HEADERS, IN_KEY, IN_VALUE, IN_SKIPPED };
enum { HEADER_OTHER, HEADER_OPERATION, HEADER_CONTROL };
enum { SLOT_OPERATION, SLOT_CONTROL, SLOT_KEY, SLOT_VALUE, SLOTS };

typedef struct messages {
    builder b;           /* builds each value */
    int depth;           /* 1: in the array, 2: in a message, 3: in its headers */
    int field;           /* the field of the message whose value comes next (IN_*) */
    int header;          /* the header whose value comes next (HEADER_*) */
    int skipped;         /* nesting inside a container nobody needs */
    int list, slot;      /* stack indices: the list, and the SLOTS of this message */
    int count;           /* elements of the array so far */
    lua_Integer out;     /* entries in the list */
    int has_headers;     /* this message has a headers object */
    const char *problem; /* why the body is refused */
} messages;

static int refuse(messages *m, const char *problem) {
    m->problem = problem;
    return -1;
}

static void set_slot(messages *m, int which) { lua_replace(m->b.L, m->slot + which); }

static int building(messages *m) { return m->b.depth > 0; }

/* An element of the array starts: a message must be an object. */
static int element(messages *m, int is_object) {
    m->count++;
    if (!is_object) return refuse(m, "is not an object");
    for (int i = 0; i < SLOTS; i++) {
        lua_pushnil(m->b.L);
        set_slot(m, i);
    }
    m->has_headers = 0;
    return 0;
}

/* A scalar that is not inside a value. */
static int scalar_value(messages *m, int is_string, const char *s, size_t n) {
    lua_State *L = m->b.L;
    if (m->skipped > 0) return 0;
    if (m->depth == 0) return refuse(m, "response body is not a JSON array of messages");
    if (m->depth == 1) return element(m, 0);
    if (m->depth == 2) {
        if (m->field == IN_KEY || m->field == IN_VALUE) {
            if (is_string && m->field == IN_KEY)
                lua_pushlstring(L, s, n);
            else
                lua_pushnil(L); /* not a string key, not a value object */
            set_slot(m, m->field == IN_KEY ? SLOT_KEY : SLOT_VALUE);
        }
        if (m->field == IN_HEADERS) m->has_headers = 0;
    } else if (m->header != HEADER_OTHER) { /* depth 3 */
        if (is_string)
            lua_pushlstring(L, s, n);
        else
            lua_pushnil(L); /* only strings count */
        set_slot(m, m->header == HEADER_OPERATION ? SLOT_OPERATION : SLOT_CONTROL);
    }
    m->field = IN_NOTHING;
    m->header = HEADER_OTHER;
    return 0;
}

static int m_null(void *ud) {
    messages *m = ud;
    return building(m) ? on_null(&m->b) : scalar_value(m, 0, NULL, 0);
}

static int m_boolean(void *ud, int v) {
    messages *m = ud;
    return building(m) ? on_boolean(&m->b, v) : scalar_value(m, 0, NULL, 0);
}

static int m_integer(void *ud, int64_t v) {
    messages *m = ud;
    return building(m) ? on_integer(&m->b, v) : scalar_value(m, 0, NULL, 0);
}

static int m_number(void *ud, double v) {
    messages *m = ud;
    return building(m) ? on_number(&m->b, v) : scalar_value(m, 0, NULL, 0);
}

static int m_string(void *ud, const char *s, size_t n) {
    messages *m = ud;
    return building(m) ? on_string(&m->b, s, n) : scalar_value(m, 1, s, n);
}

static int is_word(const char *s, size_t n, const char *word) {
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

static int m_key(void *ud, const char *s, size_t n) {
    messages *m = ud;
    if (building(m)) return on_key(&m->b, s, n);
    if (m->skipped > 0) return 0;
    if (m->depth == 2)
        m->field = is_word(s, n, "headers") ? IN_HEADERS
                   : is_word(s, n, "key")   ? IN_KEY
                   : is_word(s, n, "value") ? IN_VALUE
                                            : IN_SKIPPED;
    else
        m->header = is_word(s, n, "operation") ? HEADER_OPERATION
                    : is_word(s, n, "control") ? HEADER_CONTROL
                                               : HEADER_OTHER;
    return 0;
}

static int m_begin(messages *m, int is_object) {
    if (building(m) || (m->depth == 2 && m->field == IN_VALUE && m->skipped == 0))
        return begin(&m->b, is_object); /* a value (an array too, as a table) */
    if (m->skipped > 0) {
        m->skipped++;
        return 0;
    }
    if (m->depth == 0 && is_object)
        return refuse(m, "response body is not a JSON array of messages");
    if (m->depth == 1 && element(m, is_object) != 0) return -1;
    if (m->depth == 2) {
        if (m->field == IN_KEY) {
            lua_pushnil(m->b.L); /* a key that is not a string */
            set_slot(m, SLOT_KEY);
        }
        if (m->field == IN_HEADERS) m->has_headers = 1;
        if (m->field != IN_HEADERS || !is_object) {
            m->skipped = 1;
            return 0;
        }
    }
    if (m->depth == 3) { /* a header that is not a string */
        if (m->header != HEADER_OTHER) {
            lua_pushnil(m->b.L);
            set_slot(m, m->header == HEADER_OPERATION ? SLOT_OPERATION : SLOT_CONTROL);
        }
        m->skipped = 1;
        return 0;
    }
    m->depth++;
    m->field = IN_NOTHING;
    m->header = HEADER_OTHER;
    return 0;
}

static void list_value(messages *m, int slot) {
    lua_State *L = m->b.L;
    if (slot < 0)
        lua_pushboolean(L, 0);
    else
        lua_pushvalue(L, m->slot + slot);
    lua_rawseti(L, m->list, (int)++m->out);
}

/* A message is complete: check it, then list it. */
static int message_end(messages *m) {
    lua_State *L = m->b.L;
    if (!m->has_headers) return refuse(m, "has no headers");
    if (!lua_isnil(L, m->slot + SLOT_OPERATION)) {
        if (lua_type(L, m->slot + SLOT_KEY) != LUA_TSTRING) return refuse(m, "has no key");
        const char *op = lua_tostring(L, m->slot + SLOT_OPERATION);
        int has_value = lua_istable(L, m->slot + SLOT_VALUE);
        if (!has_value && (strcmp(op, "insert") == 0 || strcmp(op, "update") == 0))
            return refuse(m, "has no value object");
        list_value(m, SLOT_OPERATION);
        list_value(m, SLOT_KEY);
        list_value(m, has_value ? SLOT_VALUE : -1);
    } else if (!lua_isnil(L, m->slot + SLOT_CONTROL)) {
        list_value(m, SLOT_CONTROL);
        list_value(m, -1);
        list_value(m, -1);
    }
    return 0;
}

static int m_end(messages *m) {
    if (building(m)) {
        if (end(&m->b) != 0) return -1;
        if (!building(m)) { /* the value is complete, on top of the stack */
            set_slot(m, SLOT_VALUE);
            m->field = IN_NOTHING;
        }
        return 0;
    }
    if (m->skipped > 0) {
        if (--m->skipped == 0) {
            m->field = IN_NOTHING;
            m->header = HEADER_OTHER;
        }
        return 0;
    }
    m->depth--;
    m->field = IN_NOTHING;
    m->header = HEADER_OTHER;
    return m->depth == 1 ? message_end(m) : 0;
}

static int m_begin_object(void *ud) { return m_begin(ud, 1); }
static int m_begin_array(void *ud) { return m_begin(ud, 0); }
static int m_end_any(void *ud) { return m_end(ud); }

/* shape_messages(body [, null]) -> list, or nil, message
 * list: operation, key, value (false for delete) per row message; control, false, false per
 * control message. Refuses what is not an array of messages, a message without headers, a
 * row message without a key, an insert or update without a value object. */
static int shape_messages(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_settop(L, 2); /* index 2: the null value */
    messages mm;
    messages *m = &mm;
    memset(m, 0, sizeof *m);
    m->b.L = L;
    m->b.null_index = 2;
    lua_newtable(L);
    m->list = lua_gettop(L);
    for (int i = 0; i < SLOTS; i++)
        lua_pushnil(L);
    m->slot = m->list + 1;
    tr_json_sink sink = {m_null, m_boolean, m_integer,     m_number,  m_string, m_begin_object,
                         m_key,  m_end_any, m_begin_array, m_end_any, m};
    size_t at = 0;
    const char *what = NULL;
    tr_json_status st = tr_json_parse(s, n, LJSON_DEFAULT_DEPTH, &sink, &at, &what);
    if (st == TR_JSON_OK) {
        lua_settop(L, m->list);
        return 1;
    }
    if (!m->problem) return parse_failed(L, 2, st, at, what);
    lua_settop(L, 2);
    lua_pushnil(L);
    if (m->count == 0)
        lua_pushstring(L, m->problem);
    else
        lua_pushfstring(L, "message %d of the response %s", m->count, m->problem);
    return 2;
}

void tr_register_json(lua_State *L) {
    lua_pushcfunction(L, json_decode);
    lua_setfield(L, -2, "json_decode");
    lua_pushcfunction(L, shape_messages);
    lua_setfield(L, -2, "shape_messages");
}
