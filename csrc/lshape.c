/* trigger.core bindings of the shape protocol (csrc/shape.c): the shape userdata, the tail check
 * of a body, and shape_messages, the shape-log body decoder built on ljson.c's value builder. */
#include <string.h>

#include "compat.h"
#include "json.h"
#include "lcore.h"
#include "ljson.h"
#include "shape.h"

#define SHAPE_MT "trigger.shape"

typedef struct lshape {
    tr_shape *s;
} lshape;

static lshape *check_shape(lua_State *L) {
    lshape *u = tr_checkudata(L, 1, SHAPE_MT);
    if (u->s == NULL) luaL_argerror(L, 1, "shape state is closed");
    return u;
}

/* A shape userdata owning s (pushed before s is made, so a failed allocation leaves nothing
 * behind: its __gc frees NULL). */
static lshape *push_shape(lua_State *L) {
    lshape *u = lua_newuserdata(L, sizeof *u);
    u->s = NULL;
    luaL_getmetatable(L, SHAPE_MT);
    lua_setmetatable(L, -2);
    return u;
}

static int shape_new(lua_State *L) {
    lshape *u = push_shape(L);
    u->s = tr_shape_new();
    if (u->s == NULL) return luaL_error(L, "out of memory");
    return 1;
}

/* __gc, __close and close(): safe to call more than once. */
static int shape_close(lua_State *L) {
    lshape *u = tr_checkudata(L, 1, SHAPE_MT);
    tr_shape_free(u->s);
    u->s = NULL;
    return 0;
}

/* shape:query{ key = value, ... } -> sorted, encoded query string */
static int shape_query(lua_State *L) {
    lshape *u = check_shape(L);
    tr_param extra[64];
    size_t n = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                return luaL_argerror(L, 2, "query parameters must be strings");
            if (n == 64) return luaL_argerror(L, 2, "too many query parameters");
            /* Both strings stay alive in the table while we use them. */
            extra[n].key = lua_tostring(L, -2);
            extra[n].value = lua_tostring(L, -1);
            n++;
            lua_pop(L, 1);
        }
    }
    tr_buf *out = tr_scratch_take(L);
    if (tr_scratch_push(L, tr_shape_query(u->s, extra, n, out), "") != 1)
        return luaL_error(L, "out of memory building the query");
    return 1;
}

static const char *header_field(lua_State *L, int headers, const char *name) {
    lua_getfield(L, headers, name);
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the headers table keeps the string alive */
    return v;
}

static const char *const action_names[] = {"apply", "resync", "retry", "fatal"};

/* shape:clone() -> an independent shape in the same state */
static int shape_clone(lua_State *L) {
    lshape *u = check_shape(L);
    lshape *c = push_shape(L);
    c->s = tr_shape_clone(u->s);
    if (c->s == NULL) return luaL_error(L, "out of memory");
    return 1;
}

/* shape:response(status, headers, body, body_up_to_date) -> action, kind, message */
static int shape_response(lua_State *L) {
    lshape *u = check_shape(L);
    tr_shape_response r;
    memset(&r, 0, sizeof r);
    r.status = (int)luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    r.body = luaL_optlstring(L, 4, NULL, &r.body_len);
    r.handle = header_field(L, 3, "electric-handle");
    r.offset = header_field(L, 3, "electric-offset");
    r.cursor = header_field(L, 3, "electric-cursor");
    lua_getfield(L, 3, "electric-up-to-date");
    r.up_to_date = !lua_isnil(L, -1);
    lua_pop(L, 1);
    r.body_up_to_date = lua_toboolean(L, 5);
    tr_shape_verdict v = tr_shape_on_response(u->s, &r);
    lua_pushstring(L, action_names[v.action]);
    if (v.kind)
        lua_pushstring(L, v.kind);
    else
        lua_pushnil(L);
    if (v.message)
        lua_pushstring(L, v.message);
    else
        lua_pushnil(L);
    return 3;
}

/* shape:interrupted(): the request failed without a usable answer */
static int shape_interrupted(lua_State *L) {
    tr_shape_interrupted(check_shape(L)->s);
    return 0;
}

/* core.ends_up_to_date(body) -> boolean (a look at the tail, before decoding) */
static int ends_up_to_date(lua_State *L) {
    size_t len;
    const char *body = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, tr_shape_body_ends_up_to_date(body, len));
    return 1;
}

/* shape:backoff(base_s, cap_s, retry_after_s, unit_random) -> seconds */
static int shape_backoff(lua_State *L) {
    lshape *u = check_shape(L);
    double d = tr_shape_backoff(u->s, luaL_checknumber(L, 2), luaL_checknumber(L, 3),
                                luaL_optnumber(L, 4, 0), luaL_checknumber(L, 5));
    lua_pushnumber(L, d);
    return 1;
}

