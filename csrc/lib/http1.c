/* A sans-I/O HTTP/1.1 response parser: see http1.h. */
#include "http1.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define MAX_INTERIM 16      /* 1xx responses skipped before the final one */
#define MAX_CHUNK_LINE 4096 /* bytes of one chunk-size line, extensions included */
#define MAX_LEADING_EMPTY 4 /* empty lines tolerated before a status line */

typedef enum phase {
    P_STATUS,        /* reading the status line */
    P_HEADERS,       /* reading header field lines */
    P_BODY_LENGTH,   /* Content-Length body: `left` bytes to go */
    P_BODY_CLOSE,    /* body until the connection closes */
    P_CHUNK_SIZE,    /* hex digits of a chunk size */
    P_CHUNK_SIZE_WS, /* whitespace after the digits */
    P_CHUNK_EXT,     /* a chunk extension, skipped */
    P_CHUNK_SIZE_LF, /* CR seen at the end of the chunk-size line */
    P_CHUNK_DATA,    /* `left` bytes of chunk data to go */
    P_CHUNK_DATA_END,
    P_CHUNK_DATA_LF, /* CR seen after chunk data */
    P_TRAILERS,      /* trailer field lines after the last chunk */
    P_DONE,
    P_ERROR
} phase;

typedef struct field {
    size_t name, name_len; /* offsets into hbuf */
    size_t value, value_len;
    int trailer;
} field;

struct tr_h1 {
    tr_h1_limits lim;
    int no_body;
    phase ph;
    tr_h1_error err;
    size_t err_at;
    size_t pos; /* bytes consumed since the start */

    /* The status line and field lines, without their line endings (names lower-cased in
     * place); fields point into it by offset, so growing it never invalidates them. */
    tr_buf hbuf;
    size_t line_start; /* where the line being read starts in hbuf */
    size_t hbytes;     /* bytes of header and trailer lines so far, line endings included */
    field *fields;
    size_t n_fields, cap_fields;

    int status, minor, have_status;
    size_t reason, reason_len;
    int interim, leading_empty, headers_done;

    /* framing, decided at the end of the header section */
    int have_cl, te_seen, te_chunked, conn_close, conn_keep, delimited;
    uint64_t cl;

    tr_buf body;
    uint64_t left;     /* bytes left of a Content-Length body or of the current chunk */
    size_t chunk_line; /* bytes of the current chunk-size line */
    int chunk_digits;
};

static const char *const error_names[] = {"ok",
                                          "status_line",
                                          "header",
                                          "header_too_large",
                                          "too_many_headers",
                                          "content_length",
                                          "transfer_encoding",
                                          "chunk",
                                          "body_too_large",
                                          "too_many_interim",
                                          "no_response",
                                          "truncated",
                                          "nomem"};

static const char *const error_messages[] = {
    "no error",
    "malformed status line",
    "malformed header field line",
    "header section too large",
    "too many header fields",
    "invalid or conflicting Content-Length",
    "unsupported Transfer-Encoding (only chunked is understood)",
    "malformed chunked encoding",
    "response body too large",
    "too many interim (1xx) responses",
    "connection closed before any response",
    "connection closed before the response ended (truncated)",
    "out of memory"};

const char *tr_h1_error_name(tr_h1_error e) {
    if ((unsigned)e >= sizeof error_names / sizeof error_names[0]) return "unknown";
    return error_names[e];
}

const char *tr_h1_error_message(tr_h1_error e) {
    if ((unsigned)e >= sizeof error_messages / sizeof error_messages[0]) return "unknown error";
    return error_messages[e];
}

tr_h1 *tr_h1_new(const tr_h1_limits *limits, int no_body) {
    tr_h1 *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    if (limits != NULL) p->lim = *limits;
    if (p->lim.max_header_bytes == 0) p->lim.max_header_bytes = TR_H1_DEFAULT_MAX_HEADER_BYTES;
    if (p->lim.max_headers == 0) p->lim.max_headers = TR_H1_DEFAULT_MAX_HEADERS;
    if (p->lim.max_body == 0) p->lim.max_body = TR_H1_DEFAULT_MAX_BODY;
    p->no_body = no_body != 0;
    p->ph = P_STATUS;
    tr_buf_init(&p->hbuf);
    tr_buf_init(&p->body);
    return p;
}

