/* trigger.core.run_fields: the plain fields of the public run object from a stored row: the
 * binding of csrc/lib/runfields.c (the columns, the status mapping and helpers), with
 * csrc/lib/pgtext.c and csrc/lib/json.c doing the parsing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "lcore.h"
#include "lib/json.h"
#include "lib/pgtext.h"
#include "lib/rowblob.h"
#include "lib/runfields.h"
#include "lvalue.h"

/* The names run_fields reads and writes (runfields.h) are made once as the upvalues of the
 * function: a field is read and set with lua_rawget/lua_rawset of a string already made, not by
 * a C string that lua_getfield/lua_setfield turn into a Lua string (hash and look-up) each
 * time. */
#define NAME_ENUM(id, text, kind) id = TR_RUN_##id,
enum { TR_RUN_NAMES(NAME_ENUM) N_NAMES = TR_RUN_N_NAMES, N_COLUMNS = TR_RUN_N_COLUMNS };

/* The upvalue holding name k. */
#define NAME(k) lua_upvalueindex((k) + 1)

typedef struct run_builder {
    lua_State *L;
    /* A row blob (rowblob.h): its members by column, tag 0 for a column it does not have;
     * NULL: the row is the table at `row`. */
    const tr_rowblob_member *cols;
    int row, null_index, run, problems; /* stack indices; problems holds nil until the first */
    int array_mt;                       /* stack index of the arrays' metatable, 0: none */
    tr_ljson_intern *intern;            /* the short-string cache (lvalue.c), its table at: */
    int intern_index;
} run_builder;

/* Note a problem with column `col` (its message is on top of the stack: popped). The list
 * lives in a stack slot reserved for it, made on the first problem only. */
static void problem(run_builder *rb, int col) {
    lua_State *L = rb->L;
    if (lua_isnil(L, rb->problems)) {
        lua_newtable(L);
        lua_replace(L, rb->problems);
    }
    lua_pushfstring(L, "%s %s", tr_run_name(col), lua_tostring(L, -1));
    lua_rawseti(L, rb->problems, (int)tr_rawlen(L, rb->problems) + 1);
    lua_pop(L, 1);
}

/* column() of a row blob. */
static const char *blob_column(run_builder *rb, int col, size_t *len) {
    const tr_rowblob_member *m = &rb->cols[col];
    if (m->tag == 's') {
        *len = m->len;
        if (memchr(m->s, '\0', m->len) == NULL) return m->s; /* (a NUL follows the bytes) */
        lua_pushliteral(rb->L, "holds a NUL byte");
        problem(rb, col);
    } else if (m->tag != 0 && m->tag != 'n') {
        lua_pushliteral(rb->L, "is not a text value");
        problem(rb, col);
    }
    return NULL;
}

/* The text of column `col` of the row, or NULL when NULL/absent or not a string or holding a
 * NUL byte (then a problem is noted). Nothing stays on the stack: the row (argument 1) keeps
 * the string alive, so the text stays valid for the whole call. The text has no NUL inside,
 * so C string functions see all of it. */
static const char *column(run_builder *rb, int col, size_t *len) {
    lua_State *L = rb->L;
    if (rb->cols) return blob_column(rb, col, len);
    lua_pushvalue(L, NAME(col));
    lua_rawget(L, rb->row);
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *v = lua_tolstring(L, -1, len);
        lua_pop(L, 1);
        if (memchr(v, '\0', *len) == NULL) return v; /* the C string is the whole value */
        /* Postgres text never holds a NUL byte ("12\0junk" is not 12): refused like any
         * other malformed value. */
        lua_pushliteral(L, "holds a NUL byte");
        problem(rb, col);
        return NULL;
    }
    int missing = lua_isnil(L, -1) || lua_rawequal(L, -1, rb->null_index);
    lua_pop(L, 1);
    if (!missing) {
        lua_pushliteral(L, "is not a text value");
        problem(rb, col);
    }
    return NULL;
}

/* A field of the run is made in three steps, its name pushed first, so that no value is moved
 * under its name afterwards: field_name, then its value pushed, then field_set (or, when there
 * is no value, field_none). */
