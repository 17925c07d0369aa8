/* libFuzzer target: the shape-log state machine (csrc/lib/shape.c).
 *
 * The input is a script of lines, so that seeds can be real-looking exchanges:
 *
 *   HTTP 200                      a response: status, then header lines up to an empty line,
 *   electric-handle: 123-456      then the body up to a line "--" (or the end of the input);
 *   electric-offset: 0_0          it goes through tr_shape_on_response
 *   electric-up-to-date: true
 *
 *   [{"headers":{"control":"up-to-date"}}]
 *   --
 *   Q tags=user:1&createdAt=1h    build the next query with these extra parameters
 *   R handle offset cursor        tr_shape_restore; "-" (or a missing field) is NULL
 *   B base cap retry_after unit   tr_shape_backoff with these numbers
 *   N                             start over with a new state
 *
 * Header names are matched without regard to case; a repeated header's last value wins (as
 * the curl binding does). After every step the state's invariants are checked, and the query
 * it would send next is built and checked: only unreserved characters, %XX escapes and the
 * separators, keys in sorted order, offset and log always present, live/cursor when live. */
#define _GNU_SOURCE /* memmem, strdup */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_assert.h"
#include "lib/shape.h"

typedef struct cursor {
    const char *p;
    size_t n, i;
} cursor;

/* The next line (without its "\n" or "\r\n"); returns 0 at the end of the input. */
static int next_line(cursor *c, const char **line, size_t *len) {
    if (c->i >= c->n) return 0;
    const char *start = c->p + c->i;
    const char *nl = memchr(start, '\n', c->n - c->i);
    size_t l = nl ? (size_t)(nl - start) : c->n - c->i;
    c->i += l + (nl ? 1 : 0);
    if (l > 0 && start[l - 1] == '\r') l--;
    *line = start;
    *len = l;
    return 1;
}

/* A heap copy with a NUL at [n] and nothing after it (so ASan sees any over-read). A NUL inside
 * the bytes ends the C string early, as it would for a real header value. */
static char *copy(const char *s, size_t n) {
    char *p = malloc(n + 1);
    FUZZ_ASSERT(p != NULL, "out of memory");
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int is_token(const char *s) {
    if (s == NULL || *s == '\0') return 0;
    for (size_t n = 0; s[n]; n++)
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f || n >= 512) return 0;
    return 1;
}

static int ieq_prefix(const char *s, size_t n, const char *lit) {
    size_t k = strlen(lit);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != lit[i]) return 0;
    }
    return 1;
}

static void check_state(const tr_shape *s) {
    const char *h = tr_shape_handle(s), *o = tr_shape_offset(s), *c = tr_shape_cursor(s);
    FUZZ_ASSERT(o != NULL, "offset is never NULL");
    FUZZ_ASSERT(strcmp(o, "-1") == 0 || is_token(o), "offset is -1 or a token");
    FUZZ_ASSERT(h == NULL || is_token(h), "handle is NULL or a token");
    FUZZ_ASSERT(c == NULL || *c == '\0' || is_token(c), "cursor is NULL, empty or a token");
    FUZZ_ASSERT(!(strcmp(o, "-1") != 0 && h == NULL), "an offset always comes with a handle");
}

static int unhex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode one percent-encoded key (up to '=') into out; returns its encoded length. */
static size_t decode_key(const char *q, size_t n, tr_buf *out) {
    size_t i = 0;
    tr_buf_reset(out);
    while (i < n && q[i] != '=') {
        char c = q[i];
        if (c == '%') {
            FUZZ_ASSERT(i + 2 < n && unhex(q[i + 1]) >= 0 && unhex(q[i + 2]) >= 0,
                        "a % escape has two upper-case hex digits");
            c = (char)(unhex(q[i + 1]) * 16 + unhex(q[i + 2]));
            i += 2;
        }
        FUZZ_ASSERT(tr_buf_addc(out, c) == 0, "out of memory");
        i++;
    }
    return i;
}

