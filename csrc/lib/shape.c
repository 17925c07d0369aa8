#include "shape.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fresh URLs asked after answers with the expired handle before that handle is taken as it is. */
#define TR_STALE_MAX 3

struct tr_shape {
    char *handle;
    char *offset; /* NULL means -1 */
    char *cursor;
    char *expired_handle;
    int live;
    unsigned attempts;
    unsigned idle;         /* idle answers in the current streak (see TR_SHAPE_HELD_S) */
    unsigned cache_buster; /* non-zero after a stale response: forces a fresh URL */
};

static char *dup_or_null(const char *s) {
    if (s == NULL) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) memcpy(p, s, n);
    return p;
}

/* Replace *slot with a copy of value; on allocation failure keep the old value. */
static int set_str(char **slot, const char *value) {
    char *copy = NULL;
    if (value != NULL && (copy = dup_or_null(value)) == NULL) return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

int tr_is_token(const char *s, size_t n) {
    if (n == 0 || n > TR_TOKEN_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) return 0;
    }
    return 1;
}

static int is_token(const char *s) {
    if (s == NULL) return 0;
    size_t n = 0;
    while (n <= TR_TOKEN_MAX && s[n] != '\0')
        n++;
    return tr_is_token(s, n);
}

tr_shape *tr_shape_new(void) { return calloc(1, sizeof(tr_shape)); }

tr_shape *tr_shape_clone(const tr_shape *s) {
    tr_shape *c = tr_shape_new();
    if (c == NULL) return NULL;
    *c = *s;
    c->handle = dup_or_null(s->handle);
    c->offset = dup_or_null(s->offset);
    c->cursor = dup_or_null(s->cursor);
    c->expired_handle = dup_or_null(s->expired_handle);
    if ((s->handle && !c->handle) || (s->offset && !c->offset) || (s->cursor && !c->cursor) ||
        (s->expired_handle && !c->expired_handle)) {
        tr_shape_free(c);
        return NULL;
    }
    return c;
}

void tr_shape_free(tr_shape *s) {
    if (s == NULL) return;
    free(s->handle);
    free(s->offset);
    free(s->cursor);
    free(s->expired_handle);
    free(s);
}

static void start_over(tr_shape *s) {
    free(s->offset);
    s->offset = NULL;
    free(s->cursor);
    s->cursor = NULL;
    s->live = 0;
}

int tr_shape_restore(tr_shape *s, const char *handle, const char *offset, const char *cursor) {
    int from_start = offset == NULL || strcmp(offset, "-1") == 0;
    if (!from_start && !is_token(handle)) return -1;
    if (!from_start && !is_token(offset)) return -1;
    if (handle != NULL && !is_token(handle)) return -1;
    if (cursor != NULL && *cursor != '\0' && !is_token(cursor)) return -1;
    if (set_str(&s->handle, handle) != 0) return -1;
    if (set_str(&s->offset, from_start ? NULL : offset) != 0) return -1;
    if (set_str(&s->cursor, cursor) != 0) return -1;
    /* A resumed subscription catches up with a non-live request before it long-polls. */
    s->live = 0;
    return 0;
}

int tr_url_encode(tr_buf *out, const char *s) { return tr_url_encode_n(out, s, strlen(s)); }

int tr_url_encode_n(tr_buf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    for (const char *end = s + n; s < end; s++) {
        unsigned char c = (unsigned char)*s;
        int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        if (plain) {
            if (tr_buf_addc(out, (char)c) != 0) return -1;
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (tr_buf_add(out, esc, 3) != 0) return -1;
        }
    }
    return 0;
}

static int cmp_param(const void *a, const void *b) {
    return strcmp(((const tr_param *)a)->key, ((const tr_param *)b)->key);
}

#define TR_MANAGED_MAX 7