void tr_h1_free(tr_h1 *p) {
    if (p == NULL) return;
    tr_buf_free(&p->hbuf);
    tr_buf_free(&p->body);
    free(p->fields);
    free(p);
}

static void fail(tr_h1 *p, tr_h1_error e, size_t at) {
    if (p->ph == P_ERROR) return;
    p->ph = P_ERROR;
    p->err = e;
    p->err_at = at;
}

/* --- character classes --- */

static int is_ws(unsigned char c) { return c == ' ' || c == '\t'; }

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* RFC 9110 tchar */
static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c)) return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP, HTAB and obs-text: anything but controls and DEL */
static int is_text(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static unsigned char lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Case-insensitive comparison of s[0..n) with a lower-case literal. */
static int ieq(const char *s, size_t n, const char *lit) {
    size_t m = strlen(lit);
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s[i]) != (unsigned char)lit[i]) return 0;
    return 1;
}

static int all_text(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_text((unsigned char)s[i])) return 0;
    return 1;
}

/* --- the header section --- */

static void reset_response(tr_h1 *p) {
    p->hbuf.len = 0;
    p->line_start = 0;
    p->hbytes = 0;
    p->n_fields = 0;
    p->status = 0;
    p->minor = 0;
    p->have_status = 0;
    p->reason = p->reason_len = 0;
    p->leading_empty = 0;
}

/* "HTTP/1.x NNN[ reason]" */
static int parse_status_line(tr_h1 *p, size_t start, size_t n) {
    const char *s = p->hbuf.data + start;
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0) return -1;
    if (!is_digit((unsigned char)s[7]) || s[8] != ' ') return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (!is_digit((unsigned char)s[i])) return -1;
        status = status * 10 + (s[i] - '0');
    }
    if (status < 100) return -1;
    size_t reason = start + 12, reason_len = 0;
    if (n > 12) {
        if (s[12] != ' ') return -1;
        reason = start + 13;
        reason_len = n - 13;
        if (!all_text(s + 13, reason_len)) return -1;
    }
    p->status = status;
    p->minor = s[7] - '0';
    p->have_status = 1;
    p->reason = reason;
    p->reason_len = reason_len;
    return 0;
}

static int add_field(tr_h1 *p, const field *f) {
    if (p->n_fields >= p->lim.max_headers) return TR_H1_E_TOO_MANY_HEADERS;
    if (p->n_fields == p->cap_fields) {
        size_t cap = p->cap_fields ? p->cap_fields * 2 : 16;
        if (cap > p->lim.max_headers) cap = p->lim.max_headers;
        if (cap > SIZE_MAX / sizeof *p->fields) return TR_H1_E_NOMEM;
        field *nf = realloc(p->fields, cap * sizeof *nf);
        if (nf == NULL) return TR_H1_E_NOMEM;
        p->fields = nf;
        p->cap_fields = cap;
    }
    p->fields[p->n_fields++] = *f;
    return TR_H1_OK;
}

/* A field line (not empty). Continuation lines (obs-fold) join the previous field's value
 * with one space, as RFC 9112 section 5.2 asks of user agents. */
