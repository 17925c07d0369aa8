/* A sans-I/O Server-Sent Events parser (no Lua, no sockets), and the S2 `batch` payload
 * that Trigger.dev's v2 realtime streams carry in their events.
 *
 * SSE, as the WHATWG HTML standard ("Server-sent events", section 9.2.6) parses it: feed the
 * body bytes as they come, split anywhere; every call returns at the first complete event (or
 * comment) so the caller reads it before feeding the rest:
 *
 *     tr_sse *p = tr_sse_new(NULL);
 *     while (len > 0) {
 *         size_t used;
 *         tr_sse_state st = tr_sse_feed(p, data, len, &used);
 *         data += used, len -= used;
 *         if (st == TR_SSE_EVENT) handle(tr_sse_event(p));
 *         else if (st == TR_SSE_ERROR) break;               // tr_sse_error_of(p) says why
 *     }
 *     ...at EOF: tr_sse_finish(p)  (an unfinished event is dropped, as the standard says)
 *
 * Lines end with CRLF, LF or CR (a CRLF split between two feeds is one line end). One UTF-8
 * BOM at the very start is skipped. `field: value` lines: one space after the colon is
 * dropped; a line without a colon is a field with an empty value; a line starting with a colon
 * is a comment. `data` lines are joined with LF; `event` names the type ("message" when
 * absent); `id` sets the last event id, which persists from event to event (an id containing
 * NUL is ignored); `retry` (ASCII digits only) sets the reconnection time; other fields are
 * ignored. A blank line dispatches the event; an event without any data line is not dispatched
 * (its id still counts). The bytes are not checked for UTF-8 (the caller may).
 *
 * Robustness: no recursion; memory is bounded by the limits (one line, one event's data and
 * type); every length is checked; the first error is sticky. */
#ifndef TR_SSE_H
#define TR_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum tr_sse_state {
    TR_SSE_MORE = 0,  /* all input consumed, no event complete: feed more */
    TR_SSE_EVENT = 1, /* an event (or a comment) is complete: read it, then feed the rest */
    TR_SSE_ERROR = 2  /* failed: see tr_sse_error_of */
} tr_sse_state;

typedef enum tr_sse_error {
    TR_SSE_OK = 0,
    TR_SSE_E_LINE_TOO_LONG,   /* a line longer than max_line */
    TR_SSE_E_EVENT_TOO_LARGE, /* an event's data (and type) longer than max_event */
    TR_SSE_E_NOMEM            /* out of memory */
} tr_sse_error;

typedef struct tr_sse_limits {
    size_t max_line;  /* bytes of one line without its end, default 4 MiB */
    size_t max_event; /* bytes of one event's data plus its type, default 8 MiB */
    int comments;     /* 1: comment lines are reported as events of kind TR_SSE_COMMENT */
} tr_sse_limits;

#define TR_SSE_DEFAULT_MAX_LINE ((size_t)4 * 1024 * 1024)
#define TR_SSE_DEFAULT_MAX_EVENT ((size_t)8 * 1024 * 1024)

typedef enum tr_sse_kind { TR_SSE_KIND_EVENT = 0, TR_SSE_KIND_COMMENT = 1 } tr_sse_kind;

/* What tr_sse_event returns; the pointers stay valid until the next feed/finish/free. */
typedef struct tr_sse_ev {
    tr_sse_kind kind;
    const char *type; /* the event type ("message" by default); for a comment, "" */
    size_t type_len;
    const char *data; /* the data lines joined by LF; for a comment, its text */
    size_t data_len;
    const char *id; /* the last event id when the event was dispatched ("" if none) */
    size_t id_len;
    int has_id; /* 1 once any id field was seen on this stream */
} tr_sse_ev;

typedef struct tr_sse tr_sse;

/* NULL limits: the defaults. Returns NULL when memory runs out. */
tr_sse *tr_sse_new(const tr_sse_limits *limits);
void tr_sse_free(tr_sse *p);

/* Parse up to len bytes, stopping right after the line that completes an event. *consumed
 * (may be NULL) is how many were used. After an error nothing more is consumed. */
tr_sse_state tr_sse_feed(tr_sse *p, const char *data, size_t len, size_t *consumed);

/* The end of the stream. Returns how many bytes of an unfinished event (a partial line, or
 * lines without their blank line) were dropped: 0 when the stream ended cleanly between
 * events. The parser is then ready for a new stream (the last event id is kept, as a
 * reconnecting EventSource keeps it; the BOM is looked for again). */
size_t tr_sse_finish(tr_sse *p);

/* The event just completed (after TR_SSE_EVENT). */
const tr_sse_ev *tr_sse_event(const tr_sse *p);

tr_sse_error tr_sse_error_of(const tr_sse *p);
/* Byte offset in the stream (since tr_sse_new) where the error was found. */
size_t tr_sse_error_offset(const tr_sse *p);
const char *tr_sse_error_name(tr_sse_error e);
const char *tr_sse_error_message(tr_sse_error e);

/* The last `retry` value in milliseconds, or -1 when none came. */
int64_t tr_sse_retry(const tr_sse *p);
/* The last event id (*len set), "" when none. */
const char *tr_sse_last_id(const tr_sse *p, size_t *len);

/* ---------------------------------------------------------------------------------------- */
/* The S2 `batch` payload (and a `ping`'s): {"records":[{"seq_num":N,"timestamp":T,
 * "headers":[["name","value"],...],"body":"..."},...],"tail":{"seq_num":N,"timestamp":T}}.
 * Unknown keys are skipped; `headers` and `body` may be absent (empty). */

typedef enum tr_s2_kind {
    TR_S2_DATA = 0,    /* an ordinary record (no headers, or headers that mean nothing to us) */
    TR_S2_COMMAND = 1, /* an S2 command record (trim, fence): its first header's name is empty */
    TR_S2_CONTROL = 2  /* a Trigger.dev control record: a `trigger-control` header */
} tr_s2_kind;

typedef struct tr_s2_record {
    int64_t seq_num;
    int64_t timestamp; /* -1 when absent */
    tr_s2_kind kind;
    size_t body, body_len; /* the body (unescaped), an offset into the batch's bodies */
} tr_s2_record;

typedef struct tr_s2_batch {
    tr_s2_record *records;
    size_t n, cap;
    tr_buf bodies;
    int has_tail;
    int64_t tail_seq_num, tail_timestamp; /* tail_timestamp -1 when absent */
    int64_t timestamp;                    /* a ping's top-level timestamp, -1 when absent */
} tr_s2_batch;

void tr_s2_batch_init(tr_s2_batch *b);
void tr_s2_batch_free(tr_s2_batch *b);
/* Parse one payload into b (which is reset first). Returns 0, or -1 with a description in
 * err (at most err_len bytes) when the text is not such a payload: not JSON, not an object,
 * `records` not an array of objects, a record without a whole `seq_num` >= 0, a `body` that is
 * not a string, a header that is not a pair of strings, a `tail` without `seq_num`. */
int tr_s2_batch_parse(tr_s2_batch *b, const char *s, size_t n, char *err, size_t err_len);

#endif
