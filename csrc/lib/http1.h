/* A sans-I/O HTTP/1.1 *response* parser (no Lua, no sockets).
 *
 * Feed it the bytes a connection delivers, split anywhere (one byte at a time works), and
 * tell it when the peer closed the connection. It keeps the status, the header fields (names
 * lower-cased, values without surrounding whitespace) and the body, de-chunked:
 *
 *     tr_h1 *p = tr_h1_new(NULL, 0);
 *     while (tr_h1_state(p) == TR_H1_MORE) {
 *         n = read(fd, buf, sizeof buf);
 *         if (n > 0) tr_h1_feed(p, buf, n, &used);   // bytes past `used` are not ours
 *         else tr_h1_finish(p);                      // EOF
 *     }
 *
 * Body framing follows RFC 9112 section 6.3: no body for HEAD requests, 1xx, 204 and 304;
 * Transfer-Encoding: chunked (chunk extensions skipped, trailer fields kept apart);
 * Content-Length (repeated or listed values must agree); otherwise the body runs until the
 * connection closes. Interim 1xx responses (100 Continue, 103 Early Hints) are skipped.
 *
 * Robustness: no recursion; memory is bounded by the limits (header bytes, header count,
 * body size; the body buffer may hold up to twice max_body while growing); every length is
 * checked before use; the first error is sticky. */
#ifndef TR_HTTP1_H
#define TR_HTTP1_H

#include <stddef.h>

/* Where a parser stands. */
typedef enum tr_h1_state {
    TR_H1_MORE = 0, /* needs more bytes (or tr_h1_finish at EOF) */
    TR_H1_DONE = 1, /* the response is complete */
    TR_H1_ERROR = 2 /* failed: see tr_h1_error */
} tr_h1_state;

typedef enum tr_h1_error {
    TR_H1_OK = 0,
    TR_H1_E_STATUS_LINE,       /* malformed status line (not "HTTP/1.x NNN reason") */
    TR_H1_E_HEADER,            /* malformed header field line */
    TR_H1_E_HEADER_TOO_LARGE,  /* header (or trailer) section longer than max_header_bytes */
    TR_H1_E_TOO_MANY_HEADERS,  /* more than max_headers fields (trailers included) */
    TR_H1_E_CONTENT_LENGTH,    /* invalid or conflicting Content-Length */
    TR_H1_E_TRANSFER_ENCODING, /* a transfer coding other than chunked, or chunked twice */
    TR_H1_E_CHUNK,             /* malformed chunk size line or chunk terminator */
    TR_H1_E_BODY_TOO_LARGE,    /* body longer than max_body */
    TR_H1_E_TOO_MANY_INTERIM,  /* more than 16 interim (1xx) responses */
    TR_H1_E_NO_RESPONSE,       /* the connection closed before the first byte */
    TR_H1_E_TRUNCATED,         /* the connection closed before the response ended */
    TR_H1_E_NOMEM              /* out of memory */
} tr_h1_error;

/* Limits; a zero field means its default. */
typedef struct tr_h1_limits {
    size_t max_header_bytes; /* status line + header lines (and trailer lines), default 64 KiB */
    size_t max_headers;      /* header fields + trailer fields, default 100 */
    size_t max_body;         /* de-chunked body bytes, default 16 MiB */
} tr_h1_limits;

#define TR_H1_DEFAULT_MAX_HEADER_BYTES ((size_t)64 * 1024)
#define TR_H1_DEFAULT_MAX_HEADERS ((size_t)100)
#define TR_H1_DEFAULT_MAX_BODY ((size_t)16 * 1024 * 1024)

typedef struct tr_h1 tr_h1;

/* A parser for one response. `no_body`: the request was HEAD (the response has no body
 * whatever its headers say). Returns NULL when memory runs out. */
tr_h1 *tr_h1_new(const tr_h1_limits *limits, int no_body);
void tr_h1_free(tr_h1 *p);

/* Parse up to `len` bytes. `*consumed` (may be NULL) receives how many belong to this
 * response: after TR_H1_DONE the rest is the start of something else (pipelining, or a
 * misbehaving server). Bytes fed after DONE or ERROR are not consumed. */
tr_h1_state tr_h1_feed(tr_h1 *p, const char *data, size_t len, size_t *consumed);

/* The peer closed the connection (EOF): ends a read-until-close body, and turns any other
 * unfinished response into TR_H1_E_TRUNCATED (TR_H1_E_NO_RESPONSE when nothing came). */
tr_h1_state tr_h1_finish(tr_h1 *p);

tr_h1_state tr_h1_state_of(const tr_h1 *p);
tr_h1_error tr_h1_error_of(const tr_h1 *p);
/* Byte offset in the stream at which the error was found. */
size_t tr_h1_error_offset(const tr_h1 *p);
/* A short stable name ("truncated", "body_too_large", ...) and a sentence for an error. */
const char *tr_h1_error_name(tr_h1_error e);
const char *tr_h1_error_message(tr_h1_error e);

/* The final status code (0 until its status line is parsed) and HTTP/1.x minor version. */
int tr_h1_status(const tr_h1 *p);
int tr_h1_minor_version(const tr_h1 *p);
/* The reason phrase (may be empty); NULL before the status line. */
const char *tr_h1_reason(const tr_h1 *p, size_t *len);
/* 1 once the header section of the final response is complete. */
int tr_h1_headers_complete(const tr_h1 *p);

/* Header and trailer fields in arrival order: i from 0 to tr_h1_field_count()-1.
 * Names are lower-case. The pointers stay valid until the next feed/finish/free.
 * `trailer` (may be NULL) is set to 1 for fields of a chunked body's trailer section.
 * Returns 0, or -1 when i is out of range. */
size_t tr_h1_field_count(const tr_h1 *p);
int tr_h1_field(const tr_h1 *p, size_t i, const char **name, size_t *name_len, const char **value,
                size_t *value_len, int *trailer);

/* The body bytes received so far (de-chunked). The pointer is valid until the next
 * feed/finish/free; it is never NULL (an empty body gives ""). */
const char *tr_h1_body(const tr_h1 *p, size_t *len);

/* 1 when the connection may carry another request: the response is DONE, its length was
 * delimited (not read-until-close), HTTP/1.1 without "Connection: close" or HTTP/1.0 with
 * "Connection: keep-alive", and no Content-Length came beside Transfer-Encoding. */
int tr_h1_keepalive(const tr_h1 *p);

#endif