static int parse_field_line(tr_h1 *p, size_t start, size_t n, int trailer) {
    char *base = p->hbuf.data;
    char *s = base + start;
    if (is_ws((unsigned char)s[0])) {
        if (p->n_fields == 0 || p->fields[p->n_fields - 1].trailer != trailer)
            return TR_H1_E_HEADER;
        size_t a = 0, b = n;
        while (a < b && is_ws((unsigned char)s[a]))
            a++;
        while (b > a && is_ws((unsigned char)s[b - 1]))
            b--;
        if (!all_text(s + a, b - a)) return TR_H1_E_HEADER;
        field *f = &p->fields[p->n_fields - 1];
        size_t dst = f->value + f->value_len; /* <= start: the previous line ends there */
        if (b > a) {
            if (f->value_len > 0)
                base[dst++] = ' ';
            else
                f->value = dst;
            memmove(base + dst, s + a, b - a); /* dst <= start + a: never past the source */
            f->value_len = dst + (b - a) - f->value;
            p->hbuf.len = dst + (b - a);
        } else {
            p->hbuf.len = dst;
        }
        return TR_H1_OK;
    }
    size_t colon = 0;
    while (colon < n && s[colon] != ':') {
        if (!is_tchar((unsigned char)s[colon])) return TR_H1_E_HEADER;
        s[colon] = (char)lower((unsigned char)s[colon]);
        colon++;
    }
    if (colon == 0 || colon == n) return TR_H1_E_HEADER;
    size_t a = colon + 1, b = n;
    while (a < b && is_ws((unsigned char)s[a]))
        a++;
    while (b > a && is_ws((unsigned char)s[b - 1]))
        b--;
    if (!all_text(s + a, b - a)) return TR_H1_E_HEADER;
    field f = {start, colon, start + a, b - a, trailer};
    p->hbuf.len = start + b; /* drop trailing whitespace */
    return add_field(p, &f);
}

/* Content-Length: one number, or a list of equal numbers ("42, 42"). */
static int parse_content_length(const char *v, size_t n, uint64_t *out) {
    size_t i = 0;
    int have = 0;
    uint64_t first = 0;
    for (;;) {
        while (i < n && is_ws((unsigned char)v[i]))
            i++;
        if (i == n || !is_digit((unsigned char)v[i])) return -1;
        uint64_t x = 0;
        while (i < n && is_digit((unsigned char)v[i])) {
            unsigned d = (unsigned)(v[i] - '0');
            if (x > (UINT64_MAX - d) / 10) return -1;
            x = x * 10 + d;
            i++;
        }
        if (have && x != first) return -1;
        first = x;
        have = 1;
        while (i < n && is_ws((unsigned char)v[i]))
            i++;
        if (i == n) break;
        if (v[i] != ',') return -1;
        i++;
    }
    *out = first;
    return 0;
}

/* Calls fn on each non-empty element of a comma-separated list (whitespace trimmed). */
typedef int (*element_fn)(tr_h1 *p, const char *s, size_t n);

static int each_element(tr_h1 *p, const char *v, size_t n, element_fn fn) {
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && is_ws((unsigned char)v[a]))
            a++;
        while (b > a && is_ws((unsigned char)v[b - 1]))
            b--;
        if (b > a) {
            int rc = fn(p, v + a, b - a);
            if (rc != TR_H1_OK) return rc;
        }
        i = j + 1;
    }
    return TR_H1_OK;
}

static int te_element(tr_h1 *p, const char *s, size_t n) {
    if (p->te_chunked) return TR_H1_E_TRANSFER_ENCODING; /* chunked must be the last coding */
    if (ieq(s, n, "chunked"))
        p->te_chunked = 1;
    else if (!ieq(s, n, "identity"))
        return TR_H1_E_TRANSFER_ENCODING;
    p->te_seen = 1;
    return TR_H1_OK;
}

static int connection_element(tr_h1 *p, const char *s, size_t n) {
    if (ieq(s, n, "close"))
        p->conn_close = 1;
    else if (ieq(s, n, "keep-alive"))
        p->conn_keep = 1;
    return TR_H1_OK;
}

static int read_framing(tr_h1 *p) {
    const char *base = p->hbuf.data;
    for (size_t i = 0; i < p->n_fields; i++) {
        const field *f = &p->fields[i];
        const char *name = base + f->name, *value = base + f->value;
        if (ieq(name, f->name_len, "content-length")) {
            uint64_t v;
            if (parse_content_length(value, f->value_len, &v) != 0) return TR_H1_E_CONTENT_LENGTH;
            if (p->have_cl && v != p->cl) return TR_H1_E_CONTENT_LENGTH;
            p->have_cl = 1;
            p->cl = v;
        } else if (ieq(name, f->name_len, "transfer-encoding")) {
            int rc = each_element(p, value, f->value_len, te_element);
            if (rc != TR_H1_OK) return rc;
        } else if (ieq(name, f->name_len, "connection")) {
            each_element(p, value, f->value_len, connection_element);
        }
    }
    return TR_H1_OK;
}

