/* libFuzzer target: Postgres array literals (tr_pg_array_parse in csrc/lib/pgtext.c).
 *
 * The input is the literal itself, e.g. {a,"b c","q\"d",NULL} or [1:2]={{1,2},{3,4}}.
 * Checks, beyond the sanitizers:
 *   - the sink sees balanced open/close calls, elements only inside an array, at most
 *     TR_PG_MAX_DEPTH levels; an accepted literal opens and closes the outermost array;
 *   - round trip: an accepted literal, written back in canonical form (every string quoted and
 *     escaped, NULL bare), parses again to the very same canonical form;
 *   - a sink that stops half-way makes the parse return -2, and a refused literal reports an
 *     error offset within the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_assert.h"
#include "lib/buf.h"
#include "lib/pgtext.h"

typedef struct writer {
    tr_buf out;
    int depth, max_depth;
    int need_comma[TR_PG_MAX_DEPTH + 2];
    long calls, stop_at; /* stop_at > 0: return non-zero on that callback */
    int closed_outer;
} writer;

static int stop_now(writer *w) { return w->stop_at > 0 && ++w->calls == w->stop_at; }

static void comma(writer *w) {
    if (w->depth > 0 && w->need_comma[w->depth])
        FUZZ_ASSERT(tr_buf_addc(&w->out, ',') == 0, "out of memory");
    if (w->depth > 0) w->need_comma[w->depth] = 1;
}

static int w_open(void *ud) {
    writer *w = ud;
    if (stop_now(w)) return 1;
    FUZZ_ASSERT(!w->closed_outer, "nothing opens after the outermost array closed");
    comma(w);
    w->depth++;
    FUZZ_ASSERT(w->depth <= TR_PG_MAX_DEPTH, "never deeper than TR_PG_MAX_DEPTH");
    if (w->depth > w->max_depth) w->max_depth = w->depth;
    w->need_comma[w->depth] = 0;
    FUZZ_ASSERT(tr_buf_addc(&w->out, '{') == 0, "out of memory");
    return 0;
}

static int w_close(void *ud) {
    writer *w = ud;
    if (stop_now(w)) return 1;
    FUZZ_ASSERT(w->depth > 0, "close matches an open");
    w->depth--;
    if (w->depth == 0) w->closed_outer = 1;
    FUZZ_ASSERT(tr_buf_addc(&w->out, '}') == 0, "out of memory");
    return 0;
}

static int w_element(void *ud, const char *s, size_t n, int is_null) {
    writer *w = ud;
    if (stop_now(w)) return 1;
    FUZZ_ASSERT(w->depth > 0, "elements come inside an array");
    FUZZ_ASSERT(s != NULL, "element text is never NULL");
    comma(w);
    if (is_null) {
        FUZZ_ASSERT(tr_buf_adds(&w->out, "NULL") == 0, "out of memory");
        return 0;
    }
    FUZZ_ASSERT(tr_buf_addc(&w->out, '"') == 0, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') FUZZ_ASSERT(tr_buf_addc(&w->out, '\\') == 0, "oom");
        FUZZ_ASSERT(tr_buf_addc(&w->out, s[i]) == 0, "out of memory");
    }
    FUZZ_ASSERT(tr_buf_addc(&w->out, '"') == 0, "out of memory");
    return 0;
}

/* Parse with a fresh writer; the canonical form is left in w->out. */
static int parse(const char *s, size_t n, writer *w, long stop_at, size_t *err_at) {
    memset(w, 0, sizeof *w);
    tr_buf_init(&w->out);
    w->stop_at = stop_at;
    tr_pg_array_sink sink = {w_open, w_close, w_element, w};
    return tr_pg_array_parse(s, n, &sink, err_at);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exactly sized copy: any read past the end is an ASan report. */
    char *s = malloc(size ? size : 1);
    FUZZ_ASSERT(s != NULL, "out of memory");
    memcpy(s, data, size);

    writer w;
    size_t err_at = (size_t)-1;
    int rc = parse(s, size, &w, 0, &err_at);
    FUZZ_ASSERT(rc == 0 || rc == -1, "a sink that never stops sees 0 or -1");
    if (rc == 0) {
        FUZZ_ASSERT(w.depth == 0 && w.closed_outer, "an accepted literal is balanced");
        FUZZ_ASSERT(w.max_depth >= 1, "an accepted literal has an array");

        /* round trip through the canonical form */
        writer again;
        size_t at2 = 0;
        int rc2 = parse(w.out.data, w.out.len, &again, 0, &at2);
        FUZZ_ASSERT(rc2 == 0, "the canonical form parses");
        FUZZ_ASSERT(again.out.len == w.out.len &&
                        memcmp(again.out.data, w.out.data, w.out.len) == 0,
                    "the canonical form is a fixed point");
        tr_buf_free(&again.out);

        /* a sink that stops half-way */
        writer stopped;
        size_t at3 = (size_t)-1;
        long stop_at = 1 + (long)(size % 7); /* early, and deterministic */
        int rc3 = parse(s, size, &stopped, stop_at, &at3);
        FUZZ_ASSERT(rc3 == -2 || (rc3 == 0 && stopped.calls < stop_at),
                    "a sink that stops makes the parse return -2");
        if (rc3 == -2) FUZZ_ASSERT(at3 <= size, "the stop offset is within the input");
        tr_buf_free(&stopped.out);
    } else {
        FUZZ_ASSERT(err_at <= size, "the error offset is within the input");
    }
    tr_buf_free(&w.out);
    free(s);
    return 0;
}
