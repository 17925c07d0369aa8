/* Allocation-failure sweep of the trigger.core bindings, for `make check` (item asan:allocfail).
 *
 * Each case of tools/check/allocfail.lua runs in a fresh Lua state whose allocator fails every
 * allocation after the first N the case makes (shrinking never fails, as Lua requires), for
 * N = 0, 1, 2, ... until the case runs to its end without meeting a failure; then again with
 * only a burst of failures at the N-th allocation (see MODE below). A failed
 * allocation raises a memory error somewhere inside a binding, often from a sink the C parsers
 * call (lua_pushlstring, lua_createtable, ...): whatever C heap memory is live at that moment
 * must still be freed, by lua_close at the latest. Each case sweeps in a child process, where
 * LeakSanitizer looks for leaks at exit (this program is built with -fsanitize=address, and
 * LSAN exits with status 23 on a leak); prints TAP, one test per case.
 *
 * trigger.core is linked in (csrc/ sources) and given to require through package.preload, so
 * no dlopen/dlclose hides the frames of a leak report.
 *
 *   allocfail tools/check/allocfail.lua */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_trigger_core(lua_State *L);

#define MAX_POINTS 200000

/* The two modes of a sweep: every allocation fails from the N-th on (the state is out of
 * memory for good), or only the N-th and the next (the retry Lua 5.4 makes after an emergency
 * collection), so that a case can go on after the memory error and use what it left behind. */
#define BURST 2
#define MODE(burst) ((burst) ? "a burst of failures" : "failing from then on")

typedef struct budget {
    long left;  /* allocations still allowed; < 0: no limit */
    int burst;  /* 0: fail every allocation from then on; n > 0: fail n, then allow again */
    int failed; /* an allocation was refused */
} budget;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    budget *b = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (nsize > (ptr ? osize : 0) && b->left >= 0) {
        if (b->left == 0) {
            b->failed = 1;
            if (b->burst > 0 && --b->burst == 0) b->left = -1;
            return NULL;
        }
        b->left--;
    }
    return realloc(ptr, nsize);
}

/* A fresh state with the cases file loaded; its case `index` on top. NULL on failure. */
static lua_State *open_case(budget *b, const char *file, int index, const char **name) {
    b->left = -1;
    b->failed = 0;
    lua_State *L = lua_newstate(limited_alloc, b);
    if (L == NULL) return NULL;
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_trigger_core);
    lua_setfield(L, -2, "trigger.core");
    lua_pop(L, 1);
    if (luaL_dofile(L, file) != LUA_OK) {
        fprintf(stderr, "allocfail: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    if (lua_rawgeti(L, -1, index) != LUA_TTABLE) {
        lua_close(L);
        return NULL;
    }
    lua_getfield(L, -1, "name");
    *name = lua_tostring(L, -1); /* kept alive by the case table */
    lua_pop(L, 1);
    lua_getfield(L, -1, "run");
    return L;
}

/* Sweep case `index` (in a child process). Exit status: 0 when it ran and met every failure
 * cleanly (a sanitizer, at exit, turns a leak into its own status), 3 past the last case, 4
 * when a check failed. Prints one "#" line. */
static int sweep(const char *file, int index, int burst) {
    budget b;
    const char *name = NULL;
    for (long n = 0;; n++) {
        lua_State *L = open_case(&b, file, index, &name);
        if (L == NULL) return n == 0 ? 3 : 4;
        b.left = n;
        b.burst = burst;
        int rc = lua_pcall(L, 0, 0, 0);
        b.left = -1;
        if (rc != LUA_OK && !b.failed) {
            printf("# %s: raised without an allocation failure: %s\n", name, lua_tostring(L, -1));
            lua_close(L);
            return 4;
        }
        int done = !b.failed && rc == LUA_OK;
        if (done) printf("# %s (%s): %ld allocation failure points\n", name, MODE(burst), n);
        lua_close(L);
        if (done) return 0;
        if (n == MAX_POINTS) {
            printf("# %s: never ran to its end\n", name);
            return 4;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: allocfail CASES.lua\n");
        return 2;
    }
    int test = 0, failed = 0;
    for (int k = 0; k < 2 * 1000000; k++) {
        int i = k / 2 + 1, burst = k % 2 ? BURST : 0;
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("allocfail: fork");
            return 1;
        }
        if (pid == 0) {
            int rc = sweep(argv[1], i, burst);
            fflush(stdout);
            exit(rc); /* LeakSanitizer checks here */
        }
        int status = 0;
        if (waitpid(pid, &status, 0) < 0) {
            perror("allocfail: waitpid");
            return 1;
        }
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code == 3) break;
        test++;
        if (code == 0) {
            printf("ok %d - case %d, %s: every allocation failure met, nothing leaked\n", test, i,
                   MODE(burst));
        } else {
            failed++;
            printf("not ok %d - case %d, %s: %s (exit status %d)\n", test, i, MODE(burst),
                   code == 4 ? "failed" : "a sanitizer report (above): a leak?", code);
        }
    }
    printf("1..%d\n", test);
    return failed || test == 0 ? 1 : 0;
}
