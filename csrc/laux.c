/* The auxiliary functions every binding may use (as lauxlib serves Lua's libraries): scratch
 * boxes, and tr_size_option for the parsers' size options.
 *
 * Scratch boxes: the one rule for C temporaries under a Lua error (lcore.h).
 *
 * Any Lua API call that allocates (lua_push*, lua_*table, lua_set*, ...) may raise a memory
 * error, which longjmps past every C frame up to the nearest pcall: heap memory a C local holds
 * at that moment is lost. So a binding that holds heap memory across such a call keeps it in a
 * scratch box, a userdata whose __gc (and __close) frees the buffer in it, as Lua 5.4's lauxlib
 * keeps a luaL_Buffer's memory in a box. The plain-C parsers take the caller's buffer
 * (tr_json_parse_with, tr_pg_array_parse_with) for this.
 *
 * One box per Lua state is kept in the registry between calls, so most calls allocate nothing.
 * tr_scratch_take takes it out (the registry then holds false): a call made meanwhile (from a
 * finalizer, say) gets a box of its own, and a box whose call a Lua error unwound is left to the
 * collector; tr_scratch_give puts the box back. The functions called once per packet or run keep
 * theirs in an upvalue instead (tr_scratch_take_from, tr_scratch_give_to): the same rule
 * without a registry look-up and store on every call. */
#include <stdint.h>

#include "compat.h"
#include "lcore.h"

#define SCRATCH_MT "trigger.scratch"
#define SCRATCH_KEEP 65536 /* a buffer grown past this is freed rather than kept */

static const char cache_key = 0; /* its address is the registry key */

typedef struct scratch {
    tr_buf buf; /* first: a tr_buf * is a scratch * */
} scratch;

static int scratch_gc(lua_State *L) {
    scratch *s = tr_checkudata(L, 1, SCRATCH_MT);
    tr_buf_free(&s->buf);
    return 0;
}

static void metatable(lua_State *L) {
    if (tr_newmetatable(L, SCRATCH_MT)) {
        lua_pushcfunction(L, scratch_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, scratch_gc);
        lua_setfield(L, -2, "__close");
    }
}

void tr_open_scratch(lua_State *L) {
    metatable(L);
    lua_pop(L, 1);
    /* The registry key made now, so that giving a box back later never allocates. */
    tr_scratch_take(L);
    tr_scratch_give(L, -1);
    lua_pop(L, 1);
}

/* A new box on top, its buffer empty. */
static tr_buf *new_box(lua_State *L) {
    scratch *s = lua_newuserdata(L, sizeof *s);
    tr_buf_init(&s->buf);
    metatable(L);
    lua_setmetatable(L, -2);
    return &s->buf;
}

tr_buf *tr_scratch_take(lua_State *L) {
    lua_pushlightuserdata(L, (void *)&cache_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    scratch *s = lua_touserdata(L, -1);
    if (s != NULL) {
        lua_pushlightuserdata(L, (void *)&cache_key);
        lua_pushboolean(L, 0); /* the key is there already: no allocation */
        lua_rawset(L, LUA_REGISTRYINDEX);
        tr_buf_reset(&s->buf);
        return &s->buf;
    }
    lua_pop(L, 1);
    return new_box(L);
}

/* (a buffer grown past SCRATCH_KEEP is not kept) */
static void empty(scratch *s) {
    if (s->buf.cap > SCRATCH_KEEP) tr_buf_free(&s->buf);
    tr_buf_reset(&s->buf);
}

void tr_scratch_give(lua_State *L, int box) {
    box = tr_absindex(L, box);
    empty(lua_touserdata(L, box));
    lua_pushlightuserdata(L, (void *)&cache_key);
    lua_pushvalue(L, box);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

tr_buf *tr_scratch_take_from(lua_State *L, int home) {
    scratch *s = lua_touserdata(L, home);
    if (s == NULL) return new_box(L);
    lua_pushvalue(L, home);
    lua_pushboolean(L, 0); /* (replacing an upvalue allocates nothing) */
    lua_replace(L, home);
    tr_buf_reset(&s->buf);
    return &s->buf;
}

void tr_scratch_give_to(lua_State *L, int box, int home) {
    box = tr_absindex(L, box);
    empty(lua_touserdata(L, box));
    lua_pushvalue(L, box);
    lua_replace(L, home);
}

int tr_scratch_push(lua_State *L, int rc, const char *what) {
    int box = lua_gettop(L);
    tr_buf *b = lua_touserdata(L, box);
    if (rc == 0)
        lua_pushlstring(L, b->data ? b->data : "", b->len);
    else
        lua_pushnil(L);
    if (rc != 0) lua_pushstring(L, what);
    tr_scratch_give(L, box);
    return rc == 0 ? 1 : 2;
}

/* tr_size_option (lcore.h): the size options of the parser bindings. */
size_t tr_size_option(lua_State *L, int t, const char *name) {
    lua_getfield(L, t, name);
    size_t v = 0;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pushfstring(L, "option '%s' must be a number", name);
            luaL_argerror(L, 1, lua_tostring(L, -1));
        }
        lua_Number n = lua_tonumber(L, -1);
        if (!(n >= 1)) { /* also refuses NaN */
            lua_pushfstring(L, "option '%s' must be at least 1", name);
            luaL_argerror(L, 1, lua_tostring(L, -1));
        }
        v = n >= (lua_Number)SIZE_MAX ? SIZE_MAX : (size_t)n;
    }
    lua_pop(L, 1);
    return v;
}
