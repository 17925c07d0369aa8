/* trigger.core bindings of the shape protocol (csrc/lib/shape.h, csrc/lib/shapelog.h): the shape
 * userdata, status_verdict, url_encode and is_token, the tail check of a body, shape_messages
 * (the shape-log body decoder built on lvalue.c's value builder) and shape_reader (the streaming
 * reader of shapelog.c, each message decoded by the same sink). */
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "compat.h"
#include "lcore.h"
#include "lib/json.h"
#include "lib/rowblob.h"
#include "lib/shape.h"
#include "lib/shapelog.h"
#include "lvalue.h"

#define SHAPE_MT "trigger.shape"

typedef struct lshape {
    tr_shape *s;
} lshape;

static int has_nul(lua_State *L, int i) {
    size_t n;
    const char *s = lua_tolstring(L, i, &n);
    return memchr(s, '\0', n) != NULL;
}

/* The string at i (a string or a number) for the core, which reads tokens (handle, offset,
 * cursor) as C strings: one holding a NUL byte comes as " ", which is no token, so the core
 * refuses it like any other malformed value instead of reading up to the NUL. */
static const char *token_arg(lua_State *L, int i) {
    return has_nul(L, i) ? " " : lua_tostring(L, i);
}

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
            if (has_nul(L, -2) || has_nul(L, -1))
                return luaL_argerror(L, 2, "query parameters must not hold NUL bytes");
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
    const char *v = lua_type(L, -1) == LUA_TSTRING ? token_arg(L, -1) : NULL;
    lua_pop(L, 1); /* the headers table keeps the string alive */
    return v;
}

static const char *const action_names[] = {"apply", "resync", "retry", "fatal"};
static const char *const pace_names[] = {"go", "streak", "backoff"};

/* core.url_encode(s) -> s percent-encoded (tr_url_encode_n: the query's encoding) */
static int url_encode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    tr_buf *b = tr_scratch_take(L);
    return tr_scratch_push(L, tr_url_encode_n(b, s, n), "out of memory");
}

/* core.is_token(s) -> whether a value from the server may be sent back in a request header
 * (tr_is_token) */
static int is_token(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_pushboolean(L, tr_is_token(s, n));
    return 1;
}

/* shape:clone() -> an independent shape in the same state */
static int shape_clone(lua_State *L) {
    lshape *u = check_shape(L);
    lshape *c = push_shape(L);
    c->s = tr_shape_clone(u->s);
    if (c->s == NULL) return luaL_error(L, "out of memory");
    return 1;
}

/* A verdict's action, error kind and message (nil when none): three values. */
static void push_verdict(lua_State *L, tr_shape_verdict v) {
    lua_pushstring(L, action_names[v.action]);
    if (v.kind)
        lua_pushstring(L, v.kind);
    else
        lua_pushnil(L);
    if (v.message)
        lua_pushstring(L, v.message);
    else
        lua_pushnil(L);
}

/* shape:response(status, headers, body, body_up_to_date, changes, body_must_refetch, elapsed_s)
 * -> action, kind, message, pace ("go" | "streak" | "backoff": the request budget, shape.h) */
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
    const char *cc = header_field(L, 3, "cache-control");
    r.no_store = cc != NULL && strstr(cc, "no-store") != NULL;
    lua_Integer changes = luaL_optinteger(L, 6, 0);
    r.changes = changes <= 0 ? 0 : changes >= (lua_Integer)UINT_MAX ? UINT_MAX : (unsigned)changes;
    r.body_must_refetch = lua_toboolean(L, 7);
    r.elapsed_s = luaL_optnumber(L, 8, -1);
    tr_shape_verdict v = tr_shape_on_response(u->s, &r);
    push_verdict(L, v);
    lua_pushstring(L, pace_names[v.pace]);
    return 4;
}

/* core.status_verdict(status[, body]) -> action, kind, message: what an HTTP status means by
 * itself (tr_status_verdict: the table tr_shape_on_response starts from), no shape needed */
