#include "jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

int tr_hs256(const void *key, size_t key_len, const void *msg, size_t msg_len,
             unsigned char out[TR_HS256_LEN]) {
    unsigned int len = 0;
    if (key_len > 0x7fffffff) return -1;
    if (HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &len) == NULL) return -1;
    return len == TR_HS256_LEN ? 0 : -1;
}

int tr_sha256(const void *msg, size_t msg_len, unsigned char out[TR_SHA256_LEN]) {
    unsigned int len = 0;
    if (EVP_Digest(msg, msg_len, out, &len, EVP_sha256(), NULL) != 1) return -1;
    return len == TR_SHA256_LEN ? 0 : -1;
}

int tr_random_bytes(unsigned char *out, size_t n) {
    if (n > 0x7fffffff) return -1;
    return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int tr_base64url_encode(tr_buf *out, const void *data, size_t n) {
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        char q[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63],
                     alphabet[v & 63]};
        if (tr_buf_add(out, q, 4) != 0) return -1;
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        char q[2] = {alphabet[v >> 18], alphabet[(v >> 12) & 63]};
        if (tr_buf_add(out, q, 2) != 0) return -1;
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        char q[3] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63]};
        if (tr_buf_add(out, q, 3) != 0) return -1;
    }
    return 0;
}

static int sextet(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int tr_base64url_decode(tr_buf *out, const char *s, size_t n) {
    /* Padding, when present, completes the last quantum: nothing more, nothing less. */
    if (n % 4 == 0 && n > 0 && s[n - 1] == '=') {
        n--;
        if (s[n - 1] == '=') n--;
    }
    if (n % 4 == 1) return -1;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = sextet(s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (tr_buf_addc(out, (char)((acc >> bits) & 0xff)) != 0) return -1;
        }
    }
    /* An encoder leaves the unused low bits of the last character zero. */
    if (acc & ((1u << bits) - 1)) return -1;
    return 0;
}