static void check_query(const tr_shape *s, const tr_param *extra, size_t n_extra) {
    tr_buf q, key, prev;
    tr_buf_init(&q);
    tr_buf_init(&key);
    tr_buf_init(&prev);
    int rc = tr_shape_query(s, extra, n_extra, &q);
    if (n_extra > 64) {
        FUZZ_ASSERT(rc == -1, "more than 64 extra parameters are refused");
        tr_buf_free(&q);
        return;
    }
    FUZZ_ASSERT(rc == 0, "the query is built");
    size_t n = q.len;
    const char *d = q.data ? q.data : "";
    size_t amps = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~' || c == '%' || c == '=' || c == '&';
        FUZZ_ASSERT(ok, "the query holds only unreserved characters, escapes and separators");
        if (c == '&') amps++;
    }
    /* Every parameter is key=value; keys come out sorted (byte order of the raw keys). */
    size_t i = 0, params = 0;
    int has_prev = 0;
    while (i < n) {
        size_t k = decode_key(d + i, n - i, &key);
        FUZZ_ASSERT(i + k < n && d[i + k] == '=', "every parameter has a '='");
        const char *kc = tr_buf_cstr(&key);
        FUZZ_ASSERT(kc != NULL, "out of memory");
        if (has_prev)
            FUZZ_ASSERT(strcmp(tr_buf_cstr(&prev), kc) <= 0, "parameters are sorted by key");
        tr_buf_reset(&prev);
        FUZZ_ASSERT(tr_buf_add(&prev, key.data ? key.data : "", key.len) == 0, "out of memory");
        has_prev = 1;
        params++;
        const char *amp = memchr(d + i, '&', n - i);
        i = amp ? (size_t)(amp - d) + 1 : n;
    }
    FUZZ_ASSERT(params == amps + (n > 0), "one '&' between parameters");
    FUZZ_ASSERT(memmem(d, n, "log=full", 8) != NULL, "log=full is always sent");
    FUZZ_ASSERT(memmem(d, n, "offset=", 7) != NULL, "an offset is always sent");
    if (tr_shape_live(s)) FUZZ_ASSERT(memmem(d, n, "live=true", 9) != NULL, "live is sent");
    tr_buf_free(&q);
    tr_buf_free(&key);
    tr_buf_free(&prev);
}

/* "Q k=v&k2=v2": extra parameters (raw: not percent-decoded), at most 70. */
static void op_query(const tr_shape *s, const char *line, size_t len) {
    tr_param extra[70];
    char *owned[140];
    size_t n = 0, n_owned = 0, i = 0;
    while (i < len && n < 70) {
        const char *amp = memchr(line + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - line) : len;
        const char *eq = memchr(line + i, '=', end - i);
        size_t kend = eq ? (size_t)(eq - line) : end;
        char *k = copy(line + i, kend - i);
        char *v = eq ? copy(eq + 1, end - kend - 1) : copy("", 0);
        owned[n_owned++] = k;
        owned[n_owned++] = v;
        extra[n].key = k;
        extra[n].value = v;
        n++;
        i = end + 1;
    }
    check_query(s, extra, n);
    for (size_t k = 0; k < n_owned; k++)
        free(owned[k]);
}

