/* trigger.curl: Lua bindings of the libcurl hub. One userdata per hub and per request;
 * a request keeps its hub alive through its user value. */
#include <curl/curl.h>
#include <math.h>
#include <string.h>

#include "compat.h"
#include "lib/hub.h"

#define HUB_MT "trigger.hub"
#define REQUEST_MT "trigger.request"
#define MAX_HEADERS 64

typedef struct lhub {
    tr_hub *h;
} lhub;

typedef struct lrequest {
    tr_request *r;
} lrequest;

static lhub *check_hub(lua_State *L, int i) {
    lhub *u = tr_checkudata(L, i, HUB_MT);
    if (u->h == NULL) luaL_argerror(L, i, "hub is closed");
    return u;
}

static lrequest *check_request(lua_State *L) {
    lrequest *u = tr_checkudata(L, 1, REQUEST_MT);
    if (u->r == NULL) luaL_argerror(L, 1, "request is closed");
    return u;
}

static int hub_new(lua_State *L) {
    char err[256] = "";
    lhub *u = lua_newuserdata(L, sizeof *u);
    u->h = NULL;
    luaL_getmetatable(L, HUB_MT);
    lua_setmetatable(L, -2);
    u->h = tr_hub_new(err, sizeof err);
    if (u->h == NULL) return luaL_error(L, "cannot create the connection hub: %s", err);
    return 1;
}

static int hub_close(lua_State *L) {
    lhub *u = tr_checkudata(L, 1, HUB_MT);
    tr_hub_free(u->h);
    u->h = NULL;
    return 0;
}

static int hub_fd(lua_State *L) {
    lua_pushinteger(L, tr_hub_fd(check_hub(L, 1)->h));
    return 1;
}

/* hub:timeout() -> seconds until the hub needs a step regardless of I/O, or nil */
static int hub_timeout(lua_State *L) {
    long ms = tr_hub_timeout_ms(check_hub(L, 1)->h);
    if (ms < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, ms / 1000.0);
    return 1;
}

static int hub_active(lua_State *L) {
    lua_pushinteger(L, tr_hub_active(check_hub(L, 1)->h));
    return 1;
}

/* Seconds to wait -> milliseconds for tr_hub_step, clamped before the cast: negative, zero and
 * NaN do not wait at all; math.huge (anything past what epoll_wait takes) waits until something
 * happens. */
static long wait_ms(double wait) {
    if (!(wait > 0)) return 0;                  /* also NaN */
    if (wait >= 0x7fffffff / 1000.0) return -1; /* also +inf */
    return (long)ceil(wait * 1000.0);
}

/* hub:step([wait_s]) waits at most wait_s seconds (default 0; negative or NaN: not at all;
 * math.huge: until something happens) and performs I/O. */
static int hub_step(lua_State *L) {
    lhub *u = check_hub(L, 1);
    if (tr_hub_step(u->h, wait_ms(luaL_optnumber(L, 2, 0))) != 0)
        return luaL_error(L, "epoll_wait failed");
    return 0;
}

/* hub:counts() -> steps, idle steps (see tr_hub_counts) */
static int hub_counts(lua_State *L) {
    unsigned long steps, idle;
    tr_hub_counts(check_hub(L, 1)->h, &steps, &idle);
    lua_pushinteger(L, (lua_Integer)steps);
    lua_pushinteger(L, (lua_Integer)idle);
    return 2;
}

static const char *opt_string(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    const char *v = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "request option '%s' must be a string", k);
        size_t n;
        v = lua_tolstring(L, -1, &n);
        if (memchr(v, '\0', n) != NULL) luaL_error(L, "request option '%s' holds a NUL byte", k);
    }
    lua_pop(L, 1); /* the options table keeps it alive */
    return v;
}

static long opt_ms(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    double s = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (!(s >= 0) || s > 1e6) luaL_error(L, "request option '%s' out of range", k);
    return (long)(s * 1000.0);
}

/* A byte count (0 when absent); negative ones are refused rather than wrapped around. */
static size_t opt_size(lua_State *L, int t, const char *k) {
    lua_getfield(L, t, k);
    lua_Integer v = lua_isnil(L, -1) ? 0 : luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    if (v < 0) luaL_error(L, "request option '%s' out of range", k);
    return (size_t)v;
}

/* hub:request{ url=, method=, body=, headers = {"Name: value", ...}, timeout=, connect_timeout=,
 *              ca_file=, max_body=, pause_at=, idle_timeout=, fresh_connect= } -> request
 * Streaming (read the body while it comes with head() and take()): pause_at = bytes held
 * before the transfer pauses until taken; idle_timeout = seconds without a byte before it
 * fails. */
