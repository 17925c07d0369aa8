/* libFuzzer target: base64url (tr_base64url_decode / tr_base64url_encode, csrc/lib/jwt.c).
 *
 * The same input is used twice:
 *   - as text to decode (a JWT segment, say): accepted exactly when it is a canonical encoding
 *     (alphabet only, a possible length, zero unused bits, padding only to complete the last
 *     quantum); then the decoded length is floor(6 * chars / 8) and encoding the bytes again
 *     gives the input back (without its padding);
 *   - as bytes to encode: the encoding uses only the base64url alphabet, has no padding, has
 *     length ceil(4n/3), and decoding it gives the bytes back (encode -> decode is the identity).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_assert.h"
#include "lib/buf.h"
#include "lib/jwt.h"

static int sextet(char c) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p = c ? memchr(alphabet, c, 64) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size ? size : 1); /* exactly sized: over-reads are ASan reports */
    FUZZ_ASSERT(s != NULL, "out of memory");
    memcpy(s, data, size);
    tr_buf dec, enc, back;
    tr_buf_init(&dec);
    tr_buf_init(&enc);
    tr_buf_init(&back);

    /* 1. decode the input as text. Accepted exactly when it is what an encoder writes: the
     * alphabet, a possible length, zero unused bits in the last character, and padding only
     * to complete the last quantum. */
    size_t n = size, pad = 0;
    if (n % 4 == 0 && n > 0 && s[n - 1] == '=') {
        n--, pad++;
        if (s[n - 1] == '=') n--, pad++;
    }
    int canonical = n % 4 != 1;
    for (size_t i = 0; i < n && canonical; i++)
        canonical = sextet(s[i]) >= 0;
    if (canonical && n > 0) {
        static const int unused_bits[4] = {0, 0, 0x0f, 0x03}; /* by n % 4 */
        canonical = (sextet(s[n - 1]) & unused_bits[n % 4]) == 0;
    }
    if (canonical && pad > 0) canonical = (n + pad) % 4 == 0 && pad == (4 - n % 4) % 4;
    int accepted = tr_base64url_decode(&dec, s, size) == 0;
    FUZZ_ASSERT(accepted == canonical, "accepted exactly the canonical encodings");
    if (accepted) {
        FUZZ_ASSERT(dec.len == n * 6 / 8, "decoded length is floor(6 * chars / 8)");
        FUZZ_ASSERT(tr_base64url_encode(&enc, dec.data, dec.len) == 0, "encode");
        FUZZ_ASSERT(enc.len == n && (n == 0 || memcmp(enc.data, s, n) == 0),
                    "re-encoding gives the input back");
    }

    /* 2. encode the input as bytes, then decode: the identity */
    tr_buf_reset(&enc);
    FUZZ_ASSERT(tr_base64url_encode(&enc, s, size) == 0, "encode");
    FUZZ_ASSERT(enc.len == size / 3 * 4 + (size % 3 ? size % 3 + 1 : 0), "length is ceil(4n/3)");
    for (size_t i = 0; i < enc.len; i++)
        FUZZ_ASSERT(sextet(enc.data[i]) >= 0, "alphabet only");
    FUZZ_ASSERT(tr_base64url_decode(&back, enc.data ? enc.data : "", enc.len) == 0, "decode");
    FUZZ_ASSERT(back.len == size && (size == 0 || memcmp(back.data, s, size) == 0),
                "encode -> decode is the identity");

    tr_buf_free(&dec);
    tr_buf_free(&enc);
    tr_buf_free(&back);
    free(s);
    return 0;
}
