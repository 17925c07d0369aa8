/* trigger.core: Lua bindings of the I/O-free parts (shape protocol, Postgres values, JWT
 * bytes). Loads anywhere, including inside nginx: no libcurl here. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compat.h"
#include "json.h"
#include "jwt.h"
#include "pgtext.h"
#include "shape.h"

#define SHAPE_MT "trigger.shape"

void tr_register_http1(lua_State *L);     /* lhttp1.c */
void tr_register_json(lua_State *L);      /* ljson.c */
void tr_register_superjson(lua_State *L); /* lsuperjson.c */

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
    tr_buf out;
    tr_buf_init(&out);
    int rc = tr_shape_query(u->s, extra, n, &out);
    if (rc == 0) lua_pushlstring(L, out.data ? out.data : "", out.len);
    tr_buf_free(&out);
    if (rc != 0) return luaL_error(L, "out of memory building the query");
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

/* --- Postgres values --- */

typedef struct array_builder {
    lua_State *L;
    int null_index; /* stack index of the value that stands for NULL */
    int depth;
} array_builder;

static int ab_open(void *ud) {
    array_builder *b = ud;
    if (!lua_checkstack(b->L, 4)) return -1;
    lua_newtable(b->L);
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

/* Push the array literal s as a nested table (NULL elements as the value at null_index).
 * Returns 0, or the tr_pg_array_parse code with the stack as it was. */
static int push_pg_array(lua_State *L, const char *s, size_t n, int null_index, size_t *at) {
    int top = lua_gettop(L);
    array_builder b = {L, null_index, 0};
    tr_pg_array_sink sink = {ab_open, ab_close, ab_element, &b};
    int rc = tr_pg_array_parse(s, n, &sink, at);
    if (rc != 0) lua_settop(L, top);
    return rc;
}

static void pg_array_problem(lua_State *L, int rc, size_t at) {
    if (rc == -2)
        lua_pushliteral(L, "array too deep or out of memory");
    else
        lua_pushfstring(L, "malformed Postgres array at byte %d", (int)at + 1);
}

/* pg_array(text [, null]) -> nested table of strings, or nil, message */
static int pg_array(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (lua_isnone(L, 2)) lua_pushnil(L);
    lua_settop(L, 2);
    size_t at = 0;
    int rc = push_pg_array(L, s, n, 2, &at);
    if (rc != 0) {
        lua_pushnil(L);
        pg_array_problem(L, rc, at);
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

/* --- run objects --- */

/* Database status -> public status (the SDK's mapping); anything else is QUEUED. */
static const char *const status_map[][2] = {
    {"PENDING", "QUEUED"},
    {"EXECUTING", "EXECUTING"},
    {"COMPLETED_SUCCESSFULLY", "COMPLETED"},
    {"DEQUEUED", "DEQUEUED"},
    {"DELAYED", "DELAYED"},
    {"WAITING_FOR_DEPLOY", "PENDING_VERSION"},
    {"PENDING_VERSION", "PENDING_VERSION"},
    {"PAUSED", "WAITING"},
    {"WAITING_TO_RESUME", "WAITING"},
    {"RETRYING_AFTER_FAILURE", "EXECUTING"},
    {"CANCELED", "CANCELED"},
    {"SYSTEM_FAILURE", "SYSTEM_FAILURE"},
    {"CRASHED", "CRASHED"},
    {"INTERRUPTED", "FAILED"},
    {"COMPLETED_WITH_ERRORS", "FAILED"},
    {"EXPIRED", "EXPIRED"},
    {"TIMED_OUT", "TIMED_OUT"},
};

static const char *public_status(const char *db) {
    if (db == NULL) return "QUEUED";
    for (size_t i = 0; i < sizeof status_map / sizeof status_map[0]; i++)
        if (strcmp(db, status_map[i][0]) == 0) return status_map[i][1];
    return "QUEUED";
}

static int one_of(const char *s, const char *const *set) {
    for (; *set; set++)
        if (strcmp(s, *set) == 0) return 1;
    return 0;
}

typedef struct run_builder {
    lua_State *L;
    int row, null_index, run, problems; /* stack indices; problems holds nil until the first */
} run_builder;

/* Note a problem with column `name` (its message is on top of the stack: popped). The list
 * lives in a stack slot reserved for it, made on the first problem only. */
static void problem(run_builder *rb, const char *name) {
    lua_State *L = rb->L;
    if (lua_isnil(L, rb->problems)) {
        lua_newtable(L);
        lua_replace(L, rb->problems);
    }
    lua_pushfstring(L, "%s %s", name, lua_tostring(L, -1));
    lua_rawseti(L, rb->problems, (int)tr_rawlen(L, rb->problems) + 1);
    lua_pop(L, 1);
}

/* Push column `name` of the row; returns its text, or NULL (nothing pushed) when NULL/absent
 * or not a string (then a problem is noted). */
static const char *column(run_builder *rb, const char *name, size_t *len) {
    lua_State *L = rb->L;
    lua_getfield(L, rb->row, name);
    if (lua_type(L, -1) == LUA_TSTRING) return lua_tolstring(L, -1, len);
    int missing = lua_isnil(L, -1) || lua_rawequal(L, -1, rb->null_index);
    lua_pop(L, 1);
    if (!missing) {
        lua_pushliteral(L, "is not a text value");
        problem(rb, name);
    }
    return NULL;
}

static void set(run_builder *rb, const char *field) { lua_setfield(rb->L, rb->run, field); }

static void timestamp_field(run_builder *rb, const char *col, const char *field) {
    size_t n;
    const char *v = column(rb, col, &n);
    if (v == NULL) return;
    char out[TR_PG_ISO_LEN + 1];
    if (tr_pg_timestamp_iso(v, n, out) == 0) {
        lua_pop(rb->L, 1);
        lua_pushlstring(rb->L, out, TR_PG_ISO_LEN);
    } else {
        lua_pushfstring(rb->L, "is not a timestamp: %s", v);
        problem(rb, col); /* the server's text is passed on as it is */
    }
    set(rb, field);
}

/* A numeral as Lua reads it (integer or float subtype), or NaN/Infinity; 0 when it is none. */
static int push_numeral(lua_State *L, const char *v, size_t n) {
    double d;
    if (tr_decimal_fast(v, n, &d)) { /* "0.0362": most cost columns, without strtod */
        lua_pushnumber(L, (lua_Number)d);
        return 1;
    }
#if LUA_VERSION_NUM >= 503
    if (lua_stringtonumber(L, v) != 0) return 1;
#else
    char *end;
    d = strtod(v, &end);
    if (end != v && *end == '\0' && strpbrk(v, "nN") == NULL) {
        lua_pushnumber(L, (lua_Number)d);
        return 1;
    }
#endif
    if (strcmp(v, "NaN") == 0)
        lua_pushnumber(L, (lua_Number)NAN);
    else if (strcmp(v, "Infinity") == 0)
        lua_pushnumber(L, (lua_Number)HUGE_VAL);
    else if (strcmp(v, "-Infinity") == 0)
        lua_pushnumber(L, -(lua_Number)HUGE_VAL);
    else
        return 0;
    return 1;
}

static void number_field(run_builder *rb, const char *col, const char *field, int zero) {
    lua_State *L = rb->L;
    size_t n;
    const char *v = column(rb, col, &n);
    if (v != NULL) {
        int ok = push_numeral(L, v, n);
        if (ok) lua_remove(L, -2); /* the column's text */
        if (ok) {
            set(rb, field);
            return;
        }
        lua_pushfstring(L, "is not a number: %s", v);
        lua_remove(L, -2);
        problem(rb, col);
    }
    if (zero) {
        lua_pushinteger(L, 0);
        set(rb, field);
    }
}

static void array_field(run_builder *rb, const char *col, const char *field) {
    lua_State *L = rb->L;
    size_t n, at = 0;
    const char *v = column(rb, col, &n);
    int rc = v == NULL ? 1 : push_pg_array(L, v, n, rb->null_index, &at);
    if (v != NULL) lua_remove(L, rc == 0 ? -2 : -1); /* the column's text */
    if (v != NULL && rc != 0) {
        pg_array_problem(L, rc, at);
        problem(rb, col);
    }
    if (rc != 0) lua_newtable(L);
    set(rb, field);
}

static void text_field(run_builder *rb, const char *col, const char *field) {
    size_t n;
    if (column(rb, col, &n) != NULL) set(rb, field);
}

static void flag(run_builder *rb, const char *field, int value) {
    lua_pushboolean(rb->L, value);
    set(rb, field);
}

/* run_fields(row, null) -> run, problems
 * The plain fields of the public run object from a stored row (everything but error and the
 * packets, which stay in Lua): renames, status and its helpers, timestamps, numbers, arrays.
 * problems is nil, or a list of "column what is wrong" messages. One call per run: this is the
 * hot path of an initial sync. */
static int run_fields(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    lua_createtable(L, 0, 32); /* 3: the run */
    lua_pushnil(L);            /* 4: the problems, if any */
    run_builder rb = {L, 1, 2, 3, 4};
    text_field(&rb, "friendlyId", "id");
    text_field(&rb, "taskIdentifier", "taskIdentifier");
    size_t n;
    const char *db = column(&rb, "status", &n);
    const char *status = public_status(db);
    if (db != NULL) lua_pop(L, 1);
    lua_pushstring(L, status);
    set(&rb, "status");
    timestamp_field(&rb, "createdAt", "createdAt");
    timestamp_field(&rb, "updatedAt", "updatedAt");
    timestamp_field(&rb, "startedAt", "startedAt");
    timestamp_field(&rb, "queuedAt", "queuedAt");
    timestamp_field(&rb, "expiredAt", "expiredAt");
    timestamp_field(&rb, "completedAt", "finishedAt");
    timestamp_field(&rb, "delayUntil", "delayedUntil");
    number_field(&rb, "number", "number", 0);
    number_field(&rb, "usageDurationMs", "durationMs", 1);
    number_field(&rb, "costInCents", "costInCents", 1);
    number_field(&rb, "baseCostInCents", "baseCostInCents", 1);
    array_field(&rb, "runTags", "tags");
    array_field(&rb, "realtimeStreams", "realtimeStreams");
    const char *t = column(&rb, "isTest", &n);
    int is_test = 0;
    if (t != NULL) {
        is_test = strcmp(t, "t") == 0 || strcmp(t, "true") == 0;
        if (!is_test && strcmp(t, "f") != 0 && strcmp(t, "false") != 0) {
            lua_pushfstring(L, "is not a boolean: %s", t);
            problem(&rb, "isTest");
        }
        lua_pop(L, 1);
    }
    flag(&rb, "isTest", is_test);
    text_field(&rb, "ttl", "ttl");
    text_field(&rb, "idempotencyKey", "idempotencyKey");
    static const char *const queued[] = {"PENDING_VERSION", "QUEUED", "DELAYED", NULL};
    static const char *const executing[] = {"DEQUEUED", "EXECUTING", NULL};
    static const char *const failed[] = {"FAILED",  "CRASHED",   "SYSTEM_FAILURE",
                                         "EXPIRED", "TIMED_OUT", NULL};
    int success = strcmp(status, "COMPLETED") == 0, is_failed = one_of(status, failed);
    flag(&rb, "isQueued", one_of(status, queued));
    flag(&rb, "isExecuting", one_of(status, executing));
    flag(&rb, "isWaiting", strcmp(status, "WAITING") == 0);
    flag(&rb, "isSuccess", success);
    flag(&rb, "isFailed", is_failed);
    flag(&rb, "isCompleted", success || is_failed);
    flag(&rb, "isCancelled", strcmp(status, "CANCELED") == 0);
    lua_settop(L, rb.problems); /* the run, then the problems (nil when none) */
    return 2;
}

/* --- JWT bytes --- */

static int hs256(lua_State *L) {
    size_t kn, mn;
    const char *key = luaL_checklstring(L, 1, &kn);
    const char *msg = luaL_checklstring(L, 2, &mn);
    unsigned char mac[TR_HS256_LEN];
    if (tr_hs256(key, kn, msg, mn, mac) != 0) return luaL_error(L, "HMAC-SHA256 failed");
    lua_pushlstring(L, (const char *)mac, sizeof mac);
    return 1;
}

static int push_buf_or_fail(lua_State *L, tr_buf *b, int rc, const char *what) {
    if (rc == 0) lua_pushlstring(L, b->data ? b->data : "", b->len);
    tr_buf_free(b);
    if (rc == 0) return 1;
    lua_pushnil(L);
    lua_pushstring(L, what);
    return 2;
}

static int b64url_encode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    tr_buf b;
    tr_buf_init(&b);
    return push_buf_or_fail(L, &b, tr_base64url_encode(&b, s, n), "out of memory");
}

static int b64url_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    tr_buf b;
    tr_buf_init(&b);
    return push_buf_or_fail(L, &b, tr_base64url_decode(&b, s, n), "not base64url");
}

static int url_encode(lua_State *L) {
    const char *s = luaL_checkstring(L, 1);
    tr_buf b;
    tr_buf_init(&b);
    return push_buf_or_fail(L, &b, tr_url_encode(&b, s), "out of memory");
}

/* monotonic() -> seconds from an arbitrary origin, never going back */
static int monotonic(lua_State *L) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    lua_pushnumber(L, (double)t.tv_sec + t.tv_nsec / 1e9);
    return 1;
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
                                     {"run_fields", run_fields},
                                     {"pg_array", pg_array},
                                     {"pg_timestamp", pg_timestamp},
                                     {"hs256", hs256},
                                     {"b64url_encode", b64url_encode},
                                     {"b64url_decode", b64url_decode},
                                     {"url_encode", url_encode},
                                     {"monotonic", monotonic},
                                     {NULL, NULL}};

int luaopen_trigger_core(lua_State *L) {
    tr_newclass(L, SHAPE_MT, shape_methods, shape_close);
    lua_pop(L, 1);
    tr_newlib(L, functions);
    tr_register_http1(L);
    tr_register_json(L);
    tr_register_superjson(L);
    return 1;
}
