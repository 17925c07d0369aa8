/* checkpin: a Lua module used only by `make check-asan` (tools/check/preload.lua).
 *
 * pin(path) dlopens an already loaded C module once more with RTLD_NODELETE, so lua_close's
 * dlclose never unmaps it. LeakSanitizer reports leaks at exit, after lua_close: without the pin
 * a leak in trigger/core.so or trigger/curl.so would show as frames in "<unknown module>".
 * (Preloading the modules with LD_PRELOAD instead would put libcurl and its TLS stack into every
 * child process of the specs, where p11-kit's destructor deadlocks under ASan.) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <lauxlib.h>
#include <lua.h>

static int pin(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    if (h == NULL) return luaL_error(L, "checkpin: %s is not loaded (%s)", path, dlerror());
    lua_pushboolean(L, 1); /* the extra reference is never dropped, on purpose */
    return 1;
}

int luaopen_checkpin(lua_State *L) {
    lua_pushcfunction(L, pin);
    return 1;
}
