/* trigger.core.monotonic: the clock the library measures waits with. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include "compat.h"
#include "lcore.h"

/* monotonic() -> seconds from an arbitrary origin, never going back */
static int monotonic(lua_State *L) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    lua_pushnumber(L, (double)t.tv_sec + t.tv_nsec / 1e9);
    return 1;
}

void tr_open_clock(lua_State *L) {
    lua_pushcfunction(L, monotonic);
    lua_setfield(L, -2, "monotonic");
}
