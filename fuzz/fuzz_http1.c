/* libFuzzer target: the HTTP/1.1 response parser (csrc/lib/http1.c) over arbitrary byte splits.
 *
 * The input is the byte stream a server sends (seeds are real responses). It is parsed with
 * the default limits and with tiny ones, as a GET and as a HEAD response, and each of those
 * four ways is fed:
 *   - whole, in one tr_h1_feed;
 *   - one byte at a time;
 *   - in two pieces, cut at an offset derived from the input;
 *   - in pieces of pseudo-random sizes (1..67 bytes) seeded from the input.
 * Every split must give exactly the same result as the whole feed, both before and after
 * tr_h1_finish (EOF): state, error and its offset, status, version, reason, every field and
 * trailer, the body, keep-alive, and how many bytes were consumed (unless the parse failed: the
 * count on the failing call is not specified). Beyond that: documented
 * invariants (names lower-case tokens, values trimmed text, DONE without error and ERROR with
 * one, the body within max_body, keep-alive only when DONE, no MORE after finish). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_assert.h"
#include "lib/buf.h"
#include "lib/http1.h"

/* Everything observable about a parser, flattened into bytes so that two runs compare with
 * memcmp. */
static void snapshot(const tr_h1 *p, size_t consumed, size_t total, const tr_h1_limits *lim,
                     tr_buf *out) {
    tr_buf_reset(out);
    char head[256];
    tr_h1_state st = tr_h1_state_of(p);
    tr_h1_error err = tr_h1_error_of(p);
    size_t reason_len = 0, body_len = 0;
    const char *reason = tr_h1_reason(p, &reason_len);
    const char *body = tr_h1_body(p, &body_len);
    int status = tr_h1_status(p);

    /* invariants */
    FUZZ_ASSERT(body != NULL, "the body is never NULL");
    FUZZ_ASSERT((st == TR_H1_ERROR) == (err != TR_H1_OK), "ERROR exactly when there is an error");
    FUZZ_ASSERT(strcmp(tr_h1_error_name(err), "unknown") != 0, "every error has a name");
    FUZZ_ASSERT(strcmp(tr_h1_error_message(err), "unknown error") != 0, "and a sentence");
    FUZZ_ASSERT(status == 0 || (status >= 100 && status <= 999), "a three-digit status");
    FUZZ_ASSERT((reason == NULL) == (status == 0), "a reason once the status line is parsed");
    FUZZ_ASSERT(!tr_h1_keepalive(p) || st == TR_H1_DONE, "keep-alive only when done");
    if (st == TR_H1_DONE) FUZZ_ASSERT(body_len <= lim->max_body, "the body is within max_body");
    if (st == TR_H1_ERROR)
        FUZZ_ASSERT(tr_h1_error_offset(p) <= total, "the error offset is in the input");
    size_t n_fields = tr_h1_field_count(p);
    FUZZ_ASSERT(n_fields <= lim->max_headers, "at most max_headers fields");
    FUZZ_ASSERT(tr_h1_field(p, n_fields, NULL, NULL, NULL, NULL, NULL) == -1,
                "a field index out of range is refused");

    int n =
        snprintf(head, sizeof head, "%d %d %zu %d %d %d %d %zu %zu %zu|", (int)st, (int)err,
                 tr_h1_error_offset(p), status, tr_h1_minor_version(p), tr_h1_headers_complete(p),
                 tr_h1_keepalive(p), st == TR_H1_ERROR ? 0 : consumed, n_fields, body_len);
    FUZZ_ASSERT(tr_buf_add(out, head, (size_t)n) == 0, "oom");
    if (reason) FUZZ_ASSERT(tr_buf_add(out, reason, reason_len) == 0, "oom");
    FUZZ_ASSERT(tr_buf_addc(out, '|') == 0, "oom");
    for (size_t i = 0; i < n_fields; i++) {
        const char *name, *value;
        size_t nn, vn;
        int trailer = -1;
        FUZZ_ASSERT(tr_h1_field(p, i, &name, &nn, &value, &vn, &trailer) == 0, "field i exists");
        FUZZ_ASSERT(nn > 0, "a field has a name");
        for (size_t k = 0; k < nn; k++) {
            unsigned char c = (unsigned char)name[k];
            FUZZ_ASSERT(!(c >= 'A' && c <= 'Z'), "names are lower-case");
            FUZZ_ASSERT(c > 0x20 && c < 0x7f && c != ':' && c != '"' && c != '(' && c != ')' &&
                            c != ',' && c != '/' && c != ';' && c != '<' && c != '=' && c != '>' &&
                            c != '?' && c != '@' && c != '[' && c != '\\' && c != ']' && c != '{' &&
                            c != '}',
                        "names are tokens");
        }
        if (vn > 0)
            FUZZ_ASSERT(value[0] != ' ' && value[0] != '\t' && value[vn - 1] != ' ' &&
                            value[vn - 1] != '\t',
                        "values have no surrounding whitespace");
        for (size_t k = 0; k < vn; k++) {
            unsigned char c = (unsigned char)value[k];
            FUZZ_ASSERT(c == '\t' || (c >= 0x20 && c != 0x7f), "values are field text");
        }
        FUZZ_ASSERT(trailer == 0 || trailer == 1, "trailer is 0 or 1");
        n = snprintf(head, sizeof head, "%zu %zu %d:", nn, vn, trailer);
        FUZZ_ASSERT(tr_buf_add(out, head, (size_t)n) == 0 && tr_buf_add(out, name, nn) == 0 &&
                        tr_buf_add(out, value, vn) == 0,
                    "oom");
    }
    FUZZ_ASSERT(tr_buf_addc(out, '|') == 0 && tr_buf_add(out, body, body_len) == 0, "oom");
}

