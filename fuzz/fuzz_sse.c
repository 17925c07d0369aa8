/* libFuzzer target: the Server-Sent Events parser and the S2 batch payload (csrc/lib/sse.c).
 *
 * The input is the body a stream server sends (seeds are the v1 and v2 vectors of
 * shared/protocol/streams.md section 7 and some odd framings). It is parsed with the default
 * limits and with tiny ones, comments reported or not, and each way is fed:
 *   - whole;
 *   - one byte at a time;
 *   - in two pieces, cut at an offset derived from the input;
 *   - in pieces of pseudo-random sizes (1..67 bytes) seeded from the input.
 * Every split must give exactly the same events (kind, type, id, data), the same error and
 * offset, and the same count of bytes dropped at EOF as the whole feed. Invariants: feed never
 * consumes more than it was given; MORE only with all input consumed; an event's data and type
 * within max_event; the error sticky; every error named. The data of each `batch`/`ping` event,
 * and the whole input, also go through tr_s2_batch_parse: records' bodies lie inside the
 * bodies buffer, seq_nums are >= 0, and a failure empties the batch and says why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_assert.h"
#include "lib/buf.h"
#include "lib/sse.h"

static tr_s2_batch batch;
static int batch_ready;

static void check_batch(const char *s, size_t n) {
    if (!batch_ready) {
        tr_s2_batch_init(&batch);
        batch_ready = 1;
    }
    char err[128];
    err[0] = '\0';
    int rc = tr_s2_batch_parse(&batch, s, n, err, sizeof err);
    if (rc != 0) {
        FUZZ_ASSERT(batch.n == 0, "a failed parse leaves no records");
        FUZZ_ASSERT(strncmp(err, "not an S2 batch: ", 17) == 0, "and says why");
        return;
    }
    for (size_t i = 0; i < batch.n; i++) {
        const tr_s2_record *r = &batch.records[i];
        FUZZ_ASSERT(r->seq_num >= 0, "seq_num is never negative");
        FUZZ_ASSERT(r->body <= batch.bodies.len && r->body_len <= batch.bodies.len - r->body,
                    "a body lies inside the bodies buffer");
        FUZZ_ASSERT(r->body_len <= n, "a body is no longer than the payload");
        FUZZ_ASSERT(r->kind == TR_S2_DATA || r->kind == TR_S2_COMMAND || r->kind == TR_S2_CONTROL,
                    "a known kind");
    }
    if (batch.has_tail) FUZZ_ASSERT(batch.tail_seq_num >= 0, "tail.seq_num is never negative");
}

static void put(tr_buf *out, const void *p, size_t n) {
    FUZZ_ASSERT(tr_buf_add(out, p, n) == 0, "oom");
}

static void put_len(tr_buf *out, size_t n) { put(out, &n, sizeof n); }

static void record(tr_buf *out, const tr_sse *p, const tr_sse_limits *lim, int look) {
    const tr_sse_ev *e = tr_sse_event(p);
    FUZZ_ASSERT(e->kind == TR_SSE_KIND_EVENT || (lim->comments && e->kind == TR_SSE_KIND_COMMENT),
                "comments only when asked for");
    FUZZ_ASSERT(e->data != NULL && e->type != NULL && e->id != NULL, "no NULL pointers");
    if (e->kind == TR_SSE_KIND_EVENT) {
        FUZZ_ASSERT(e->type_len > 0, "an event has a type");
        size_t max_event = lim->max_event ? lim->max_event : TR_SSE_DEFAULT_MAX_EVENT;
        FUZZ_ASSERT(e->data_len <= max_event, "data within max_event");
        FUZZ_ASSERT(memchr(e->id, '\0', e->id_len) == NULL, "an id never holds NUL");
        FUZZ_ASSERT(memchr(e->type, '\r', e->type_len) == NULL &&
                        memchr(e->type, '\n', e->type_len) == NULL,
                    "a type never holds a line end");
        if (look && ((e->type_len == 5 && memcmp(e->type, "batch", 5) == 0) ||
                     (e->type_len == 4 && memcmp(e->type, "ping", 4) == 0)))
            check_batch(e->data, e->data_len);
    }
    put(out, "E", 1);
    put_len(out, (size_t)e->kind);
    put_len(out, e->type_len);
    put(out, e->type, e->type_len);
    put_len(out, e->id_len);
    put(out, e->id, e->id_len);
    put_len(out, e->data_len);
    put(out, e->data, e->data_len);
}

static uint64_t hash(const uint8_t *d, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 1099511628211ULL;
    return h;
}

/* split 0: whole; 1: byte by byte; 2: two pieces at cut; 3: random pieces from seed. */
static void run(const char *in, size_t size, const tr_sse_limits *lim, int split, size_t cut,
                uint64_t seed, tr_buf *out) {
    tr_buf_reset(out);
    tr_sse *p = tr_sse_new(lim);
    FUZZ_ASSERT(p != NULL, "oom");
    size_t at = 0;
    int failed = 0;
    while (at < size && !failed) {
        size_t piece = size - at;
        if (split == 1) piece = 1;
        if (split == 2 && at < cut) piece = cut - at;
        if (split == 3) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            piece = 1 + (size_t)((seed >> 33) % 67);
            if (piece > size - at) piece = size - at;
        }
        const char *s = in + at;
        size_t left = piece;
        while (left > 0) {
            size_t used = 0;
            tr_sse_state st = tr_sse_feed(p, s, left, &used);
            FUZZ_ASSERT(used <= left, "feed never consumes more than it was given");
            s += used;
            left -= used;
            if (st == TR_SSE_EVENT) {
                record(out, p, lim, split == 0);
            } else if (st == TR_SSE_ERROR) {
                FUZZ_ASSERT(tr_sse_error_of(p) != TR_SSE_OK, "ERROR with an error");
                size_t u2 = 1;
                FUZZ_ASSERT(tr_sse_feed(p, "x\n\n", 3, &u2) == TR_SSE_ERROR && u2 == 0,
                            "the error is sticky");
                failed = 1;
                break;
            } else {
                FUZZ_ASSERT(left == 0, "MORE only with all input consumed");
            }
        }
        at += piece;
    }
    char tail[64];
    if (failed) {
        tr_sse_error e = tr_sse_error_of(p);
        FUZZ_ASSERT(strcmp(tr_sse_error_name(e), "unknown") != 0, "every error has a name");
        FUZZ_ASSERT(tr_sse_error_offset(p) <= size, "the error offset is in the input");
        int n = snprintf(tail, sizeof tail, "error %d@%zu", (int)e, tr_sse_error_offset(p));
        put(out, tail, (size_t)n);
    } else {
        FUZZ_ASSERT(tr_sse_error_of(p) == TR_SSE_OK, "no error without ERROR");
        int n = snprintf(tail, sizeof tail, "end %zu", tr_sse_finish(p));
        put(out, tail, (size_t)n);
        FUZZ_ASSERT(tr_sse_finish(p) == 0, "a second finish drops nothing");
    }
    tr_sse_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return 0;
    const char *in = (const char *)data;
    static const tr_sse_limits defaults = {0, 0, 0};
    static const tr_sse_limits defaults_comments = {0, 0, 1};
    static const tr_sse_limits tiny = {16, 24, 0};
    static const tr_sse_limits tiny_comments = {7, 12, 1};
    const tr_sse_limits *lims[4] = {&defaults, &defaults_comments, &tiny, &tiny_comments};
    uint64_t h = hash(data, size);
    size_t cut = size ? (size_t)(h % size) : 0;
    tr_buf whole, other;
    tr_buf_init(&whole);
    tr_buf_init(&other);
    for (int l = 0; l < 4; l++) {
        run(in, size, lims[l], 0, 0, 0, &whole);
        for (int split = 1; split <= 3; split++) {
            if (split == 1 && size > 8192) continue; /* bytewise: keep each run fast */
            run(in, size, lims[l], split, cut, h, &other);
            if (whole.len != other.len || memcmp(whole.data, other.data, whole.len) != 0) {
                fprintf(stderr, "split %d (cut %zu) limits %d differ\n", split, cut, l);
                FUZZ_ASSERT(0, "a split feed gives the same result as the whole feed");
            }
        }
    }
    check_batch(in, size);
    tr_buf_free(&whole);
    tr_buf_free(&other);
    return 0;
}