/* Up to three space-separated fields; "-" or missing is NULL. */
static void op_restore(tr_shape *s, const char *line, size_t len) {
    char *f[3] = {NULL, NULL, NULL};
    size_t i = 0;
    for (int k = 0; k < 3 && i <= len; k++) {
        const char *sp = memchr(line + i, ' ', len - i);
        size_t end = sp ? (size_t)(sp - line) : len;
        if (!(end - i == 1 && line[i] == '-')) f[k] = copy(line + i, end - i);
        i = end + 1;
        if (!sp) break;
    }
    char *before_h = tr_shape_handle(s) ? strdup(tr_shape_handle(s)) : NULL;
    char *before_o = strdup(tr_shape_offset(s));
    int rc = tr_shape_restore(s, f[0], f[1], f[2]);
    if (rc == 0) {
        FUZZ_ASSERT(!tr_shape_live(s), "a restored state catches up before going live");
        if (f[1] != NULL && strcmp(f[1], "-1") != 0)
            FUZZ_ASSERT(strcmp(tr_shape_offset(s), f[1]) == 0, "restore adopts the offset");
        if (f[0] != NULL)
            FUZZ_ASSERT(strcmp(tr_shape_handle(s), f[0]) == 0, "restore adopts the handle");
    } else {
        /* bad input is refused before anything changes (no allocation fails here) */
        FUZZ_ASSERT((before_h == NULL) == (tr_shape_handle(s) == NULL) &&
                        (before_h == NULL || strcmp(before_h, tr_shape_handle(s)) == 0),
                    "a refused restore keeps the handle");
        FUZZ_ASSERT(strcmp(before_o, tr_shape_offset(s)) == 0,
                    "a refused restore keeps the offset");
    }
    free(before_h);
    free(before_o);
    for (int k = 0; k < 3; k++)
        free(f[k]);
}

static void op_backoff(tr_shape *s, const char *line, size_t len) {
    char *text = copy(line, len);
    double v[4] = {1, 32, 0, 0.5};
    char *p = text;
    for (int k = 0; k < 4; k++) {
        char *end;
        double d = strtod(p, &end);
        if (end == p) break;
        v[k] = d;
        p = end;
    }
    free(text);
    unsigned before = tr_shape_attempts(s);
    double d = tr_shape_backoff(s, v[0], v[1], v[2], v[3]);
    FUZZ_ASSERT(tr_shape_attempts(s) == before + 1, "each backoff counts one attempt");
    int sane =
        isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]) && v[0] >= 0 && v[1] >= 0 && v[2] >= 0;
    if (sane) {
        /* Retry-After is a floor up to the core's own ceiling (TR_SHAPE_MAX_DELAY, a day). */
        double floor_s = v[2] < TR_SHAPE_MAX_DELAY ? v[2] : TR_SHAPE_MAX_DELAY;
        FUZZ_ASSERT(d >= 0 && d >= floor_s, "the delay is never below Retry-After (capped)");
        FUZZ_ASSERT(d <= (v[1] > v[2] ? v[1] : v[2]), "the delay stays under the cap");
        FUZZ_ASSERT(d <= TR_SHAPE_MAX_DELAY, "the delay is never above a day");
    }
}

