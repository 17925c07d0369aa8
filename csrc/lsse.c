/* trigger.core.sse_parser: Lua bindings of the sans-I/O Server-Sent Events parser and of the
 * S2 batch payload (csrc/lib/sse.c). The stream reader (lua/trigger/streams.lua) feeds it what a
 * transport received; it does no I/O itself. */
#include <stdint.h>
#include <stdio.h>

#include "compat.h"
#include "lcore.h"
#include "lib/sse.h"

#define SSE_MT "trigger.sse"

typedef struct lsse {
    tr_sse *p;
    tr_s2_batch batch; /* reused by parser:batch(); owned here so a Lua error leaks nothing */
} lsse;

static lsse *check_sse(lua_State *L) {
    lsse *u = tr_checkudata(L, 1, SSE_MT);
    if (u->p == NULL) luaL_argerror(L, 1, "parser is closed");
    return u;
}

/* sse_parser([{max_line=, max_event=, comments=}]) -> parser */
static int sse_new(lua_State *L) {
    tr_sse_limits lim = {0, 0, 0};
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lim.max_line = tr_size_option(L, 1, "max_line");
        lim.max_event = tr_size_option(L, 1, "max_event");
        lua_getfield(L, 1, "comments");
        lim.comments = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lsse *u = lua_newuserdata(L, sizeof *u);
    u->p = NULL;
    tr_s2_batch_init(&u->batch);
    luaL_getmetatable(L, SSE_MT);
    lua_setmetatable(L, -2);
    u->p = tr_sse_new(&lim);
    if (u->p == NULL) return luaL_error(L, "out of memory");
    return 1;
}

/* __gc, __close and close(): safe to call more than once. */
static int sse_close(lua_State *L) {
    lsse *u = tr_checkudata(L, 1, SSE_MT);
    tr_sse_free(u->p);
    u->p = NULL;
    tr_s2_batch_free(&u->batch);
    return 0;
}

/* The event just completed, as a table: {type=, data=, id=} or {comment=}. */
static void push_event(lua_State *L, const tr_sse *p) {
    const tr_sse_ev *e = tr_sse_event(p);
    if (e->kind == TR_SSE_KIND_COMMENT) {
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, e->data, e->data_len);
        lua_setfield(L, -2, "comment");
        return;
    }
    lua_createtable(L, 0, 3);
    lua_pushlstring(L, e->type, e->type_len);
    lua_setfield(L, -2, "type");
    lua_pushlstring(L, e->data, e->data_len);
    lua_setfield(L, -2, "data");
    if (e->has_id) {
        lua_pushlstring(L, e->id, e->id_len);
        lua_setfield(L, -2, "id");
    }
}

/* parser:feed(bytes) -> events (a list, maybe empty)
 *                     | nil, message, code, events (the ones complete before the error) */
static int sse_feed(lua_State *L) {
    lsse *u = check_sse(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    lua_newtable(L);
    int count = 0;
    while (1) {
        size_t used = 0;
        tr_sse_state st = tr_sse_feed(u->p, s, n, &used);
        s += used;
        n -= used;
        if (st == TR_SSE_EVENT) {
            push_event(L, u->p);
            lua_rawseti(L, -2, ++count);
        } else if (st == TR_SSE_ERROR) {
            tr_sse_error e = tr_sse_error_of(u->p);
            char msg[160];
            snprintf(msg, sizeof msg, "%s (at byte %zu)", tr_sse_error_message(e),
                     tr_sse_error_offset(u->p));
            lua_pushnil(L);
            lua_pushstring(L, msg);
            lua_pushstring(L, tr_sse_error_name(e));
            lua_pushvalue(L, -4);
            return 4;
        } else {
            return 1;
        }
    }
}

/* parser:finish() -> bytes of an unfinished event dropped (0: the stream ended cleanly) */
static int sse_finish(lua_State *L) {
    lsse *u = check_sse(L);
    lua_pushinteger(L, (lua_Integer)tr_sse_finish(u->p));
    return 1;
}

/* parser:retry() -> the last `retry` in milliseconds, or nil */
static int sse_retry(lua_State *L) {
    int64_t r = tr_sse_retry(check_sse(L)->p);
    if (r < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, (lua_Integer)r);
    return 1;
}

/* parser:last_id() -> the last event id, or nil when none came (or an id field emptied it) */
static int sse_last_id(lua_State *L) {
    lsse *u = check_sse(L);
    size_t n;
    const char *id = tr_sse_last_id(u->p, &n);
    if (n == 0)
        lua_pushnil(L);
    else
        lua_pushlstring(L, id, n);
    return 1;
}

static const char *const KINDS[] = {"data", "command", "control"};

/* parser:batch(text) -> {records = {{seq_num=, timestamp=, kind=, body=}, ...},
 *                        tail = {seq_num=, timestamp=} | nil, timestamp= | nil}
 *                     | nil, message
 * The data of an S2 `batch` (or `ping`) event. timestamp fields are nil when absent; body is ""
 * when absent; kind is "data", "command" (S2 trim/fence) or "control" (trigger-control). */
static int sse_batch(lua_State *L) {
    lsse *u = check_sse(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    char err[160];
    if (tr_s2_batch_parse(&u->batch, s, n, err, sizeof err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    const tr_s2_batch *b = &u->batch;
    lua_createtable(L, 0, 3);
    lua_createtable(L, b->n > 0x7fffffff ? 0x7fffffff : (int)b->n, 0);
    for (size_t i = 0; i < b->n; i++) {
        const tr_s2_record *r = &b->records[i];
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, (lua_Integer)r->seq_num);
        lua_setfield(L, -2, "seq_num");
        if (r->timestamp >= 0) {
            lua_pushinteger(L, (lua_Integer)r->timestamp);
            lua_setfield(L, -2, "timestamp");
        }
        lua_pushstring(L, KINDS[r->kind]);
        lua_setfield(L, -2, "kind");
        lua_pushlstring(L, r->body_len ? b->bodies.data + r->body : "", r->body_len);
        lua_setfield(L, -2, "body");
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "records");
    if (b->has_tail) {
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, (lua_Integer)b->tail_seq_num);
        lua_setfield(L, -2, "seq_num");
        if (b->tail_timestamp >= 0) {
            lua_pushinteger(L, (lua_Integer)b->tail_timestamp);
            lua_setfield(L, -2, "timestamp");
        }
        lua_setfield(L, -2, "tail");
    }
    if (b->timestamp >= 0) {
        lua_pushinteger(L, (lua_Integer)b->timestamp);
        lua_setfield(L, -2, "timestamp");
    }
    return 1;
}

static int sse_tostring(lua_State *L) {
    lsse *u = tr_checkudata(L, 1, SSE_MT);
    if (u->p == NULL)
        lua_pushliteral(L, "trigger.sse (closed)");
    else
        lua_pushfstring(L, "trigger.sse (%p)", (void *)u);
    return 1;
}

static const luaL_Reg sse_methods[] = {
    {"feed", sse_feed},   {"finish", sse_finish}, {"retry", sse_retry}, {"last_id", sse_last_id},
    {"batch", sse_batch}, {"close", sse_close},   {NULL, NULL}};

/* Adds sse_parser to the module table on top of the stack. */
void tr_open_sse(lua_State *L) {
    tr_newclass(L, SSE_MT, sse_methods, sse_close);
    lua_pushcfunction(L, sse_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, sse_new);
    lua_setfield(L, -2, "sse_parser");
}