static void field_name(run_builder *rb, int field) { lua_pushvalue(rb->L, NAME(field)); }
static void field_set(run_builder *rb) { lua_rawset(rb->L, rb->run); }
static void field_none(run_builder *rb) { lua_pop(rb->L, 1); }

static void timestamp_field(run_builder *rb, int col, int field) {
    size_t n;
    const char *v = column(rb, col, &n);
    if (v == NULL) return;
    char out[TR_PG_ISO_LEN + 1];
    field_name(rb, field);
    if (tr_pg_timestamp_iso(v, n, out) == 0) {
        /* (most rows share some of their dates: createdAt, updatedAt and queuedAt are often
         * one instant; the cache makes those one string) */
        tr_ljson_push_cached(rb->L, rb->intern, rb->intern_index, out, TR_PG_ISO_LEN, 0);
    } else {
        lua_pushfstring(rb->L, "is not a timestamp: %s", v);
        problem(rb, col);
        lua_pushlstring(rb->L, v, n); /* the server's text is passed on as it is */
    }
    field_set(rb);
}

/* A numeral as Lua reads it (integer or float subtype), or NaN/Infinity; 0 when it is none. */
static int push_numeral(lua_State *L, const char *v, size_t n) {
    double d;
    /* "3625", "-7": at most 18 digits cannot overflow, read as Lua reads them */
    size_t i = v[0] == '-';
    if (n > i && n - i <= 18) {
        int64_t k = 0;
        size_t j = i;
        while (j < n && v[j] >= '0' && v[j] <= '9')
            k = k * 10 + (v[j++] - '0');
        if (j == n && !(i && k == 0)) { /* ("-0": the float -0 where there are no integers) */
#if LUA_VERSION_NUM >= 503
            lua_pushinteger(L, (lua_Integer)(i ? -k : k));
#else
            lua_pushnumber(L, (lua_Number)(i ? -k : k));
#endif
            return 1;
        }
    }
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

static void number_field(run_builder *rb, int col, int field, int zero) {
    lua_State *L = rb->L;
    size_t n;
    const char *v = column(rb, col, &n);
    field_name(rb, field);
    if (v != NULL) {
        if (push_numeral(L, v, n)) {
            field_set(rb);
            return;
        }
        lua_pushfstring(L, "is not a number: %s", v);
        problem(rb, col);
    }
    if (zero) {
        lua_pushinteger(L, 0);
        field_set(rb);
    } else {
        field_none(rb);
    }
}

/* An empty array with the arrays' metatable, room for n elements. */
static void new_array(run_builder *rb, int n) {
    lua_createtable(rb->L, n, 0);
    if (rb->array_mt != 0) {
        lua_pushvalue(rb->L, rb->array_mt);
        lua_setmetatable(rb->L, -2);
    }
}

/* The common array literal, "{}" or "{a,b,c}" with elements of nothing but plain bytes (no
 * quote, backslash, brace, white space or control byte, not NULL): pushed as tr_push_pg_array
 * would push it, without its parser; 0 (nothing pushed) for any other text. */
static int plain_array(run_builder *rb, const char *v, size_t n) {
    if (n < 2 || v[0] != '{' || v[n - 1] != '}') return 0;
    int count = 0;
    size_t start = 1;
    for (size_t i = 1; i < n - 1; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == ',') {
            if (i == start) return 0; /* an empty element */
            count++;
            start = i + 1;
        } else if (c <= ' ' || c == '"' || c == '\\' || c == '{' || c == '}') {
            return 0;
        }
    }
    if (n > 2) {
        if (start == n - 1) return 0; /* a trailing comma */
        count++;
    }
    if (count > 64) return 0; /* (the parser's way for long lists: no counting twice) */
    new_array(rb, count);
    start = 1;
    for (int k = 1; k <= count; k++) {
        size_t end = start;
        while (v[end] != ',' && v[end] != '}')
            end++;
        if (end - start == 4 && memcmp(v + start, "NULL", 4) == 0) {
            lua_pop(rb->L, 1); /* the null value: the parser's business */
            return 0;
        }
        tr_ljson_push_cached(rb->L, rb->intern, rb->intern_index, v + start, end - start, 0);
        lua_rawseti(rb->L, -2, k);
        start = end + 1;
    }
    return 1;
}