int tr_shape_query(const tr_shape *s, const tr_param *extra, size_t n_extra, tr_buf *out) {
    if (n_extra > 64) return -1;
    tr_param all[64 + TR_MANAGED_MAX];
    size_t n = 0;
    char buster[16];
    for (size_t i = 0; i < n_extra; i++)
        all[n++] = extra[i];
    all[n++] = (tr_param){"offset", s->offset ? s->offset : "-1"};
    all[n++] = (tr_param){"log", "full"};
    if (s->handle) all[n++] = (tr_param){"handle", s->handle};
    if (s->live) {
        all[n++] = (tr_param){"live", "true"};
        all[n++] = (tr_param){"cursor", s->cursor ? s->cursor : ""};
    }
    if (s->expired_handle) all[n++] = (tr_param){"expired_handle", s->expired_handle};
    if (s->cache_buster) {
        snprintf(buster, sizeof buster, "%u", s->cache_buster);
        all[n++] = (tr_param){"cache-buster", buster};
    }
    qsort(all, n, sizeof all[0], cmp_param);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && tr_buf_addc(out, '&') != 0) return -1;
        if (tr_url_encode(out, all[i].key) != 0 || tr_buf_addc(out, '=') != 0 ||
            tr_url_encode(out, all[i].value) != 0)
            return -1;
    }
    return 0;
}

static tr_shape_verdict verdict(tr_shape_action a, const char *kind, const char *message) {
    tr_shape_verdict v = {a, kind, message, a == TR_SHAPE_RETRY ? TR_SHAPE_BACKOFF : TR_SHAPE_GO};
    return v;
}

/* Count an applied answer (APPLY or RESYNC) in the request budget (shape.h, TR_SHAPE_HELD_S):
 * idle_why says what made it idle (NULL: it was not); progress: it was a live answer that
 * brought something or was held. */
static tr_shape_verdict paced(tr_shape *s, tr_shape_verdict v, const char *idle_why, int progress) {
    if (idle_why != NULL) {
        if (s->idle < UINT_MAX) s->idle++;
        v.pace = s->idle > 1 ? TR_SHAPE_BACKOFF : TR_SHAPE_STREAK;
        v.kind = "protocol";
        v.message = idle_why;
    } else if (progress || s->idle == 0) {
        s->idle = 0;
        s->attempts = 0;
        v.pace = TR_SHAPE_GO;
    } else {
        v.pace = TR_SHAPE_STREAK; /* a page of a resync: the streak goes on */
    }
    return v;
}

/* Did the server hold this (live) request, as a long-poll with nothing to say does? */
static int was_held(const tr_shape_response *r) {
    return !(r->elapsed_s >= 0.0) || r->elapsed_s >= TR_SHAPE_HELD_S;
}

static int body_says_out_of_bounds(const char *body, size_t body_len) {
    static const char needle[] = "out of bounds";
    size_t k = sizeof needle - 1;
    if (body == NULL || body_len < k) return 0;
    for (size_t i = 0; i + k <= body_len; i++)
        if (memcmp(body + i, needle, k) == 0) return 1;
    return 0;
}

/* The shape was dropped or rotated: forget our place and remember the old handle so caches
 * along the way can tell the fresh responses from stale ones. Without a new handle the next
 * request names `<old>-next` (a URL no cache holds), or none once that would grow past a
 * plausible token (a server that keeps answering 409 without a handle). why: what said so. */
static tr_shape_verdict must_refetch(tr_shape *s, const char *new_handle, const char *why) {
    char *next = NULL;
    int wanted = 0;
    if (is_token(new_handle)) {
        wanted = 1;
        next = dup_or_null(new_handle);
    } else if (s->handle != NULL && strlen(s->handle) + sizeof "-next" <= TR_TOKEN_MAX) {
        size_t n = strlen(s->handle);
        wanted = 1;
        next = malloc(n + sizeof "-next");
        if (next != NULL) {
            memcpy(next, s->handle, n);
            memcpy(next + n, "-next", sizeof "-next");
        }
    }
    if (wanted && next == NULL)
        return verdict(TR_SHAPE_RETRY, "network", "out of memory while resyncing");
    free(s->expired_handle);
    s->expired_handle = s->handle;
    s->handle = next;
    start_over(s);
    return paced(s, verdict(TR_SHAPE_RESYNC, NULL, NULL), why, 0);
}

#define IDLE_LIVE "a live request answered at once with nothing new"

