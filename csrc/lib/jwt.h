/* The byte-level parts of HS256 JSON Web Tokens: HMAC-SHA256 (OpenSSL libcrypto) and
 * base64url without padding; plain SHA-256 and random bytes beside them (the same library). Claims
 * are built in Lua. */
#ifndef TR_JWT_H
#define TR_JWT_H

#include <stddef.h>

#include "buf.h"

#define TR_HS256_LEN 32

/* Returns 0, or -1 when libcrypto fails. */
int tr_hs256(const void *key, size_t key_len, const void *msg, size_t msg_len,
             unsigned char out[TR_HS256_LEN]);

#define TR_SHA256_LEN 32

/* Plain SHA-256 (idempotency keys are hashed as the TypeScript SDK hashes them). Returns 0, or
 * -1 when libcrypto fails. */
int tr_sha256(const void *msg, size_t msg_len, unsigned char out[TR_SHA256_LEN]);

/* n bytes from the operating system's random source (libcrypto's RAND_bytes), for request
 * ids. Returns 0, or -1 when none could be had. */
int tr_random_bytes(unsigned char *out, size_t n);

int tr_base64url_encode(tr_buf *out, const void *data, size_t n);
/* Accepts base64url with or without padding; returns 0, or -1 on a character outside the
 * alphabet or a length no encoder produces. */
int tr_base64url_decode(tr_buf *out, const char *s, size_t n);

#endif
