/* core.superjson_leaves: the common shape of a super+json annotation tree, applied in C.
 *
 * Most packets annotate fields of the top-level object with one plain annotation each:
 * {"createdAt": ["Date"], "id": ["bigint"]}. Walking that in Lua cost as much as decoding the
 * whole packet, once per run handed out. This takes exactly that shape and nothing else; for
 * anything else (paths with dots, nested trees, maps, custom classes, a field that is not
 * there) it changes nothing and says so, and lua/trigger/superjson.lua does the general walk
 * with the same meaning. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "compat.h"
#include "lcore.h"

/* More entries than this go the general way, which counts them against its own budget. */
#define LEAVES_MAX 1000

/* Is the entry on top of the stack (key at -2, annotation at -1) a leaf on a field of the
 * object at index `value`? On success *annotation is its name. */
static int is_leaf(lua_State *L, int value, const char **annotation) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE) return 0;
    size_t kn, an = 0;
    const char *key = lua_tolstring(L, -2, &kn);
    /* (a NUL byte would hide the rest of the key or annotation from the C string functions:
     * such entries go the general way, which compares whole Lua strings) */
    if (memchr(key, '\0', kn) || strchr(key, '.') != NULL || strchr(key, '\\') != NULL) return 0;
    lua_rawgeti(L, -1, 2);
    int single = lua_isnil(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, -1, 1);
    int named = lua_type(L, -1) == LUA_TSTRING;
    *annotation = named ? lua_tolstring(L, -1, &an) : NULL;
    lua_pop(L, 1); /* the string stays alive in the annotation table */
    if (!single || !named || memchr(*annotation, '\0', an) || strcmp(*annotation, "map") == 0)
        return 0;
    lua_pushvalue(L, -2);
    lua_rawget(L, value);
    int present = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return present;
}

/* A bigint's decimal text as an integer when it fits in 64 bits and is written the way Lua
 * would print it (no sign but '-', no leading zero, not "-0"); else the text stays. */
static void push_bigint(lua_State *L, int at) {
#if LUA_VERSION_NUM >= 503
    size_t n;
    const char *s = lua_tolstring(L, at, &n);
    size_t i = s[0] == '-';
    int canonical = n > i && n - i <= 19 && (s[i] != '0' || (n - i == 1 && i == 0));
    uint64_t v = 0;
    for (size_t k = i; canonical && k < n; k++) {
        if (s[k] < '0' || s[k] > '9') canonical = 0;
        v = v * 10 + (uint64_t)(s[k] - '0'); /* 19 digits cannot wrap a uint64 */
    }
    if (canonical && (i ? v <= (uint64_t)INT64_MAX + 1 : v <= (uint64_t)INT64_MAX)) {
        lua_pushinteger(L, i ? (lua_Integer)(0 - v) : (lua_Integer)v);
        return;
    }
#endif
    lua_pushvalue(L, at); /* no integers (LuaJIT), or not one that fits */
}

/* The numbers JSON cannot write, as superjson writes them: pushes one and returns 1, or 0. */
static int push_special_number(lua_State *L, const char *text, size_t n) {
    static const struct {
        const char *text;
        double value;
    } specials[] = {{"NaN", NAN}, {"Infinity", HUGE_VAL}, {"-Infinity", -HUGE_VAL}, {"-0", -0.0}};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        if (strlen(specials[i].text) == n && memcmp(text, specials[i].text, n) == 0) {
            lua_pushnumber(L, (lua_Number)specials[i].value);
            return 1;
        }
    }
    return 0;
}

/* superjson_leaves(value, values) -> true when every annotation of `values` was a leaf and has
 * been applied to `value` (in place), false when nothing was done. */
static int superjson_leaves(lua_State *L) {
    if (!lua_istable(L, 1) || !lua_istable(L, 2)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_settop(L, 2);
    lua_rawgeti(L, 2, 1);
    int rooted = !lua_isnil(L, -1); /* ["map", ...]: an annotation of the root itself */
    lua_pop(L, 1);
    int count = 0;
    const char *annotation;
    lua_pushnil(L);
    while (!rooted && lua_next(L, 2) != 0) {
        if (++count > LEAVES_MAX || !is_leaf(L, 1, &annotation)) {
            lua_pushboolean(L, 0);
            return 1;
        }
        lua_pop(L, 1);
    }
    if (rooted) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        lua_rawgeti(L, -1, 1);
        annotation = lua_tostring(L, -1);
        lua_pop(L, 2); /* key on top */
        lua_pushvalue(L, -1);
        lua_rawget(L, 1); /* key, field value */
        int field = lua_gettop(L);
        int is_text = lua_type(L, field) == LUA_TSTRING;
        size_t text_len = 0;
        const char *text = is_text ? lua_tolstring(L, field, &text_len) : NULL;
        lua_pushvalue(L, field - 1);
        if (strcmp(annotation, "undefined") == 0) {
            lua_pushnil(L);
        } else if (strcmp(annotation, "bigint") == 0 && is_text) {
            push_bigint(L, field);
        } else if (strcmp(annotation, "number") == 0 && is_text &&
                   push_special_number(L, text, text_len)) {
            /* NaN, the infinities, -0 */
        } else {
            lua_pop(L, 1); /* Date, URL, regexp, set, Error...: their JSON form is the Lua form */
            lua_pop(L, 1);
            continue;
        }
        lua_rawset(L, 1);
        lua_pop(L, 1); /* the field value; the key stays for lua_next */
    }
    lua_pushboolean(L, 1);
    return 1;
}

void tr_open_superjson(lua_State *L) {
    lua_pushcfunction(L, superjson_leaves);
    lua_setfield(L, -2, "superjson_leaves");
}