static void op_response(tr_shape *s, cursor *c, const char *status_line, size_t status_len) {
    char *st = copy(status_line, status_len);
    long status = strtol(st, NULL, 10);
    free(st);
    if (status > 100000 || status < -100000) status = 0;
    char *handle = NULL, *offset = NULL, *cur = NULL;
    int up_to_date = 0;
    const char *line;
    size_t len;
    while (next_line(c, &line, &len) && len > 0) {
        const char *colon = memchr(line, ':', len);
        if (colon == NULL) continue;
        size_t nlen = (size_t)(colon - line);
        size_t v = nlen + 1;
        while (v < len && (line[v] == ' ' || line[v] == '\t'))
            v++;
        char **slot = NULL;
        if (nlen == 15 && ieq_prefix(line, nlen, "electric-handle"))
            slot = &handle;
        else if (nlen == 15 && ieq_prefix(line, nlen, "electric-offset"))
            slot = &offset;
        else if (nlen == 15 && ieq_prefix(line, nlen, "electric-cursor"))
            slot = &cur;
        else if (nlen == 19 && ieq_prefix(line, nlen, "electric-up-to-date"))
            up_to_date = 1;
        if (slot) {
            free(*slot);
            *slot = copy(line + v, len - v);
        }
    }
    /* the body: up to a line "--" */
    size_t body_start = c->i, body_end = c->n;
    while (next_line(c, &line, &len)) {
        if (len == 2 && line[0] == '-' && line[1] == '-') {
            body_end = (size_t)(line - c->p);
            break;
        }
    }
    size_t body_len = body_end > body_start ? body_end - body_start : 0;
    char *body = body_len ? malloc(body_len) : NULL; /* exactly sized, no terminator */
    if (body_len) memcpy(body, c->p + body_start, body_len);

    tr_shape_response r;
    memset(&r, 0, sizeof r);
    r.status = (int)status;
    r.handle = handle;
    r.offset = offset;
    r.cursor = cur;
    r.up_to_date = up_to_date;
    r.body = body;
    r.body_len = body_len;
    int was_live = tr_shape_live(s);
    tr_shape_verdict v = tr_shape_on_response(s, &r);
    FUZZ_ASSERT(v.action >= TR_SHAPE_APPLY && v.action <= TR_SHAPE_FATAL, "a known action");
    if (v.action == TR_SHAPE_RETRY || v.action == TR_SHAPE_FATAL)
        FUZZ_ASSERT(v.kind != NULL && v.message != NULL, "failures say what kind and why");
    /* Inputs are small: no allocation fails here, so no verdict may blame memory. */
    FUZZ_ASSERT(v.message == NULL || strstr(v.message, "out of memory") == NULL,
                "no out-of-memory verdict when memory did not run out");
    if (v.action == TR_SHAPE_APPLY) {
        FUZZ_ASSERT(status == 200 || status == 204, "only 200 and 204 apply");
        /* the request budget (shape.h): an answer that ends every streak resets the attempts;
         * one inside a streak of idle answers keeps them, and the streak is counted */
        if (v.pace == TR_SHAPE_GO)
            FUZZ_ASSERT(tr_shape_attempts(s) == 0 && tr_shape_idle(s) == 0,
                        "an answer that ends every streak resets the attempts");
        else
            FUZZ_ASSERT(tr_shape_idle(s) > 0, "an answer inside a streak keeps it counted");
        if (status == 200) {
            FUZZ_ASSERT(strcmp(tr_shape_handle(s), handle) == 0, "200 adopts the handle");
            FUZZ_ASSERT(strcmp(tr_shape_offset(s), offset) == 0, "200 adopts the offset");
            FUZZ_ASSERT(tr_shape_live(s) == (was_live || up_to_date), "live once up to date");
        } else {
            FUZZ_ASSERT(tr_shape_live(s), "204 means up to date");
        }
    }
    if (v.action == TR_SHAPE_RESYNC) {
        FUZZ_ASSERT(status == 409 || status == 400, "only 409 (or 400 out of bounds) resyncs");
        FUZZ_ASSERT(strcmp(tr_shape_offset(s), "-1") == 0 && !tr_shape_live(s),
                    "a resync starts over from -1");
    }
    free(handle);
    free(offset);
    free(cur);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cursor c = {(const char *)data, size, 0};
    tr_shape *s = tr_shape_new();
    FUZZ_ASSERT(s != NULL, "out of memory");
    const char *line;
    size_t len;
    int steps = 0;
    while (next_line(&c, &line, &len) && steps++ < 256) {
        if (len >= 5 && memcmp(line, "HTTP ", 5) == 0) {
            op_response(s, &c, line + 5, len - 5);
        } else if (len >= 2 && line[0] == 'Q' && line[1] == ' ') {
            op_query(s, line + 2, len - 2);
        } else if (len >= 1 && line[0] == 'R' && (len == 1 || line[1] == ' ')) {
            op_restore(s, line + (len > 1 ? 2 : 1), len > 1 ? len - 2 : 0);
        } else if (len >= 2 && line[0] == 'B' && line[1] == ' ') {
            op_backoff(s, line + 2, len - 2);
        } else if (len == 1 && line[0] == 'N') {
            tr_shape_free(s);
            s = tr_shape_new();
            FUZZ_ASSERT(s != NULL, "out of memory");
        } else {
            continue;
        }
        check_state(s);
        check_query(s, NULL, 0);
    }
    tr_shape_free(s);
    return 0;
}