static int status_verdict(lua_State *L) {
    size_t len = 0;
    int status = (int)luaL_checkinteger(L, 1);
    const char *body = luaL_optlstring(L, 2, NULL, &len);
    tr_shape_verdict v = tr_status_verdict(status, body, len);
    push_verdict(L, v);
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

/* backoff_delay(attempts, base_s, cap_s, retry_after_s, unit_random) -> seconds: the delay of
 * any other retry (tr_backoff_delay) */
static int backoff_delay(lua_State *L) {
    lua_Integer attempts = luaL_checkinteger(L, 1);
    double d = tr_backoff_delay(attempts < 0      ? 0
                                : attempts > 1000 ? 1000
                                                  : (unsigned)attempts,
                                luaL_checknumber(L, 2), luaL_checknumber(L, 3),
                                luaL_optnumber(L, 4, 0), luaL_checknumber(L, 5));
    lua_pushnumber(L, d);
    return 1;
}

static int shape_restore(lua_State *L) {
    lshape *u = check_shape(L);
    luaL_optstring(L, 2, NULL); /* type checks; then the strings as the core may read them */
    luaL_optstring(L, 3, NULL);
    luaL_optstring(L, 4, NULL);
    const char *handle = lua_isnoneornil(L, 2) ? NULL : token_arg(L, 2);
    const char *offset = lua_isnoneornil(L, 3) ? NULL : token_arg(L, 3);
    const char *cursor = lua_isnoneornil(L, 4) ? NULL : token_arg(L, 4);
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

/* shape:idle() -> idle answers in the current streak (the request budget, shape.h) */
static int shape_idle(lua_State *L) {
    lshape *u = check_shape(L);
    lua_pushinteger(L, (lua_Integer)tr_shape_idle(u->s));
    return 1;
}

/* --- Electric shape messages ------------------------------------------------------------------
 *
 * A shape-log response is an array of messages {"headers": {"operation": "insert", ...},
 * "key": "...", "value": {column: text, ...}} or {"headers": {"control": "up-to-date"}}. Only
 * the operation or control, the key and the value matter; building the message and header
 * tables only to take them apart again was a third of the decoding of an initial sync. So
 * this sink reads the messages itself, builds only the values (with lvalue.c's builder), checks
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
    int one_element;     /* the streaming reader: stop the parse after each message */
    int element_done;    /* ... and it stopped there */
    tr_buf *blob;        /* non-NULL: values are kept as row blobs (rowblob.h), written here */
    int in_blob;         /* the value being read is going into the blob */
    size_t blob_name;    /* where the name whose value is still to come starts in it (0: none) */
} messages;

static int refuse(messages *m, const char *problem) {
    m->problem = problem;
    return -1;
}

static void set_slot(messages *m, int which) { lua_replace(m->b.L, m->slot + which); }

static int building(messages *m) { return m->b.depth > 0; }

/* --- Values as row blobs (shape_messages(body, null, true)): the members of a value object go
 * into m->blob as they come; the blob is the value once the object ends. A member the format
 * does not keep (a nested container, a name over 255 bytes) turns the value back into a table:
 * what the blob holds so far is given to the builder as the parser gave it, which then reads
 * the rest, as it would have read all of it. */

static int blob_failed(messages *m) { return luaL_error(m->b.L, "out of memory"); }

/* (the members before the name whose value is coming, then that name) */
static int blob_to_table(messages *m) {
    tr_json_sink to_builder = tr_ljson_sink(&m->b);
    size_t name = m->blob_name, whole = name ? name : m->blob->len;
    m->in_blob = 0;
    if (tr_rowblob_replay(m->blob->data, whole, &to_builder, 1, 0) != 0) return -1;
    if (!name) return 0;
    return tr_ljson_key(&m->b, m->blob->data + name + 1, (unsigned char)m->blob->data[name]);
}

static int blob_key(messages *m, const char *s, size_t n) {
    if (n > TR_ROWBLOB_NAME_MAX) {
        if (blob_to_table(m) != 0) return -1;
        return tr_ljson_key(&m->b, s, n);
    }
    m->blob_name = m->blob->len;
    return tr_rowblob_name(m->blob, s, n) == 0 ? 0 : blob_failed(m);
}

static int blob_wrote(messages *m, int rc) {
    m->blob_name = 0;
    return rc == 0 ? 0 : blob_failed(m);
}

/* The value object ends: the blob is the value. */
static void blob_end(messages *m) {
    lua_pushlstring(m->b.L, m->blob->data, m->blob->len);
    set_slot(m, SLOT_VALUE);
    m->in_blob = 0;
    m->field = IN_NOTHING;
}

/* An element of the array starts: a message must be an object. */
static int element(messages *m, int is_object) {
    m->count++;
    if (!is_object) return refuse(m, "is not an object");
    for (int i = 0; i < SLOTS; i++) {
        lua_pushnil(m->b.L);
        set_slot(m, i);
    }
    m->has_headers = 0;
    m->in_blob = 0;
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
    if (building(m)) return tr_ljson_null(&m->b);
    if (m->in_blob) return blob_wrote(m, tr_rowblob_null(m->blob));
    return scalar_value(m, 0, NULL, 0);
}

static int m_boolean(void *ud, int v) {
    messages *m = ud;
    if (building(m)) return tr_ljson_boolean(&m->b, v);
    if (m->in_blob) return blob_wrote(m, tr_rowblob_boolean(m->blob, v));
    return scalar_value(m, 0, NULL, 0);
}

static int m_integer(void *ud, int64_t v) {
    messages *m = ud;
    if (building(m)) return tr_ljson_integer(&m->b, v);
    if (m->in_blob) return blob_wrote(m, tr_rowblob_integer(m->blob, v));
    return scalar_value(m, 0, NULL, 0);
}

static int m_number(void *ud, double v) {
    messages *m = ud;
    if (building(m)) return tr_ljson_number(&m->b, v);
    if (m->in_blob) return blob_wrote(m, tr_rowblob_number(m->blob, v));
    return scalar_value(m, 0, NULL, 0);
}

static int m_string(void *ud, const char *s, size_t n) {
    messages *m = ud;
    if (building(m)) return tr_ljson_string(&m->b, s, n);
    if (m->in_blob) return blob_wrote(m, tr_rowblob_string(m->blob, s, n));
    return scalar_value(m, 1, s, n);
}

static int is_word(const char *s, size_t n, const char *word) {
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

static int m_key(void *ud, const char *s, size_t n) {
    messages *m = ud;
    if (building(m)) return tr_ljson_key(&m->b, s, n);
    if (m->in_blob) return blob_key(m, s, n);
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
    if (m->in_blob) { /* a nested container: the value is a table after all */
        if (blob_to_table(m) != 0) return -1;
        return tr_ljson_begin(&m->b, is_object);
    }
    if (!building(m) && m->blob && is_object && m->depth == 2 && m->field == IN_VALUE &&
        m->skipped == 0) {
        m->in_blob = 1;
        return blob_wrote(m, tr_rowblob_start(m->blob)); /* (no name waiting) */
    }
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
        size_t op_len;
        const char *op = lua_tolstring(L, m->slot + SLOT_OPERATION, &op_len);
        int has_value = lua_istable(L, m->slot + SLOT_VALUE) ||
                        (m->blob && lua_type(L, m->slot + SLOT_VALUE) == LUA_TSTRING);
        if (!has_value && (is_word(op, op_len, "insert") || is_word(op, op_len, "update")))
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
    if (m->in_blob) {
        blob_end(m);
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
    if (m->depth != 1) return 0;
    if (message_end(m) != 0) return -1;
    if (!m->one_element) return 0;
    m->element_done = 1; /* stops the parse right after the message's closing brace */
    return 1;
}

static int m_begin_object(void *ud) { return m_begin(ud, 1); }
static int m_begin_array(void *ud) { return m_begin(ud, 0); }
static int m_end_any(void *ud) { return m_end(ud); }

/* The sink of m. */
static tr_json_sink sink_of(messages *m) {
    tr_json_sink sink = {m_null, m_boolean, m_integer,     m_number,  m_string, m_begin_object,
                         m_key,  m_end_any, m_begin_array, m_end_any, m};
    return sink;
}

/* Start m on the stack: the list at index `list` (already there), nil slots pushed above it. */
static void messages_start(lua_State *L, messages *m, int null_index, int list) {
    /* The builder's fields before its levels (which need no zeroing: 24 KB, once per call
     * of a streaming feed) as a memset builder has them. */
    memset(&m->b, 0, offsetof(tr_ljson_builder, levels));
    m->b.L = L;
    m->b.null_index = null_index;
    m->depth = m->field = m->header = m->skipped = 0;
    m->count = 0;
    m->out = 0;
    m->has_headers = 0;
    m->problem = NULL;
    m->one_element = m->element_done = 0;
    m->blob = NULL;
    m->in_blob = 0;
    m->list = list;
    for (int i = 0; i < SLOTS; i++)
        lua_pushnil(L);
    m->slot = list + 1;
}

/* Push the message of a refused body. */
static void push_refusal(lua_State *L, const messages *m) {
    if (m->count == 0)
        lua_pushstring(L, m->problem);
    else
        lua_pushfstring(L, "message %d of the response %s", m->count, m->problem);
}

/* The whole body s at once, the null value at null_index: pushes the list, or nil, message. */
static int whole_messages(lua_State *L, const char *s, size_t n, int null_index, int blobs) {
    int base = lua_gettop(L);
    int box = base + 1;
    tr_buf *scratch = tr_scratch_take(L);
    messages mm;
    messages *m = &mm;
    tr_ljson_intern *intern = tr_ljson_push_intern(L); /* box + 1 */
    tr_buf *blob = NULL;
    if (blobs)
        blob = tr_scratch_take(L); /* box + 2: a box of its own (the first is taken) */
    else
        lua_pushnil(L);
    lua_newtable(L);
    messages_start(L, m, null_index, box + 3);
    m->b.intern = intern;
    m->b.intern_index = box + 1;
    m->blob = blob;
    tr_json_sink sink = sink_of(m);
    size_t at = 0;
    const char *what = NULL;
    tr_json_status st =
        tr_json_parse_with(s, n, TR_LJSON_DEFAULT_DEPTH, &sink, scratch, &at, &what);
    if (blob) tr_scratch_give(L, box + 2);
    tr_scratch_give(L, box);
    if (st == TR_JSON_OK) {
        lua_pushvalue(L, m->list);
        lua_replace(L, base + 1);
        lua_settop(L, base + 1);
        return 1;
    }
    if (!m->problem) return tr_ljson_failed(L, base, st, at, what);
    lua_settop(L, base);
    lua_pushnil(L);
    push_refusal(L, m);
    return 2;
}

/* shape_messages(body [, null]) -> list, or nil, message
 * list: operation, key, value (false for delete) per row message; control, false, false per
 * control message. Refuses what is not an array of messages, a message without headers, a
 * row message without a key, an insert or update without a value object. */
static int shape_messages(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    int blobs = lua_toboolean(L, 3);
    lua_settop(L, 2); /* index 2: the null value */
    return whole_messages(L, s, n, 2, blobs);
}

/* --- The streaming reader ---------------------------------------------------------------------
 *
 * core.shape_reader([null]) reads a shape-log body in pieces as they arrive, with exactly the
 * results of shape_messages on the whole body (the same list, the same refusal or error text)
 * for any split. The top level (the array's brackets, commas and white space, what is kept of
 * the body, when a message is tried again) is the plain-C reader of shapelog.h; each message is
 * parsed here by the JSON parser with the sink above (stopping right after the message's
 * closing brace). A body that does not start with '[' is decoded by shape_messages' own path
 * at finish(). */

#define READER_MT "trigger.shape_reader"

enum { UV_LIST = 1, UV_NULL, UV_PROBLEM, UV_BODY };

typedef struct reader {
    tr_shapelog log;
    int closed;
    int busy;        /* inside a call (a call a Lua error unwound leaves it so) */
    int count;       /* messages so far */
    lua_Integer out; /* entries in the list */
    int blobs;       /* values as row blobs, written in `blob` */
    tr_buf blob;
} reader;

/* The tail is given up (freed unless borrowed). */
static void drop_tail(reader *r) {
    tr_shapelog_release(&r->log);
    tr_buf_free(&r->blob);
}

static reader *check_reader(lua_State *L) {
    reader *r = tr_checkudata(L, 1, READER_MT);
    if (r->closed) luaL_argerror(L, 1, "shape reader is closed");
    if (r->busy) luaL_error(L, "shape reader broken by an earlier error");
    return r;
}

static int reader_new(lua_State *L) {
    int blobs = lua_toboolean(L, 2);
    lua_settop(L, 1);
    reader *r = lua_newuserdata(L, sizeof *r); /* 2 */
    r->closed = 1; /* closed first: nothing to free until it is set up */
    r->busy = 0;
    tr_shapelog_init(&r->log);
    tr_buf_init(&r->blob);
    r->blobs = blobs;
    luaL_getmetatable(L, READER_MT);
    lua_setmetatable(L, 2);
    lua_createtable(L, 3, 0);
    lua_newtable(L);
    lua_rawseti(L, -2, UV_LIST);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, UV_NULL);
    tr_setuservalue(L, 2);
    r->count = 0;
    r->out = 0;
    r->closed = 0;
    return 1;
}

/* __gc, __close and close(): safe to call more than once. */
static int reader_close(lua_State *L) {
    reader *r = tr_checkudata(L, 1, READER_MT);
    drop_tail(r);
    r->closed = 1;
    return 0;
}

/* Parse the message at p[0..n) (whole: all the bytes it will have) into the list; what the
 * reader makes of it (tr_shapelog_parsed). A refusal's text goes into the user value at uv. */
static tr_shapelog_verdict parse_message(lua_State *L, reader *r, messages *m, int uv,
                                         tr_buf *scratch, const char *p, size_t n) {
    int count = r->count;
    lua_Integer out = r->out;
    m->count = r->count;
    m->out = r->out;
    m->depth = 1; /* inside the array */
    m->field = m->header = m->skipped = 0;
    m->b.depth = 0;
    m->one_element = 1;
    m->element_done = 0;
    m->in_blob = 0;
    m->problem = NULL;
    size_t at = 0;
    const char *what = NULL;
    tr_json_sink sink = sink_of(m);
    tr_json_status st =
        tr_json_parse_with(p, n, TR_LJSON_DEFAULT_DEPTH - 1, &sink, scratch, &at, &what);
    r->count = m->count;
    r->out = m->out;
    lua_settop(L, m->slot + SLOTS - 1);
    /* A problem of the sink, or a stop without the message's end (too deep for the Lua
     * stack), is a refusal; a parse that failed (TR_JSON_OK cannot be: a message ends by the
     * sink's stop) is invalid JSON, or a message not all in yet. */
    tr_shapelog_parse kind = TR_SHAPELOG_PARSE_INVALID;
    if (m->problem || st == TR_JSON_STOPPED)
        kind = !m->problem && m->element_done ? TR_SHAPELOG_PARSE_DONE : TR_SHAPELOG_PARSE_REFUSED;
    tr_shapelog_verdict v = tr_shapelog_parsed(&r->log, kind, at, what);
    if (v == TR_SHAPELOG_AGAIN) {
        r->count = count; /* (a message goes into the list only once complete) */
        r->out = out;
    } else if (v == TR_SHAPELOG_REFUSE && kind == TR_SHAPELOG_PARSE_REFUSED) {
        if (m->problem)
            push_refusal(L, m);
        else
            lua_pushliteral(L, "JSON too deep for the Lua stack");
        lua_rawseti(L, uv, UV_PROBLEM);
    }
    return v;
}

/* Move the top level on as far as the bytes go (final: they are all there). The reader's user
 * value is at `uv`. */
static void advance(lua_State *L, reader *r, int uv, int final) {
    int base = lua_gettop(L);
    lua_rawgeti(L, uv, UV_NULL);                       /* base + 1 */
    tr_buf *scratch = tr_scratch_take(L);              /* base + 2 */
    tr_ljson_intern *intern = tr_ljson_push_intern(L); /* base + 3 */
    lua_rawgeti(L, uv, UV_LIST);                       /* base + 4 */
    messages mm;
    messages *m = &mm;
    messages_start(L, m, base + 1, base + 4);
    m->b.intern = intern;
    m->b.intern_index = base + 3;
    if (r->blobs) m->blob = &r->blob;
    r->busy = 1;
    const char *p;
    size_t n;
    while (tr_shapelog_next(&r->log, final, &p, &n) == TR_SHAPELOG_MESSAGE)
        if (parse_message(L, r, m, uv, scratch, p, n) == TR_SHAPELOG_AGAIN) break;
    tr_scratch_give(L, base + 2);
    lua_settop(L, base);
    r->busy = 0;
    if (r->log.state == TR_SHAPELOG_FAILED) {
        if (r->log.what != NULL) { /* (else the refusal is in the user value already) */
            lua_pushfstring(L, "%s at byte %d", r->log.what, (int)r->log.at + 1);
            lua_rawseti(L, uv, UV_PROBLEM);
        }
        drop_tail(r);
        return;
    }
    tr_shapelog_compact(&r->log);
}

static int push_problem(lua_State *L, int uv) {
    lua_pushnil(L);
    lua_rawgeti(L, uv, UV_PROBLEM);
    return 2;
}

/* reader:feed(bytes) -> true | nil, problem (the body is refused: later feeds change nothing) */
static int reader_feed(lua_State *L) {
    reader *r = check_reader(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    lua_settop(L, 2);
    tr_getuservalue(L, 1); /* 3 */
    if (r->log.state == TR_SHAPELOG_FAILED) return push_problem(L, 3);
    if (r->log.borrowed) return luaL_error(L, "shape reader: feed after parse");
    if (tr_shapelog_feed(&r->log, s, n) != 0) return luaL_error(L, "out of memory");
    advance(L, r, 3, 0);
    if (r->log.state == TR_SHAPELOG_FAILED) return push_problem(L, 3);
    lua_pushboolean(L, 1);
    return 1;
}

/* reader:parse(body, max) -> done | nil, problem
 * The whole body at once, read at most `max` messages per call (the caller does other work in
 * between: a sync's next page keeps coming off the network while this one is decoded), with
 * no copy of it and no scan: its end is known. Each call takes the same body string; once
 * done is true (or at any time) finish() reads what is left and gives the list, exactly
 * shape_messages' answer for the body. A reader fed pieces takes no parse, nor the other way. */
static int reader_parse(lua_State *L) {
    reader *r = check_reader(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    lua_Integer max = luaL_checkinteger(L, 3);
    luaL_argcheck(L, max >= 1, 3, "at least one message");
    lua_settop(L, 3);
    tr_getuservalue(L, 1); /* 4 */
    if (r->log.state == TR_SHAPELOG_FAILED) return push_problem(L, 4);
    if (!r->log.borrowed) {
        if (tr_shapelog_borrow(&r->log, s, n) != 0)
            return luaL_error(L, "shape reader: parse after feed");
        lua_pushvalue(L, 2);
        lua_rawseti(L, 4, UV_BODY); /* keeps the bytes the tail points at */
    } else {
        lua_rawgeti(L, 4, UV_BODY);
        if (!lua_rawequal(L, -1, 2)) return luaL_error(L, "shape reader: parse of another body");
        lua_pop(L, 1);
    }
    r->log.budget = max > INT_MAX ? INT_MAX : (int)max;
    if (r->log.state != TR_SHAPELOG_WHOLE) advance(L, r, 4, 1);
    r->log.budget = -1;
    if (r->log.state == TR_SHAPELOG_FAILED) return push_problem(L, 4);
    lua_pushboolean(L, r->log.state == TR_SHAPELOG_END || r->log.state == TR_SHAPELOG_WHOLE);
    return 1;
}

/* reader:finish() -> list | nil, problem: the end of the body. The reader is closed after. */
static int reader_finish(lua_State *L) {
    reader *r = check_reader(L);
    lua_settop(L, 1);
    tr_getuservalue(L, 1); /* 2 */
    r->log.budget = -1;
    if (r->log.state != TR_SHAPELOG_FAILED && r->log.state != TR_SHAPELOG_WHOLE)
        advance(L, r, 2, 1);
    if (r->log.state == TR_SHAPELOG_WHOLE) {
        lua_rawgeti(L, 2, UV_NULL); /* 3 */
        r->busy = 1;
        const tr_buf *t = &r->log.tail;
        int k = whole_messages(L, t->data ? t->data : "", t->len, 3, r->blobs);
        r->busy = 0;
        reader_close(L);
        return k;
    }
    int k;
    if (r->log.state == TR_SHAPELOG_FAILED) {
        k = push_problem(L, 2);
    } else {
        lua_rawgeti(L, 2, UV_LIST);
        k = 1;
    }
    if (r->log.borrowed) { /* the body is no longer held (the key is there: no allocation) */
        lua_pushnil(L);
        lua_rawseti(L, 2, UV_BODY);
    }
    drop_tail(r);
    r->closed = 1;
    return k;
}

/* reader:ends_up_to_date() -> boolean: core.ends_up_to_date of the body so far (its last
 * TR_SHAPELOG_LAST_KEEP bytes) */
static int reader_ends_up_to_date(lua_State *L) {
    reader *r = tr_checkudata(L, 1, READER_MT);
    lua_pushboolean(L, tr_shapelog_ends_up_to_date(&r->log));
    return 1;
}

/* reader:bytes() -> the body bytes fed so far */
static int reader_bytes(lua_State *L) {
    reader *r = tr_checkudata(L, 1, READER_MT);
    lua_pushinteger(L, (lua_Integer)r->log.fed);
    return 1;
}

static const luaL_Reg reader_methods[] = {{"feed", reader_feed},
                                          {"parse", reader_parse},
                                          {"finish", reader_finish},
                                          {"ends_up_to_date", reader_ends_up_to_date},
                                          {"bytes", reader_bytes},
                                          {"close", reader_close},
                                          {NULL, NULL}};

static const luaL_Reg shape_methods[] = {{"query", shape_query},
                                         {"response", shape_response},
                                         {"backoff", shape_backoff},
                                         {"restore", shape_restore},
                                         {"position", shape_position},
                                         {"attempts", shape_attempts},
                                         {"idle", shape_idle},
                                         {"close", shape_close},
                                         {"clone", shape_clone},
                                         {"interrupted", shape_interrupted},
                                         {NULL, NULL}};

static const luaL_Reg functions[] = {{"shape", shape_new},
                                     {"status_verdict", status_verdict},
                                     {"url_encode", url_encode},
                                     {"is_token", is_token},
                                     {"ends_up_to_date", ends_up_to_date},
                                     {"backoff_delay", backoff_delay},
                                     {"shape_messages", shape_messages},
                                     {"shape_reader", reader_new},
                                     {NULL, NULL}};

void tr_open_shape(lua_State *L) {
    tr_newclass(L, SHAPE_MT, shape_methods, shape_close);
    lua_pop(L, 1);
    tr_newclass(L, READER_MT, reader_methods, reader_close);
    lua_pop(L, 1);
    tr_setfuncs(L, functions);
}
