/* trigger.core bindings of the JWT bytes (csrc/lib/jwt.c): HMAC-SHA256 and base64url; SHA-256 and
 * random bytes. */
#include "compat.h"
#include "lcore.h"
#include "lib/jwt.h"

static int hs256(lua_State *L) {
    size_t kn, mn;
    const char *key = luaL_checklstring(L, 1, &kn);
    const char *msg = luaL_checklstring(L, 2, &mn);
    unsigned char mac[TR_HS256_LEN];
    if (tr_hs256(key, kn, msg, mn, mac) != 0) return luaL_error(L, "HMAC-SHA256 failed");
    lua_pushlstring(L, (const char *)mac, sizeof mac);
    return 1;
}

/* sha256(s) -> the 32-byte digest */
static int sha256(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char md[TR_SHA256_LEN];
    if (tr_sha256(s, n, md) != 0) return luaL_error(L, "SHA-256 failed");
    lua_pushlstring(L, (const char *)md, sizeof md);
    return 1;
}

/* random_bytes(n) -> n bytes (1..256) from the system's random source */
static int random_bytes(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    unsigned char b[256];
    luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof b, 1, "1 to 256 bytes");
    if (tr_random_bytes(b, (size_t)n) != 0) return luaL_error(L, "no random bytes to be had");
    lua_pushlstring(L, (const char *)b, (size_t)n);
    return 1;
}

static int b64url_encode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    tr_buf *b = tr_scratch_take(L);
    return tr_scratch_push(L, tr_base64url_encode(b, s, n), "out of memory");
}

static int b64url_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    tr_buf *b = tr_scratch_take(L);
    return tr_scratch_push(L, tr_base64url_decode(b, s, n), "not base64url");
}

static const luaL_Reg functions[] = {{"hs256", hs256},
                                     {"sha256", sha256},
                                     {"random_bytes", random_bytes},
                                     {"b64url_encode", b64url_encode},
                                     {"b64url_decode", b64url_decode},
                                     {NULL, NULL}};

void tr_open_jwt(lua_State *L) { tr_setfuncs(L, functions); }