static void start_chunk_line(tr_h1 *p) {
    p->ph = P_CHUNK_SIZE;
    p->left = 0;
    p->chunk_line = 0;
    p->chunk_digits = 0;
}

/* The empty line after the header section: decide how the body is framed. */
static void end_of_headers(tr_h1 *p, size_t at) {
    if (p->status < 200 && p->status != 101) { /* interim response: skip it */
        if (++p->interim > MAX_INTERIM) {
            fail(p, TR_H1_E_TOO_MANY_INTERIM, at);
            return;
        }
        reset_response(p);
        p->ph = P_STATUS;
        return;
    }
    p->headers_done = 1;
    int rc = read_framing(p);
    if (rc != TR_H1_OK) {
        fail(p, (tr_h1_error)rc, at);
        return;
    }
    p->line_start = p->hbuf.len;
    if (p->no_body || p->status == 101 || p->status == 204 || p->status == 304) {
        p->delimited = p->status != 101;
        p->ph = P_DONE;
    } else if (p->te_chunked) {
        p->delimited = 1;
        start_chunk_line(p);
    } else if (p->have_cl && !p->te_seen) { /* "identity" only: read until close, below */
        if (p->cl > (uint64_t)p->lim.max_body) {
            fail(p, TR_H1_E_BODY_TOO_LARGE, at);
            return;
        }
        p->delimited = 1;
        p->left = p->cl;
        p->ph = p->cl == 0 ? P_DONE : P_BODY_LENGTH;
    } else {
        p->ph = P_BODY_CLOSE; /* no length given: the body runs to the end of the connection */
    }
}

/* A complete line sits at hbuf[line_start..len) (LF removed): act on it. `at` is the
 * stream offset of its LF, for error reports. */
static void end_of_line(tr_h1 *p, size_t at) {
    size_t start = p->line_start;
    size_t n = p->hbuf.len - start;
    if (n > 0 && p->hbuf.data[start + n - 1] == '\r') {
        n--;
        p->hbuf.len--;
    }
    const char *s = p->hbuf.data + start; /* hbuf.data is non-NULL: see step_line */
    if (memchr(s, '\r', n) != NULL) {     /* a bare CR inside a line */
        fail(p, p->ph == P_STATUS ? TR_H1_E_STATUS_LINE : TR_H1_E_HEADER, at);
        return;
    }
    if (p->ph == P_STATUS) {
        if (n == 0) {
            if (++p->leading_empty > MAX_LEADING_EMPTY) fail(p, TR_H1_E_STATUS_LINE, at);
            return;
        }
        if (parse_status_line(p, start, n) != 0) {
            fail(p, TR_H1_E_STATUS_LINE, at);
            return;
        }
        p->ph = P_HEADERS;
        p->line_start = p->hbuf.len;
        return;
    }
    int trailer = p->ph == P_TRAILERS;
    if (n == 0) {
        if (trailer)
            p->ph = P_DONE;
        else
            end_of_headers(p, at);
        return;
    }
    int rc = parse_field_line(p, start, n, trailer);
    if (rc != TR_H1_OK) {
        fail(p, (tr_h1_error)rc, at);
        return;
    }
    p->line_start = p->hbuf.len;
}

/* Status, header and trailer lines: gather bytes up to LF into hbuf. */
static size_t step_line(tr_h1 *p, const char *d, size_t n) {
    const char *lf = memchr(d, '\n', n);
    size_t take = lf ? (size_t)(lf - d) : n;
    size_t used = lf ? take + 1 : take;
    size_t room = p->lim.max_header_bytes - p->hbytes; /* hbytes never exceeds the limit */
    if (used > room) {
        fail(p, TR_H1_E_HEADER_TOO_LARGE, p->pos + room);
        return 0;
    }
    /* Keep hbuf allocated (and NUL-terminated) even for an empty line. */
    if (tr_buf_add(&p->hbuf, d, take) != 0 || tr_buf_cstr(&p->hbuf) == NULL) {
        fail(p, TR_H1_E_NOMEM, p->pos);
        return 0;
    }
    p->hbytes += used;
    if (lf) end_of_line(p, p->pos + take);
    return used;
}

