/* trigger.core.http1_parser: Lua bindings of the sans-I/O HTTP/1.1 response parser.
 * The OpenResty transport feeds it what a cosocket receives; it does no I/O itself. */
#include <stdint.h>
#include <stdio.h>

#include "compat.h"
#include "lcore.h"
#include "lib/http1.h"

#define H1_MT "trigger.http1"

typedef struct lh1 {
    tr_h1 *p;
} lh1;

static lh1 *check_h1(lua_State *L) {
    lh1 *u = tr_checkudata(L, 1, H1_MT);
    if (u->p == NULL) luaL_argerror(L, 1, "parser is closed");
    return u;
}

/* http1_parser([{max_body=, max_header_bytes=, max_headers=, head=}]) -> parser */
static int h1_new(lua_State *L) {
    tr_h1_limits lim = {0, 0, 0};
    int head = 0;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lim.max_body = tr_size_option(L, 1, "max_body");
        lim.max_header_bytes = tr_size_option(L, 1, "max_header_bytes");
        lim.max_headers = tr_size_option(L, 1, "max_headers");
        lua_getfield(L, 1, "head");
        head = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lh1 *u = lua_newuserdata(L, sizeof *u);
    u->p = NULL;
    luaL_getmetatable(L, H1_MT);
    lua_setmetatable(L, -2);
    u->p = tr_h1_new(&lim, head);
    if (u->p == NULL) return luaL_error(L, "out of memory");
    return 1;
}

/* __gc, __close and close(): safe to call more than once. */
static int h1_close(lua_State *L) {
    lh1 *u = tr_checkudata(L, 1, H1_MT);
    tr_h1_free(u->p);
    u->p = NULL;
    return 0;
}

/* nil, "message (at byte N)", "code" */
static int push_error(lua_State *L, const tr_h1 *p) {
    tr_h1_error e = tr_h1_error_of(p);
    char msg[160];
    snprintf(msg, sizeof msg, "%s (at byte %zu)", tr_h1_error_message(e), tr_h1_error_offset(p));
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_pushstring(L, tr_h1_error_name(e));
    return 3;
}

/* The answer of feed/finish: "more" | "done", unconsumed bytes | nil, message, code */
static int push_state(lua_State *L, const tr_h1 *p, size_t unconsumed) {
    switch (tr_h1_state_of(p)) {
    case TR_H1_MORE:
        lua_pushliteral(L, "more");
        return 1;
    case TR_H1_DONE:
        lua_pushliteral(L, "done");
        lua_pushinteger(L, (lua_Integer)unconsumed);
        return 2;
    default:
        return push_error(L, p);
    }
}

/* parser:feed(bytes) -> "more" | "done", n_unconsumed | nil, message, code */
static int h1_feed(lua_State *L) {
    lh1 *u = check_h1(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    size_t used = 0;
    tr_h1_feed(u->p, s, n, &used);
    return push_state(L, u->p, n - used);
}

/* parser:finish() -- the connection closed -> "done", 0 | nil, message, code */
static int h1_finish(lua_State *L) {
    lh1 *u = check_h1(L);
    tr_h1_finish(u->p);
    return push_state(L, u->p, 0);
}

/* parser:state() -> "more" | "done" | "error" */
static int h1_state(lua_State *L) {
    static const char *const names[] = {"more", "done", "error"};
    lh1 *u = check_h1(L);
    lua_pushstring(L, names[tr_h1_state_of(u->p)]);
    return 1;
}

/* parser:error() -> nil | code, message, byte offset */
static int h1_error(lua_State *L) {
    lh1 *u = check_h1(L);
    tr_h1_error e = tr_h1_error_of(u->p);
    if (e == TR_H1_OK) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, tr_h1_error_name(e));
    lua_pushstring(L, tr_h1_error_message(e));
    lua_pushinteger(L, (lua_Integer)tr_h1_error_offset(u->p));
    return 3;
}

/* parser:status() -> code, reason | nil (status line not parsed yet) */
static int h1_status(lua_State *L) {
    lh1 *u = check_h1(L);
    int status = tr_h1_status(u->p);
    if (status == 0) {
        lua_pushnil(L);
        return 1;
    }
    size_t n;
    const char *reason = tr_h1_reason(u->p, &n);
    lua_pushinteger(L, status);
    lua_pushlstring(L, reason ? reason : "", reason ? n : 0);
    return 2;
}

/* A table name -> value of the header (trailer = 0) or trailer (1) fields. A repeated field
 * keeps its last value, as the libcurl transport does. */
static int push_fields(lua_State *L, int want_trailer) {
    lh1 *u = check_h1(L);
    size_t count = tr_h1_field_count(u->p);
    lua_createtable(L, 0, count > 64 ? 64 : (int)count);
    for (size_t i = 0; i < count; i++) {
        const char *name, *value;
        size_t nn, vn;
        int trailer;
        tr_h1_field(u->p, i, &name, &nn, &value, &vn, &trailer);
        if (trailer != want_trailer) continue;
        lua_pushlstring(L, name, nn);
        lua_pushlstring(L, value, vn);
        lua_rawset(L, -3);
    }
    return 1;
}

static int h1_headers(lua_State *L) { return push_fields(L, 0); }

static int h1_trailers(lua_State *L) { return push_fields(L, 1); }

/* parser:headers_complete() -> boolean */
static int h1_headers_complete(lua_State *L) {
    lua_pushboolean(L, tr_h1_headers_complete(check_h1(L)->p));
    return 1;
}

/* parser:body() -> the (de-chunked) body received so far */
static int h1_body(lua_State *L) {
    lh1 *u = check_h1(L);
    size_t n;
    const char *b = tr_h1_body(u->p, &n);
    lua_pushlstring(L, b, n);
    return 1;
}

/* parser:keepalive() -> whether the connection may carry another request */
static int h1_keepalive(lua_State *L) {
    lua_pushboolean(L, tr_h1_keepalive(check_h1(L)->p));
    return 1;
}

static int h1_tostring(lua_State *L) {
    lh1 *u = tr_checkudata(L, 1, H1_MT);
    if (u->p == NULL)
        lua_pushliteral(L, "trigger.http1 (closed)");
    else
        lua_pushfstring(L, "trigger.http1 (%p)", (void *)u);
    return 1;
}

static const luaL_Reg h1_methods[] = {
    {"feed", h1_feed},         {"finish", h1_finish},
    {"state", h1_state},       {"error", h1_error},
    {"status", h1_status},     {"headers", h1_headers},
    {"trailers", h1_trailers}, {"headers_complete", h1_headers_complete},
    {"body", h1_body},         {"keepalive", h1_keepalive},
    {"close", h1_close},       {NULL, NULL}};

/* Adds http1_parser to the module table on top of the stack. */
void tr_open_http1(lua_State *L) {
    tr_newclass(L, H1_MT, h1_methods, h1_close);
    lua_pushcfunction(L, h1_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, h1_new);
    lua_setfield(L, -2, "http1_parser");
}
