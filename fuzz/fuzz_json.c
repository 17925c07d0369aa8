/* libFuzzer target: the JSON parser (tr_json_parse in csrc/lib/json.c).
 *
 * Checks, beyond the sanitizers:
 *   - the sink sees balanced begin/end calls, keys only inside objects, depth within the limit;
 *   - round trip: an accepted text, written back in canonical form (strings re-escaped, numbers
 *     as integers or %.17g doubles), parses again to the very same canonical form;
 *   - tr_decimal_fast agrees with strtod, bit for bit, on every text it accepts;
 *   - a sink that stops half-way makes the parse return TR_JSON_STOPPED, and a refused text
 *     reports an error offset within the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_assert.h"
#include "lib/buf.h"
#include "lib/json.h"

#define MAX_DEPTH 64

typedef struct writer {
    tr_buf out;
    int depth;
    int is_object[MAX_DEPTH + 2];
    int count[MAX_DEPTH + 2];
    int expect_value; /* inside an object, after a key */
    long calls, stop_at;
} writer;

static void add(writer *w, const char *s, size_t n) {
    FUZZ_ASSERT(tr_buf_add(&w->out, s, n) == 0, "out of memory");
}

static int before_value(writer *w) {
    if (w->stop_at > 0 && ++w->calls == w->stop_at) return 1;
    if (w->depth > 0 && !w->is_object[w->depth]) {
        if (w->count[w->depth]++ > 0) add(w, ",", 1);
    } else if (w->depth > 0) {
        FUZZ_ASSERT(w->expect_value, "a value in an object without a key");
        w->expect_value = 0;
    }
    return 0;
}

static void put_string(writer *w, const char *s, size_t n) {
    add(w, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            add(w, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            add(w, e, 6);
        } else {
            add(w, (const char *)&c, 1);
        }
    }
    add(w, "\"", 1);
}

static int w_null(void *ud) {
    if (before_value(ud)) return 1;
    add(ud, "null", 4);
    return 0;
}
static int w_bool(void *ud, int v) {
    if (before_value(ud)) return 1;
    add(ud, v ? "true" : "false", v ? 4 : 5);
    return 0;
}
static int w_int(void *ud, int64_t v) {
    char b[32];
    if (before_value(ud)) return 1;
    int n = snprintf(b, sizeof b, "%lld", (long long)v);
    add(ud, b, (size_t)n);
    return 0;
}
static int w_num(void *ud, double v) {
    char b[40];
    if (before_value(ud)) return 1;
    /* Infinity from an overflowing literal has no JSON spelling: write a big one back. */
    int n = v != v                        ? snprintf(b, sizeof b, "0")
            : v > 1.7976931348623157e308  ? snprintf(b, sizeof b, "1e999")
            : v < -1.7976931348623157e308 ? snprintf(b, sizeof b, "-1e999")
                                          : snprintf(b, sizeof b, "%.17g", v);
    /* make sure it stays a double on the way back */
    if (!strpbrk(b, ".eEn")) n += snprintf(b + n, sizeof b - (size_t)n, ".0");
    add(ud, b, (size_t)n);
    return 0;
}
static int w_str(void *ud, const char *s, size_t n) {
    if (before_value(ud)) return 1;
    put_string(ud, s, n);
    return 0;
}
static int w_begin(writer *w, int object) {
    if (before_value(w)) return 1;
    FUZZ_ASSERT(w->depth < MAX_DEPTH, "deeper than the limit");
    add(w, object ? "{" : "[", 1);
    w->depth++;
    w->is_object[w->depth] = object;
    w->count[w->depth] = 0;
    return 0;
}
static int w_end(writer *w, int object) {
    FUZZ_ASSERT(w->depth > 0 && w->is_object[w->depth] == object, "unbalanced end");
    FUZZ_ASSERT(!w->expect_value, "an object ended after a key");
    w->depth--;
    add(w, object ? "}" : "]", 1);
    return 0;
}
static int w_bo(void *ud) { return w_begin(ud, 1); }
static int w_ba(void *ud) { return w_begin(ud, 0); }
static int w_eo(void *ud) { return w_end(ud, 1); }
static int w_ea(void *ud) { return w_end(ud, 0); }
static int w_key(void *ud, const char *s, size_t n) {
    writer *w = ud;
    FUZZ_ASSERT(w->depth > 0 && w->is_object[w->depth], "a key outside an object");
    FUZZ_ASSERT(!w->expect_value, "two keys in a row");
    if (w->count[w->depth]++ > 0) add(w, ",", 1);
    put_string(w, s, n);
    add(w, ":", 1);
    w->expect_value = 1;
    return 0;
}

static tr_json_status parse(const char *s, size_t n, writer *w, long stop_at) {
    memset(w, 0, sizeof *w);
    tr_buf_init(&w->out);
    w->stop_at = stop_at;
    tr_json_sink sink = {w_null, w_bool, w_int, w_num, w_str, w_bo, w_key, w_eo, w_ba, w_ea, w};
    size_t at = 0;
    const char *what = NULL;
    tr_json_status st = tr_json_parse(s, n, MAX_DEPTH, &sink, &at, &what);
    if (st != TR_JSON_OK) {
        FUZZ_ASSERT(at <= n, "error offset past the input");
        FUZZ_ASSERT(what != NULL, "no error description");
    } else {
        FUZZ_ASSERT(w->depth == 0, "accepted with open containers");
    }
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    writer a, b;
    tr_json_status st = parse((const char *)data, size, &a, 0);
    if (st == TR_JSON_OK) {
        tr_json_status again = parse(a.out.data ? a.out.data : "", a.out.len, &b, 0);
        FUZZ_ASSERT(again == TR_JSON_OK, "the canonical form does not parse");
        FUZZ_ASSERT(a.out.len == b.out.len && memcmp(a.out.data, b.out.data, a.out.len) == 0,
                    "the canonical form is not stable");
        tr_buf_free(&b.out);
        long calls = (long)(size % 7) + 1;
        writer c;
        tr_json_status stopped = parse((const char *)data, size, &c, calls);
        FUZZ_ASSERT(stopped == TR_JSON_OK || stopped == TR_JSON_STOPPED, "a stop is not reported");
        tr_buf_free(&c.out);
    }
    tr_buf_free(&a.out);

    /* The decimal fast path gives what strtod gives, to the bit, whenever it takes a text. */
    double fast;
    if (size < 64 && tr_decimal_fast((const char *)data, size, &fast)) {
        char text[64];
        memcpy(text, data, size);
        text[size] = '\0';
        double slow = strtod(text, NULL);
        FUZZ_ASSERT(memcmp(&fast, &slow, sizeof fast) == 0, "tr_decimal_fast differs from strtod");
    }
    return 0;
}