/* --- the body --- */

static size_t add_body(tr_h1 *p, const char *d, size_t n) {
    if (tr_buf_add(&p->body, d, n) != 0) {
        fail(p, TR_H1_E_NOMEM, p->pos);
        return 0;
    }
    return n;
}

static size_t end_chunk_line(tr_h1 *p, size_t used) {
    size_t at = p->pos + used - 1;
    if (p->chunk_digits == 0) {
        fail(p, TR_H1_E_CHUNK, at);
        return 0;
    }
    if (p->left == 0) { /* the last chunk: trailer fields follow */
        p->ph = P_TRAILERS;
        p->line_start = p->hbuf.len;
        return used;
    }
    if (p->left > (uint64_t)(p->lim.max_body - p->body.len)) {
        fail(p, TR_H1_E_BODY_TOO_LARGE, at);
        return 0;
    }
    p->ph = P_CHUNK_DATA;
    return used;
}

/* The chunk-size line, byte by byte: 1*HEXDIG [BWS] [; ext...] CRLF */
static size_t step_chunk_line(tr_h1 *p, const char *d, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        size_t at = p->pos + i;
        if (++p->chunk_line > MAX_CHUNK_LINE) {
            fail(p, TR_H1_E_CHUNK, at);
            return 0;
        }
        switch (p->ph) {
        case P_CHUNK_SIZE: {
            int v = hex_value(c);
            if (v >= 0) {
                if (p->left > (UINT64_MAX >> 4)) {
                    fail(p, TR_H1_E_CHUNK, at);
                    return 0;
                }
                p->left = (p->left << 4) | (uint64_t)v;
                p->chunk_digits = 1;
                break;
            }
            if (p->chunk_digits == 0) {
                fail(p, TR_H1_E_CHUNK, at);
                return 0;
            }
            if (c == '\n') return end_chunk_line(p, i + 1);
            if (is_ws(c))
                p->ph = P_CHUNK_SIZE_WS;
            else if (c == ';')
                p->ph = P_CHUNK_EXT;
            else if (c == '\r')
                p->ph = P_CHUNK_SIZE_LF;
            else {
                fail(p, TR_H1_E_CHUNK, at);
                return 0;
            }
            break;
        }
        case P_CHUNK_SIZE_WS:
            if (c == '\n') return end_chunk_line(p, i + 1);
            if (c == ';')
                p->ph = P_CHUNK_EXT;
            else if (c == '\r')
                p->ph = P_CHUNK_SIZE_LF;
            else if (!is_ws(c)) {
                fail(p, TR_H1_E_CHUNK, at);
                return 0;
            }
            break;
        case P_CHUNK_EXT:
            if (c == '\n') return end_chunk_line(p, i + 1);
            if (c == '\r')
                p->ph = P_CHUNK_SIZE_LF;
            else if (!is_text(c)) {
                fail(p, TR_H1_E_CHUNK, at);
                return 0;
            }
            break;
        default: /* P_CHUNK_SIZE_LF */
            if (c != '\n') {
                fail(p, TR_H1_E_CHUNK, at);
                return 0;
            }
            return end_chunk_line(p, i + 1);
        }
    }
    return n;
}