static tr_shape_verdict on_success(tr_shape *s, const tr_shape_response *r) {
    int asked_live = s->live;
    if (r->body_must_refetch)
        return must_refetch(s, NULL,
                            "the shape must be fetched again (must-refetch in a 2xx body)");
    if (r->status == 204) {
        /* Legacy "nothing new": we are up to date where we stand. */
        s->live = 1;
        int idle = asked_live && !was_held(r);
        return paced(s, verdict(TR_SHAPE_APPLY, NULL, NULL), idle ? IDLE_LIVE : NULL, asked_live);
    }
    if (r->handle == NULL || r->offset == NULL)
        return verdict(TR_SHAPE_FATAL, "protocol",
                       "the response has no electric-handle/electric-offset header "
                       "(is a proxy stripping electric-* headers?)");
    if (!is_token(r->handle) || !is_token(r->offset) ||
        (r->cursor != NULL && *r->cursor != '\0' && !is_token(r->cursor)))
        return verdict(TR_SHAPE_FATAL, "protocol", "malformed electric-* header value");
    if (s->expired_handle != NULL && strcmp(r->handle, s->expired_handle) == 0 && !r->no_store &&
        s->cache_buster < TR_STALE_MAX) {
        /* A cache answered with the shape we were told is gone: ask again with a fresh URL.
         * Not when the answer says no cache kept it (the native feed's single-run handles are
         * the same on every subscription, so after a backend flip the expired handle can
         * rightly come back), nor for ever. */
        s->cache_buster++;
        return verdict(TR_SHAPE_RETRY, "protocol",
                       "stale cached response for an expired shape handle");
    }
    /* Measured against the request before the answer is adopted. */
    const char *idle = NULL;
    int up_to_date = r->up_to_date || r->body_up_to_date;
    if (s->offset != NULL && s->handle != NULL && strcmp(r->handle, s->handle) != 0)
        idle = "an answer for another shape handle than the one asked for, without a 409";
    else if (asked_live && r->changes == 0 && !was_held(r))
        idle = IDLE_LIVE;
    else if (!asked_live && r->changes == 0 && !up_to_date &&
             strcmp(r->offset, s->offset ? s->offset : "-1") == 0)
        idle = "a non-live answer with nothing new, at the same offset and not up to date";
    if (set_str(&s->handle, r->handle) != 0 || set_str(&s->offset, r->offset) != 0)
        return verdict(TR_SHAPE_RETRY, "network", "out of memory");
    if (s->expired_handle != NULL && strcmp(r->handle, s->expired_handle) == 0) {
        free(s->expired_handle); /* taken as it is: no longer expired */
        s->expired_handle = NULL;
    }
    if (r->cursor != NULL && set_str(&s->cursor, r->cursor) != 0)
        return verdict(TR_SHAPE_RETRY, "network", "out of memory");
    if (up_to_date) s->live = 1;
    s->cache_buster = 0;
    return paced(s, verdict(TR_SHAPE_APPLY, NULL, NULL), idle, asked_live);
}

tr_shape_verdict tr_status_verdict(int st, const char *body, size_t body_len) {
    if (st == 200 || st == 204) return verdict(TR_SHAPE_APPLY, NULL, NULL);
    if (st == 409)
        return verdict(TR_SHAPE_RESYNC, "protocol",
                       "the shape must be fetched again (409 must-refetch)");
    if (st == 400 && body_says_out_of_bounds(body, body_len))
        return verdict(TR_SHAPE_RESYNC, "protocol",
                       "the shape must be fetched again (400 offset out of bounds)");
    if (st == 400) return verdict(TR_SHAPE_FATAL, "bad_request", "the server refused the request");
    if (st == 401) return verdict(TR_SHAPE_FATAL, "auth", "the access token was not accepted");
    if (st == 403)
        return verdict(TR_SHAPE_FATAL, "forbidden", "the access token does not allow this");
    if (st == 404) return verdict(TR_SHAPE_FATAL, "not_found", "not found");
    if (st == 429) return verdict(TR_SHAPE_RETRY, "rate_limited", "too many requests");
    if (st == 408 || (st >= 500 && st <= 599))
        return verdict(TR_SHAPE_RETRY, "network", "the server had a transient failure");
    if (st >= 300 && st <= 399)
        return verdict(TR_SHAPE_FATAL, "protocol",
                       "unexpected redirect (redirects are not followed so the token stays "
                       "with its host)");
    return verdict(TR_SHAPE_FATAL, "protocol", "unexpected HTTP status");
}

