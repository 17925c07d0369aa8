/* trigger.core bindings of the JWT bytes (csrc/jwt.c): HMAC-SHA256 and base64url. */
#include "compat.h"
#include "jwt.h"
#include "lcore.h"

static int hs256(lua_State *L) {
    size_t kn, mn;
    const char *key = luaL_checklstring(L, 1, &kn);
    const char *msg = luaL_checklstring(L, 2, &mn);
    unsigned char mac[TR_HS256_LEN];
    if (tr_hs256(key, kn, msg, mn, mac) != 0) return luaL_error(L, "HMAC-SHA256 failed");
    lua_pushlstring(L, (const char *)mac, sizeof mac);
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
                                     {"b64url_encode", b64url_encode},
                                     {"b64url_decode", b64url_decode},
                                     {NULL, NULL}};

void tr_open_jwt(lua_State *L) { tr_setfuncs(L, functions); }