/* One step: consumes at least one byte, or moves to P_DONE / P_ERROR. */
static size_t step(tr_h1 *p, const char *d, size_t n) {
    switch (p->ph) {
    case P_STATUS:
    case P_HEADERS:
    case P_TRAILERS:
        return step_line(p, d, n);
    case P_BODY_LENGTH: {
        size_t take = (uint64_t)n < p->left ? n : (size_t)p->left;
        if (add_body(p, d, take) != take) return 0;
        p->left -= take;
        if (p->left == 0) p->ph = P_DONE;
        return take;
    }
    case P_BODY_CLOSE: {
        size_t room = p->lim.max_body - p->body.len;
        if (n > room) { /* keep exactly max_body bytes, however the input was split */
            if (add_body(p, d, room) == room) fail(p, TR_H1_E_BODY_TOO_LARGE, p->pos + room);
            return 0;
        }
        return add_body(p, d, n);
    }
    case P_CHUNK_SIZE:
    case P_CHUNK_SIZE_WS:
    case P_CHUNK_EXT:
    case P_CHUNK_SIZE_LF:
        return step_chunk_line(p, d, n);
    case P_CHUNK_DATA: {
        size_t take = (uint64_t)n < p->left ? n : (size_t)p->left;
        if (add_body(p, d, take) != take) return 0;
        p->left -= take;
        if (p->left == 0) p->ph = P_CHUNK_DATA_END;
        return take;
    }
    case P_CHUNK_DATA_END:
        if (d[0] == '\r')
            p->ph = P_CHUNK_DATA_LF;
        else if (d[0] == '\n')
            start_chunk_line(p);
        else
            fail(p, TR_H1_E_CHUNK, p->pos);
        return p->ph == P_ERROR ? 0 : 1;
    case P_CHUNK_DATA_LF:
        if (d[0] != '\n') {
            fail(p, TR_H1_E_CHUNK, p->pos);
            return 0;
        }
        start_chunk_line(p);
        return 1;
    default:
        return 0;
    }
}

tr_h1_state tr_h1_feed(tr_h1 *p, const char *data, size_t len, size_t *consumed) {
    size_t i = 0;
    if (data == NULL) len = 0;
    while (i < len && p->ph != P_DONE && p->ph != P_ERROR) {
        size_t used = step(p, data + i, len - i);
        if (used > len - i) used = len - i; /* cannot happen; keeps the bound obvious */
        if (used == 0 && p->ph != P_DONE && p->ph != P_ERROR) {
            fail(p, TR_H1_E_NOMEM, p->pos); /* a step that made no progress: never loop */
            break;
        }
        i += used;
        p->pos += used;
    }
    if (consumed != NULL) *consumed = i;
    return tr_h1_state_of(p);
}

tr_h1_state tr_h1_finish(tr_h1 *p) {
    if (p->ph == P_BODY_CLOSE)
        p->ph = P_DONE;
    else if (p->ph != P_DONE && p->ph != P_ERROR)
        fail(p, p->pos == 0 ? TR_H1_E_NO_RESPONSE : TR_H1_E_TRUNCATED, p->pos);
    return tr_h1_state_of(p);
}

tr_h1_state tr_h1_state_of(const tr_h1 *p) {
    if (p->ph == P_DONE) return TR_H1_DONE;
    if (p->ph == P_ERROR) return TR_H1_ERROR;
    return TR_H1_MORE;
}

tr_h1_error tr_h1_error_of(const tr_h1 *p) { return p->ph == P_ERROR ? p->err : TR_H1_OK; }

size_t tr_h1_error_offset(const tr_h1 *p) { return p->ph == P_ERROR ? p->err_at : 0; }

int tr_h1_status(const tr_h1 *p) { return p->have_status ? p->status : 0; }

int tr_h1_minor_version(const tr_h1 *p) { return p->have_status ? p->minor : 0; }

const char *tr_h1_reason(const tr_h1 *p, size_t *len) {
    if (!p->have_status) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = p->reason_len;
    return p->hbuf.data + p->reason;
}

int tr_h1_headers_complete(const tr_h1 *p) { return p->headers_done; }

size_t tr_h1_field_count(const tr_h1 *p) { return p->n_fields; }

int tr_h1_field(const tr_h1 *p, size_t i, const char **name, size_t *name_len, const char **value,
                size_t *value_len, int *trailer) {
    if (i >= p->n_fields) return -1;
    const field *f = &p->fields[i];
    if (name) *name = p->hbuf.data + f->name;
    if (name_len) *name_len = f->name_len;
    if (value) *value = p->hbuf.data + f->value;
    if (value_len) *value_len = f->value_len;
    if (trailer) *trailer = f->trailer;
    return 0;
}

const char *tr_h1_body(const tr_h1 *p, size_t *len) {
    if (len) *len = p->body.len;
    return p->body.data ? p->body.data : "";
}

int tr_h1_keepalive(const tr_h1 *p) {
    return p->ph == P_DONE && p->delimited && !p->conn_close && (p->minor >= 1 || p->conn_keep) &&
           !(p->te_seen && p->have_cl);
}