static int hub_request(lua_State *L) {
    lhub *hub = check_hub(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    tr_request_opts o;
    memset(&o, 0, sizeof o);
    const char *headers[MAX_HEADERS];
    o.url = opt_string(L, 2, "url");
    o.method = opt_string(L, 2, "method");
    lua_getfield(L, 2, "body");
    if (!lua_isnil(L, -1)) o.body = luaL_checklstring(L, -1, &o.body_len);
    lua_pop(L, 1);
    o.ca_file = opt_string(L, 2, "ca_file");
    o.timeout_ms = opt_ms(L, 2, "timeout");
    o.connect_timeout_ms = opt_ms(L, 2, "connect_timeout");
    o.max_body = opt_size(L, 2, "max_body");
    o.pause_at = opt_size(L, 2, "pause_at");
    o.idle_timeout_s = (opt_ms(L, 2, "idle_timeout") + 999) / 1000;
    lua_getfield(L, 2, "fresh_connect");
    o.fresh_connect = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 2, "headers");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        size_t n = tr_rawlen(L, -1);
        if (n > MAX_HEADERS) return luaL_error(L, "too many request headers");
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -1, (int)i + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "request headers must be strings");
            size_t len;
            headers[i] = lua_tolstring(L, -1, &len);
            if (memchr(headers[i], '\0', len) != NULL)
                return luaL_error(L, "request headers must not hold NUL bytes");
            lua_pop(L, 1);
        }
        o.headers = headers;
        o.n_headers = n;
    }
    if (o.url == NULL) return luaL_error(L, "request option 'url' is required");

    lrequest *u = lua_newuserdata(L, sizeof *u);
    u->r = NULL;
    luaL_getmetatable(L, REQUEST_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L); /* user value: keeps the hub alive while the request lives */
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    tr_setuservalue(L, -2);
    char err[256] = "";
    u->r = tr_request_start(hub->h, &o, err, sizeof err);
    if (u->r == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

static int request_close(lua_State *L) {
    lrequest *u = tr_checkudata(L, 1, REQUEST_MT);
    tr_request_free(u->r);
    u->r = NULL;
    return 0;
}

static int request_done(lua_State *L) {
    lua_pushboolean(L, tr_request_done(check_request(L)->r));
    return 1;
}

static void push_headers(lua_State *L, const tr_buf *b);

/* request:head() -> status, headers once the final response's header section is complete (the
 * body may still be coming); nil before */
static int request_head(lua_State *L) {
    lrequest *u = check_request(L);
    long status = 0;
    if (!tr_request_head(u->r, &status)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, status);
    push_headers(L, tr_request_headers(u->r));
    return 2;
}

/* request:take([max]) -> the body bytes received and not taken yet, at most max of them (a
 * string), or nil when none are waiting. Never blocks; a transfer paused at pause_at goes on
 * once no more than half of that is held. A reader that takes a few tens of KB at a time reads them
 * while they are in the cache, and makes no string of megabytes (fresh pages to fault in) when much
 * came at once. */
static int request_take(lua_State *L) {
    lrequest *u = check_request(L);
    lua_Integer max = luaL_optinteger(L, 2, 0);
    luaL_argcheck(L, max >= 0, 2, "a byte count");
    size_t n;
    const char *bytes = tr_request_body(u->r, &n);
    if (n == 0) {
        tr_request_took(u->r, 0); /* nothing held, but a pause may be pending */
        lua_pushnil(L);
        return 1;
    }
    if (max > 0 && (size_t)max < n) n = (size_t)max;
    lua_pushlstring(L, bytes, n); /* may raise: the bytes stay with the request */
    tr_request_took(u->r, n);
    return 1;
}

static void push_headers(lua_State *L, const tr_buf *b) {
    lua_newtable(L);
    size_t i = 0;
    while (i < b->len) {
        const char *name = b->data + i;
        size_t nlen = strlen(name);
        const char *value = name + nlen + 1;
        size_t vlen = strlen(value);
        lua_pushlstring(L, name, nlen);
        lua_pushlstring(L, value, vlen);
        lua_rawset(L, -3); /* a repeated header: the last one wins */
        i += nlen + vlen + 2;
    }
}

/* request:result() -> status, headers, body | nil, message, curl_code (nothing while running) */
static int request_result(lua_State *L) {
    lrequest *u = check_request(L);
    if (!tr_request_done(u->r)) return 0;
    long status = 0;
    const char *message = NULL;
    int code = tr_request_result(u->r, &status, &message);
    if (code != 0) {
        lua_pushnil(L);
        lua_pushstring(L, message);
        lua_pushinteger(L, code);
        return 3;
    }
    size_t n;
    const char *body = tr_request_body(u->r, &n);
    lua_pushinteger(L, status);
    push_headers(L, tr_request_headers(u->r));
    lua_pushlstring(L, body, n);
    return 3;
}

static const luaL_Reg hub_methods[] = {{"request", hub_request}, {"step", hub_step},
                                       {"fd", hub_fd},           {"timeout", hub_timeout},
                                       {"active", hub_active},   {"close", hub_close},
                                       {"counts", hub_counts},   {NULL, NULL}};

static const luaL_Reg request_methods[] = {{"done", request_done},   {"result", request_result},
                                           {"head", request_head},   {"take", request_take},
                                           {"close", request_close}, {NULL, NULL}};

static int version(lua_State *L) {
    lua_pushstring(L, curl_version());
    return 1;
}

static const luaL_Reg functions[] = {{"hub", hub_new}, {"version", version}, {NULL, NULL}};

TR_EXPORT int luaopen_trigger_curl(lua_State *L) {
    /* Reference-counted by libcurl; thread-safe since 7.84. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return luaL_error(L, "curl_global_init failed");
    tr_newclass(L, HUB_MT, hub_methods, hub_close);
    tr_newclass(L, REQUEST_MT, request_methods, request_close);
    lua_pop(L, 2);
    tr_newlib(L, functions);
    return 1;
}