static void array_field(run_builder *rb, int col, int field) {
    lua_State *L = rb->L;
    size_t n, at = 0;
    const char *v = column(rb, col, &n);
    field_name(rb, field);
    if (v != NULL && plain_array(rb, v, n)) {
        field_set(rb);
        return;
    }
    int rc = v == NULL ? 1 : tr_push_pg_array(L, v, n, rb->null_index, rb->array_mt, &at);
    if (v != NULL && rc != 0) {
        tr_pg_array_problem(L, rc, at);
        problem(rb, col);
    }
    if (rc != 0) new_array(rb, 0);
    field_set(rb);
}

static void text_field(run_builder *rb, int col, int field) {
    if (rb->cols) {
        size_t n;
        const char *v = blob_column(rb, col, &n);
        if (v == NULL) return;
        field_name(rb, field);
        tr_ljson_push_cached(rb->L, rb->intern, rb->intern_index, v, n, 0);
        field_set(rb);
        return;
    }
    field_name(rb, field);
    lua_pushvalue(rb->L, NAME(col));
    lua_rawget(rb->L, rb->row);
    size_t n;
    const char *v = lua_type(rb->L, -1) == LUA_TSTRING ? lua_tolstring(rb->L, -1, &n) : NULL;
    if (v != NULL && memchr(v, '\0', n) == NULL) {
        field_set(rb);
        return;
    }
    lua_pop(rb->L, 2);
    column(rb, col, &n); /* what is wrong with it, if anything */
}

static void flag(run_builder *rb, int field, int value) {
    field_name(rb, field);
    lua_pushboolean(rb->L, value);
    field_set(rb);
}

/* The members of the blob at index 1 by column (the last of a name counts). */
static void index_blob(lua_State *L, tr_rowblob_member *cols) {
    size_t n, pos = 0;
    const char *s = lua_tolstring(L, 1, &n);
    for (int k = 0; k < N_COLUMNS; k++)
        cols[k].tag = 0;
    tr_rowblob_member m;
    int rc;
    while ((rc = tr_rowblob_next(s, n, &pos, &m)) == 1) {
        int k = tr_run_column_of(m.name, m.name_len);
        if (k < N_COLUMNS) cols[k] = m;
    }
    if (rc < 0) luaL_argerror(L, 1, "not a stored row");
}

/* The packet columns and error, returned as they are for Lua to decode. */
static void push_raw(run_builder *rb, int col) {
    lua_State *L = rb->L;
    if (!rb->cols) {
        lua_pushvalue(L, NAME(col));
        lua_rawget(L, rb->row);
        return;
    }
    tr_push_rowblob_member(L, &rb->cols[col], rb->null_index, rb->intern, rb->intern_index);
}

/* run_fields(row, null [, array_mt]) -> run, problems, error, payload, payloadType, output,
 *                                        outputType, metadata, metadataType
 * The plain fields of the public run object from a stored row, a table of columns or a row blob
 * (rowblob.h): renames, status and its helpers, timestamps, numbers, arrays. problems is nil,
 * or a list of "column what is wrong" messages. The error and packet columns follow as they
 * are stored (Lua decodes them). One call per run: this is the hot path of an initial sync. */
