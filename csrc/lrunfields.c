/* trigger.core.run_fields: the plain fields of the public run object from a stored row
 * (statuses, timestamps, numbers, arrays; csrc/pgtext.c and csrc/json.c do the parsing). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "json.h"
#include "lcore.h"
#include "pgtext.h"

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
    int array_mt;                       /* stack index of the arrays' metatable, 0: none */
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
 * or not a string or holding a NUL byte (then a problem is noted). The text returned has no
 * NUL inside, so C string functions see all of it. */
static const char *column(run_builder *rb, const char *name, size_t *len) {
    lua_State *L = rb->L;
    lua_getfield(L, rb->row, name);
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *v = lua_tolstring(L, -1, len);
        if (memchr(v, '\0', *len) == NULL) return v; /* the C string is the whole value */
        /* Postgres text never holds a NUL byte ("12\0junk" is not 12): refused like any
         * other malformed value. */
        lua_pop(L, 1);
        lua_pushliteral(L, "holds a NUL byte");
        problem(rb, name);
        return NULL;
    }
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
    int rc = v == NULL ? 1 : tr_push_pg_array(L, v, n, rb->null_index, rb->array_mt, &at);
    if (v != NULL) lua_remove(L, rc == 0 ? -2 : -1); /* the column's text */
    if (v != NULL && rc != 0) {
        tr_pg_array_problem(L, rc, at);
        problem(rb, col);
    }
    if (rc != 0) {
        lua_newtable(L);
        if (rb->array_mt != 0) {
            lua_pushvalue(L, rb->array_mt);
            lua_setmetatable(L, -2);
        }
    }
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

/* run_fields(row, null [, array_mt]) -> run, problems
 * The plain fields of the public run object from a stored row (everything but error and the
 * packets, which stay in Lua): renames, status and its helpers, timestamps, numbers, arrays.
 * problems is nil, or a list of "column what is wrong" messages. One call per run: this is the
 * hot path of an initial sync. */
static int run_fields(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int marked = !lua_isnoneornil(L, 3);
    if (marked) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);          /* 3: the metatable of tags and realtimeStreams (nil: none) */
    lua_createtable(L, 0, 32); /* 4: the run */
    lua_pushnil(L);            /* 5: the problems, if any */
    run_builder rb = {L, 1, 2, 4, 5, marked ? 3 : 0};
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
void tr_open_runfields(lua_State *L) {
    lua_pushcfunction(L, run_fields);
    lua_setfield(L, -2, "run_fields");
}
