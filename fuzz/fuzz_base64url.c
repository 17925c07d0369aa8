/* libFuzzer target: base64url (tr_base64url_decode / tr_base64url_encode, csrc/jwt.c).
 *
 * The same input is used twice:
 *   - as text to decode (a JWT segment, say). When accepted, the decoded length is exactly
 *     floor(6 * chars / 8) (chars: the input without trailing '='), and encoding the bytes again
 *     gives the input back, except for the low bits of the last character that carry no data;
 *   - as bytes to encode: the encoding uses only the base64url alphabet, has no padding, has
 *     length ceil(4n/3), and decoding it gives the bytes back (encode -> decode is the identity).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jwt.h"

#define FUZZ_ASSERT(c, msg)                                                                        \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_base64url: %s (%s:%d: %s)\n", msg, __FILE__, __LINE__, #c);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

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

    /* 1. decode the input as text */
    if (tr_base64url_decode(&dec, s, size) == 0) {
        size_t n = size;
        while (n > 0 && s[n - 1] == '=')
            n--;
        FUZZ_ASSERT(n % 4 != 1, "no encoder produces a length of 4k+1");
        FUZZ_ASSERT(dec.len == n * 6 / 8, "decoded length is floor(6 * chars / 8)");
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(sextet(s[i]) >= 0, "only the alphabet is accepted");
        FUZZ_ASSERT(tr_base64url_encode(&enc, dec.data, dec.len) == 0, "encode");
        FUZZ_ASSERT(enc.len == n, "re-encoding gives as many characters");
        if (n > 0) {
            FUZZ_ASSERT(memcmp(enc.data, s, n - 1) == 0, "re-encoding gives the input back");
            static const int data_bits[4] = {0x3f, 0, 0x30, 0x3c}; /* by n % 4 */
            int mask = data_bits[n % 4];
            FUZZ_ASSERT(sextet(enc.data[n - 1]) == (sextet(s[n - 1]) & mask),
                        "the last character differs at most in bits that carry no data");
        }
    } else {
        /* refused: some character outside the alphabet, or an impossible length */
        size_t n = size;
        while (n > 0 && s[n - 1] == '=')
            n--;
        int bad = n % 4 == 1;
        for (size_t i = 0; i < n && !bad; i++)
            bad = sextet(s[i]) < 0;
        FUZZ_ASSERT(bad, "only bad characters or lengths are refused");
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
