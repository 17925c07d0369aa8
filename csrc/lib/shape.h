/* The Electric shape-log protocol as a pure state machine (no I/O, no Lua).
 *
 * The caller asks which query to send next, performs the request however it likes
 * (libcurl, nginx cosockets, a test harness), and reports the response; the state
 * machine says what the response means. */
#ifndef TR_SHAPE_H
#define TR_SHAPE_H

#include <stddef.h>

#include "buf.h"

typedef enum tr_shape_action {
    TR_SHAPE_APPLY,  /* 2xx: apply the body's messages (204: nothing to apply) */
    TR_SHAPE_RESYNC, /* the shape is gone: drop every row and start again from offset -1 */
    TR_SHAPE_RETRY,  /* a transient failure: send the same request again after a backoff */
    TR_SHAPE_FATAL   /* the subscription cannot go on */
} tr_shape_action;

typedef struct tr_shape_response {
    int status;
    const char *handle;  /* electric-handle, or NULL when absent */
    const char *offset;  /* electric-offset */
    const char *cursor;  /* electric-cursor */
    int up_to_date;      /* electric-up-to-date present */
    int body_up_to_date; /* the body ended with an up-to-date control message (the native
                            runs feed says it only there, never in a header) */
    int no_store;        /* cache-control says no-store: no cache kept this answer */
    const char *body;    /* read only for the 400 "offset out of bounds" case */
    size_t body_len;
    int body_must_refetch; /* a 2xx body holds a must-refetch control message */
    unsigned changes;      /* change messages (insert, update, delete) the body holds */
    double elapsed_s;      /* seconds from sending the request to this answer; < 0: unknown */
} tr_shape_response;

/* The request budget (what keeps a hostile or broken server from getting a request storm out
 * of one subscription). Every answer is one of:
 *  - progress: a live answer with changes, or one the server held (a long-poll that ran out,
 *    TR_SHAPE_HELD_S or more): any streak is over, the next request goes at once;
 *  - neutral: a non-live answer that moves the position (a page of a sync, a catch-up);
 *  - idle: nothing moved. A resync (409, 400 "out of bounds", a must-refetch body), a live
 *    answer in under TR_SHAPE_HELD_S without changes (204, a bare up-to-date, []), an answer
 *    that continues another shape than the one asked for without a 409 (a new handle), a
 *    non-live answer at the same offset that is not up to date.
 * Idle answers in a row (neutral ones between them do not break the row) make a streak: the
 * first is free, every later one backs off (tr_shape_backoff, the same policy as a transient
 * failure: exponential with full jitter, growing with the failures of the streak). */
#define TR_SHAPE_HELD_S 0.25

typedef enum tr_shape_pace {
    TR_SHAPE_GO,     /* progress, or neutral outside a streak: no streak (any failure streak
                        is over too) */
    TR_SHAPE_STREAK, /* inside a streak of idle answers, no wait needed (its first answer, or a
                        neutral one) */
    TR_SHAPE_BACKOFF /* another idle answer of a streak: back off before the next request */
} tr_shape_pace;

typedef struct tr_shape_verdict {
    tr_shape_action action;
    const char *kind;    /* error kind for RETRY/FATAL: "network", "protocol", "auth", ... */
    const char *message; /* static text explaining the verdict, NULL for APPLY; for an idle
                            answer, what made it idle */
    tr_shape_pace pace;  /* for APPLY and RESYNC (RETRY always backs off, FATAL ends) */
} tr_shape_verdict;

typedef struct tr_param {
    const char *key;
    const char *value;
} tr_param;

typedef struct tr_shape tr_shape;

tr_shape *tr_shape_new(void);
void tr_shape_free(tr_shape *s);

/* An independent copy (NULL when memory runs out): what-if questions such as "which request
 * would follow this response" without touching the real state. */
tr_shape *tr_shape_clone(const tr_shape *s);

/* Header values longer than this are not plausible tokens. */
#define TR_TOKEN_MAX 512

/* Is s[0..n) a value the server may have us send back in a request header (electric-handle,
 * -offset, -cursor; a stream's Last-Event-ID): 1 to TR_TOKEN_MAX bytes of visible ASCII
 * (0x21-0x7E: no space, control byte or DEL, so nothing can be injected into the request). */
int tr_is_token(const char *s, size_t n);

/* Resume from a saved position; NULL handle/offset mean "from the start". Returns 0, or -1 on
 * bad input (offset without handle, or a value that is not a plain token) or no memory. */
int tr_shape_restore(tr_shape *s, const char *handle, const char *offset, const char *cursor);

/* The query string of the next request: the caller's own parameters plus the ones the
 * protocol manages, sorted by key and percent-encoded so URLs are stable for caches.
 * Returns 0, or -1 when memory runs out. */
int tr_shape_query(const tr_shape *s, const tr_param *extra, size_t n_extra, tr_buf *out);

/* What an HTTP status means, before any state is looked at (the one table of statuses, which
 * tr_shape_on_response starts from and single requests use alone): APPLY for 200/204 (the
 * body is to be read), RESYNC for 409 and for a 400 whose body says "out of bounds" (kind
 * "protocol", message why), RETRY or FATAL with the error kind and a static message for the
 * rest. body may be NULL (then a 400 is "bad_request"). */
tr_shape_verdict tr_status_verdict(int status, const char *body, size_t body_len);

/* What a response means; adopts handle/offset/cursor on success. */
tr_shape_verdict tr_shape_on_response(tr_shape *s, const tr_shape_response *r);

/* A request failed without a usable answer (network error, a body cut short or not valid):
 * the next request is non-live with the same handle and offset. A live response lost in
 * transit may hold rows that the server already counts as delivered (the native feed marks
 * them before sending), so asking the same live question again could miss them for good;
 * a non-live request is a catch-up on Electric and a full re-snapshot on native. */
void tr_shape_interrupted(tr_shape *s);

/* Does a shape-log body end with an up-to-date control message? A cheap look at its tail,
 * made before the body is decoded (to decide whether to ask for the next page early); the
 * decoded messages remain the authority. */
int tr_shape_body_ends_up_to_date(const char *body, size_t len);

/* Seconds to wait before retrying: exponential backoff with full jitter (unit_random in
 * [0,1)), never below retry_after. Each call counts one more attempt; a response that makes
 * progress resets the count (a neutral one too, outside a streak of idle answers). Always finite,
 * in [0, TR_SHAPE_MAX_DELAY]: NaN or negative inputs count as 0 (a NaN unit_random as 0.5),
 * infinite ones as TR_SHAPE_MAX_DELAY. */
#define TR_SHAPE_MAX_DELAY 86400.0
double tr_shape_backoff(tr_shape *s, double base_s, double cap_s, double retry_after_s,
                        double unit_random);
/* The same delay for the attempts-th retry (0 for the first) of anything else the library
 * retries (stream reads, management calls): the one backoff formula. */
double tr_backoff_delay(unsigned attempts, double base_s, double cap_s, double retry_after_s,
                        double unit_random);

const char *tr_shape_handle(const tr_shape *s);
const char *tr_shape_offset(const tr_shape *s);
const char *tr_shape_cursor(const tr_shape *s);
int tr_shape_live(const tr_shape *s);
unsigned tr_shape_attempts(const tr_shape *s);
/* Idle answers in the current streak (0: none). */
unsigned tr_shape_idle(const tr_shape *s);

/* Percent-encode everything but RFC 3986 unreserved characters: the C string s, or the n
 * bytes at s (a NUL among them as %00). */
int tr_url_encode(tr_buf *out, const char *s);
int tr_url_encode_n(tr_buf *out, const char *s, size_t n);

#endif