typedef struct result {
    tr_buf before_eof, after_eof;
} result;

static uint64_t hash(const uint8_t *d, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

/* split: 0 whole, 1 bytewise, 2 two pieces at `cut`, 3 random sizes from `seed` */
static void run(const char *in, size_t len, const tr_h1_limits *lim, int head, int split,
                size_t cut, uint64_t seed, result *r) {
    tr_h1 *p = tr_h1_new(lim, head);
    FUZZ_ASSERT(p != NULL, "out of memory");
    tr_h1_limits eff = *lim;
    if (!eff.max_header_bytes) eff.max_header_bytes = TR_H1_DEFAULT_MAX_HEADER_BYTES;
    if (!eff.max_headers) eff.max_headers = TR_H1_DEFAULT_MAX_HEADERS;
    if (!eff.max_body) eff.max_body = TR_H1_DEFAULT_MAX_BODY;
    size_t off = 0, consumed = 0;
    while (off < len && tr_h1_state_of(p) == TR_H1_MORE) {
        size_t piece;
        if (split == 0)
            piece = len;
        else if (split == 1)
            piece = 1;
        else if (split == 2)
            piece = off < cut ? cut - off : len - off;
        else {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            piece = 1 + (size_t)((seed >> 33) % 67);
        }
        if (piece > len - off) piece = len - off;
        /* each piece in its own exactly sized block: over-reads are ASan reports */
        char *chunk = malloc(piece);
        FUZZ_ASSERT(chunk != NULL, "out of memory");
        memcpy(chunk, in + off, piece);
        size_t used = (size_t)-1;
        tr_h1_state st = tr_h1_feed(p, chunk, piece, &used);
        free(chunk);
        FUZZ_ASSERT(used <= piece, "never consumes more than it was given");
        FUZZ_ASSERT(st == tr_h1_state_of(p), "feed returns the state");
        if (st == TR_H1_MORE) FUZZ_ASSERT(used == piece, "MORE means every byte was taken");
        consumed += used;
        off += piece;
    }
    /* fed after DONE/ERROR: nothing is consumed */
    if (tr_h1_state_of(p) != TR_H1_MORE && len > 0) {
        size_t used = (size_t)-1;
        tr_h1_feed(p, in, 1, &used);
        FUZZ_ASSERT(used == 0, "bytes fed after the end are not consumed");
    }
    snapshot(p, consumed, len, &eff, &r->before_eof);
    tr_h1_state st = tr_h1_finish(p);
    FUZZ_ASSERT(st != TR_H1_MORE, "finish always ends the response");
    snapshot(p, consumed, len, &eff, &r->after_eof);
    tr_h1_free(p);
}

static int same(const tr_buf *a, const tr_buf *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return 0;
    const char *in = (const char *)data;
    static const tr_h1_limits defaults = {0, 0, 0};
    static const tr_h1_limits tiny = {96, 4, 24};
    const tr_h1_limits *lims[2] = {&defaults, &tiny};
    uint64_t h = hash(data, size);
    size_t cut = size ? (size_t)(h % size) : 0;
    result whole, other;
    tr_buf_init(&whole.before_eof);
    tr_buf_init(&whole.after_eof);
    tr_buf_init(&other.before_eof);
    tr_buf_init(&other.after_eof);
    for (int l = 0; l < 2; l++) {
        for (int head = 0; head <= 1; head++) {
            run(in, size, lims[l], head, 0, 0, 0, &whole);
            for (int split = 1; split <= 3; split++) {
                if (split == 1 && size > 8192) continue; /* bytewise: keep each run fast */
                run(in, size, lims[l], head, split, cut, h, &other);
                if (!same(&whole.before_eof, &other.before_eof) ||
                    !same(&whole.after_eof, &other.after_eof)) {
                    fprintf(stderr,
                            "split %d (cut %zu) limits %s head %d\n whole: %.*s\n split: %.*s\n",
                            split, cut, l ? "tiny" : "default", head, (int)whole.before_eof.len,
                            whole.before_eof.data, (int)other.before_eof.len,
                            other.before_eof.data);
                    FUZZ_ASSERT(0, "a split feed gives the same result as the whole feed");
                }
            }
        }
    }
    tr_buf_free(&whole.before_eof);
    tr_buf_free(&whole.after_eof);
    tr_buf_free(&other.before_eof);
    tr_buf_free(&other.after_eof);
    return 0;
}