static int shape_restore(lua_State *L) {
    lshape *u = check_shape(L);
    const char *handle = luaL_optstring(L, 2, NULL);
    const char *offset = luaL_optstring(L, 3, NULL);
    const char *cursor = luaL_optstring(L, 4, NULL);
    if (tr_shape_restore(u->s, handle, offset, cursor) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "not a valid shape position (handle/offset/cursor)");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static void push_opt(lua_State *L, const char *s) {
    if (s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
}

/* shape:position() -> handle, offset, cursor, live */
static int shape_position(lua_State *L) {
    lshape *u = check_shape(L);
    push_opt(L, tr_shape_handle(u->s));
    push_opt(L, tr_shape_offset(u->s));
    push_opt(L, tr_shape_cursor(u->s));
    lua_pushboolean(L, tr_shape_live(u->s));
    return 4;
}

static int shape_attempts(lua_State *L) {
    lshape *u = check_shape(L);
    lua_pushinteger(L, (lua_Integer)tr_shape_attempts(u->s));
    return 1;
}

/* --- Electric shape messages ------------------------------------------------------------------
 *
 * A shape-log response is an array of messages {"headers": {"operation": "insert", ...},
 * "key": "...", "value": {column: text, ...}} or {"headers": {"control": "up-to-date"}}. Only
 * the operation or control, the key and the value matter; building the message and header
 * tables only to take them apart again was a third of the decoding of an initial sync. So
 * this sink reads the messages itself, builds only the values (with ljson.c's builder), checks
 * each message as it ends, and hands out a flat list: operation, key, value for each row
 * message, and control, false, false for each control message; messages with neither are
 * left out. */

enum { IN_NOTHING, IN_HEADERS, IN_KEY, IN_VALUE, IN_SKIPPED };
enum { HEADER_OTHER, HEADER_OPERATION, HEADER_CONTROL };
enum { SLOT_OPERATION, SLOT_CONTROL, SLOT_KEY, SLOT_VALUE, SLOTS };

typedef struct messages {
    tr_ljson_builder b;  /* builds each value */
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
    return building(m) ? tr_ljson_null(&m->b) : scalar_value(m, 0, NULL, 0);
}

static int m_boolean(void *ud, int v) {
    messages *m = ud;
    return building(m) ? tr_ljson_boolean(&m->b, v) : scalar_value(m, 0, NULL, 0);
}

static int m_integer(void *ud, int64_t v) {
    messages *m = ud;
    return building(m) ? tr_ljson_integer(&m->b, v) : scalar_value(m, 0, NULL, 0);
}

static int m_number(void *ud, double v) {
    messages *m = ud;
    return building(m) ? tr_ljson_number(&m->b, v) : scalar_value(m, 0, NULL, 0);
}

static int m_string(void *ud, const char *s, size_t n) {
    messages *m = ud;
    return building(m) ? tr_ljson_string(&m->b, s, n) : scalar_value(m, 1, s, n);
}

static int is_word(const char *s, size_t n, const char *word) {
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

static int m_key(void *ud, const char *s, size_t n) {
    messages *m = ud;
    if (building(m)) return tr_ljson_key(&m->b, s, n);
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
        return tr_ljson_begin(&m->b, is_object); /* a value (an array too, as a table) */
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
        if (tr_ljson_end(&m->b) != 0) return -1;
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
    lua_settop(L, 2);                     /* index 2: the null value */
    tr_buf *scratch = tr_scratch_take(L); /* 3 */
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
    tr_json_status st =
        tr_json_parse_with(s, n, TR_LJSON_DEFAULT_DEPTH, &sink, scratch, &at, &what);
    tr_scratch_give(L, 3);
    if (st == TR_JSON_OK) {
        lua_settop(L, m->list);
        return 1;
    }
    if (!m->problem) return tr_ljson_failed(L, 2, st, at, what);
    lua_settop(L, 2);
    lua_pushnil(L);
    if (m->count == 0)
        lua_pushstring(L, m->problem);
    else
        lua_pushfstring(L, "message %d of the response %s", m->count, m->problem);
    return 2;
}

static const luaL_Reg shape_methods[] = {{"query", shape_query},
                                         {"response", shape_response},
                                         {"backoff", shape_backoff},
                                         {"restore", shape_restore},
                                         {"position", shape_position},
                                         {"attempts", shape_attempts},
                                         {"close", shape_close},
                                         {"clone", shape_clone},
                                         {"interrupted", shape_interrupted},
                                         {NULL, NULL}};

static const luaL_Reg functions[] = {{"shape", shape_new},
                                     {"ends_up_to_date", ends_up_to_date},
                                     {"shape_messages", shape_messages},
                                     {NULL, NULL}};

void tr_open_shape(lua_State *L) {
    tr_newclass(L, SHAPE_MT, shape_methods, shape_close);
    lua_pop(L, 1);
    tr_setfuncs(L, functions);
}