tr_shape_verdict tr_shape_on_response(tr_shape *s, const tr_shape_response *r) {
    tr_shape_verdict v = tr_status_verdict(r->status, r->body, r->body_len);
    if (v.action == TR_SHAPE_APPLY) return on_success(s, r);
    if (v.action == TR_SHAPE_RESYNC) return must_refetch(s, r->handle, v.message);
    return v;
}

void tr_shape_interrupted(tr_shape *s) { s->live = 0; }

static int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Step back over white space and one expected byte; returns the new end, or 0 on mismatch. */
static size_t back_over(const char *b, size_t end, char expected) {
    while (end > 0 && is_json_space(b[end - 1]))
        end--;
    if (end == 0 || b[end - 1] != expected) return 0;
    return end - 1;
}

int tr_shape_body_ends_up_to_date(const char *body, size_t len) {
    /* The body is a JSON array whose last element is {"headers":{"control":"up-to-date", ...}}:
     * step back over "]}}" and look for the control value within the last message's tail. */
    static const char needle[] = "\"up-to-date\"";
    const size_t k = sizeof needle - 1;
    size_t end = back_over(body, len, ']');
    if (end) end = back_over(body, end, '}');
    if (end) end = back_over(body, end, '}');
    if (end == 0) return 0;
    size_t start = end > 160 ? end - 160 : 0; /* Electric adds global_last_seen_lsn after it */
    for (size_t i = end; i >= start + k; i--) {
        if (memcmp(body + i - k, needle, k) == 0) {
            /* ... "control" : "up-to-date": the key before the value. */
            size_t j = back_over(body, i - k, ':');
            static const char key[] = "\"control\"";
            const size_t kk = sizeof key - 1;
            while (j > 0 && is_json_space(body[j - 1]))
                j--;
            return j >= kk && memcmp(body + j - kk, key, kk) == 0;
        }
        if (body[i - 1] == '{') return 0; /* left the last message's innermost object */
    }
    return 0;
}

double tr_backoff_delay(unsigned attempts, double base_s, double cap_s, double retry_after_s,
                        double unit_random) {
    /* Whatever comes in (NaN, infinities, negatives), the delay is a finite number of seconds
     * >= 0: callers turn it into integer milliseconds. */
    if (!(cap_s >= 0.0) || cap_s > TR_SHAPE_MAX_DELAY) cap_s = cap_s > 0 ? TR_SHAPE_MAX_DELAY : 0;
    if (!(base_s >= 0.0)) base_s = 0;
    double ceiling = base_s * ldexp(1.0, attempts > 60 ? 60 : (int)attempts);
    if (!(ceiling <= cap_s)) ceiling = cap_s; /* also catches NaN (0 * inf) */
    if (!(unit_random >= 0.0 && unit_random < 1.0)) unit_random = 0.5;
    double delay = ceiling * unit_random;
    if (retry_after_s > delay) delay = retry_after_s; /* never NaN */
    if (delay > TR_SHAPE_MAX_DELAY) delay = TR_SHAPE_MAX_DELAY;
    return delay;
}

double tr_shape_backoff(tr_shape *s, double base_s, double cap_s, double retry_after_s,
                        double unit_random) {
    double delay = tr_backoff_delay(s->attempts, base_s, cap_s, retry_after_s, unit_random);
    s->attempts++;
    return delay;
}

const char *tr_shape_handle(const tr_shape *s) { return s->handle; }
const char *tr_shape_offset(const tr_shape *s) { return s->offset ? s->offset : "-1"; }
const char *tr_shape_cursor(const tr_shape *s) { return s->cursor; }
int tr_shape_live(const tr_shape *s) { return s->live; }
unsigned tr_shape_attempts(const tr_shape *s) { return s->attempts; }
unsigned tr_shape_idle(const tr_shape *s) { return s->idle; }