static int run_fields(lua_State *L) {
    tr_rowblob_member cols[N_COLUMNS];
    int blob = lua_type(L, 1) == LUA_TSTRING;
    if (!blob) luaL_checktype(L, 1, LUA_TTABLE);
    int marked = !lua_isnoneornil(L, 3);
    if (marked) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3); /* 3: the metatable of tags and realtimeStreams (nil: none) */
    if (blob) index_blob(L, cols);
    lua_createtable(L, 0, 32); /* 4: the run */
    lua_pushnil(L);            /* 5: the problems, if any */
    tr_ljson_intern *intern = tr_ljson_intern_upvalue(L, N_NAMES + 1);
    run_builder rb = {L,      blob ? cols : NULL,           1, 2, 4, 5, marked ? 3 : 0,
                      intern, lua_upvalueindex(N_NAMES + 1)};
    text_field(&rb, C_FRIENDLY_ID, F_ID);
    text_field(&rb, C_TASK, C_TASK);
    size_t n;
    const char *status = tr_run_public_status(column(&rb, C_STATUS, &n));
    field_name(&rb, C_STATUS);
    lua_pushstring(L, status);
    field_set(&rb);
    timestamp_field(&rb, C_CREATED_AT, C_CREATED_AT);
    timestamp_field(&rb, C_UPDATED_AT, C_UPDATED_AT);
    timestamp_field(&rb, C_STARTED_AT, C_STARTED_AT);
    timestamp_field(&rb, C_QUEUED_AT, C_QUEUED_AT);
    timestamp_field(&rb, C_EXPIRED_AT, C_EXPIRED_AT);
    timestamp_field(&rb, C_COMPLETED_AT, F_FINISHED_AT);
    timestamp_field(&rb, C_DELAY_UNTIL, F_DELAYED_UNTIL);
    number_field(&rb, C_NUMBER, C_NUMBER, 0);
    number_field(&rb, C_USAGE, F_DURATION, 1);
    number_field(&rb, C_COST, C_COST, 1);
    number_field(&rb, C_BASE_COST, C_BASE_COST, 1);
    array_field(&rb, C_RUN_TAGS, F_TAGS);
    array_field(&rb, C_STREAMS, C_STREAMS);
    const char *t = column(&rb, C_IS_TEST, &n);
    int is_test = tr_pg_bool(t);
    if (t != NULL && is_test < 0) {
        lua_pushfstring(L, "is not a boolean: %s", t);
        problem(&rb, C_IS_TEST);
    }
    flag(&rb, C_IS_TEST, is_test == 1);
    text_field(&rb, C_TTL, C_TTL);
    text_field(&rb, C_IDEMPOTENCY, C_IDEMPOTENCY);
    unsigned says = tr_run_status_flags(status);
    flag(&rb, F_IS_QUEUED, (says & TR_RUN_QUEUED) != 0);
    flag(&rb, F_IS_EXECUTING, (says & TR_RUN_EXECUTING) != 0);
    flag(&rb, F_IS_WAITING, (says & TR_RUN_WAITING) != 0);
    flag(&rb, F_IS_SUCCESS, (says & TR_RUN_SUCCESS) != 0);
    flag(&rb, F_IS_FAILED, (says & TR_RUN_FAILED) != 0);
    flag(&rb, F_IS_COMPLETED, (says & TR_RUN_COMPLETED) != 0);
    flag(&rb, F_IS_CANCELLED, (says & TR_RUN_CANCELLED) != 0);
    lua_settop(L, rb.problems); /* the run, then the problems (nil when none) */
    for (int col = C_ERROR; col <= C_METADATA_TYPE; col++)
        push_raw(&rb, col);
    return 2 + (C_METADATA_TYPE - C_ERROR + 1);
}
void tr_open_runfields(lua_State *L) {
    luaL_checkstack(L, N_NAMES + 2, "run_fields names");
    for (int k = 0; k < N_NAMES; k++)
        lua_pushstring(L, tr_run_name(k));
    tr_ljson_push_intern_upvalues(L); /* upvalues N_NAMES + 1, N_NAMES + 2 */
    lua_pushcclosure(L, run_fields, N_NAMES + 2);
    lua_setfield(L, -2, "run_fields");
    /* run_columns: column name -> kind ("text", "timestamp", "number", "array", "boolean",
     * "json", "packet"), with the row's own id, which the run object does not show */
    lua_createtable(L, 0, N_COLUMNS + 1);
    for (int k = 0; k < N_COLUMNS; k++) {
        lua_pushstring(L, tr_run_column_kind(k));
        lua_setfield(L, -2, tr_run_name(k));
    }
    lua_pushliteral(L, "text");
    lua_setfield(L, -2, "id");
    lua_setfield(L, -2, "run_columns");
}
