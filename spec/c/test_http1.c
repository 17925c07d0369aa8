/* Unit tests of the sans-I/O HTTP/1.1 response parser (csrc/lib/http1.c): TAP output.
 * Every case is fed whole, split at every byte boundary into two pieces, and one byte at a
 * time; all three must give the same result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/lib/http1.h"

static int n_checks, n_failed;

static void check(int ok, const char *what) {
    printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_checks, what);
    if (!ok) n_failed++;
}

typedef struct expect {
    tr_h1_state state; /* after the input (and finish() when eof) */
    tr_h1_error error;
    int status;
    const char *body;    /* NULL: don't check */
    const char *header;  /* "name: value" that must be present, or NULL */
    const char *trailer; /* "name: value" trailer, or NULL */
    int keepalive;       /* -1: don't check */
    size_t leftover;     /* bytes not consumed (when DONE) */
} expect;

static int has_field(const tr_h1 *p, const char *nv, int want_trailer) {
    const char *colon = strchr(nv, ':');
    size_t want_n = (size_t)(colon - nv);
    const char *want_v = colon + 2;
    for (size_t i = 0; i < tr_h1_field_count(p); i++) {
        const char *name, *value;
        size_t nn, vn;
        int trailer;
        tr_h1_field(p, i, &name, &nn, &value, &vn, &trailer);
        if (trailer == want_trailer && nn == want_n && memcmp(name, nv, nn) == 0 &&
            vn == strlen(want_v) && memcmp(value, want_v, vn) == 0)
            return 1;
    }
    return 0;
}

/* Feed `in` in pieces: split==0 whole; split>0 two pieces at that offset; split<0 bytewise. */
static int run_one(const char *in, size_t len, long split, int eof, int head,
                   const tr_h1_limits *lim, const expect *e, char *why, size_t why_n) {
    tr_h1 *p = tr_h1_new(lim, head);
    if (p == NULL) {
        snprintf(why, why_n, "no memory");
        return 0;
    }
    size_t fed = 0, used, leftover = 0;
    if (split < 0) {
        for (size_t i = 0; i < len; i++) {
            if (tr_h1_feed(p, in + i, 1, &used) != TR_H1_MORE) {
                leftover = len - i - used;
                fed = len;
                break;
            }
        }
    } else {
        size_t cut = split == 0 ? len : (size_t)split;
        tr_h1_state st = tr_h1_feed(p, in, cut, &used);
        if (st != TR_H1_MORE)
            leftover = len - used;
        else {
            st = tr_h1_feed(p, in + cut, len - cut, &used);
            if (st != TR_H1_MORE) leftover = len - cut - used;
        }
    }
    (void)fed;
    if (eof) tr_h1_finish(p);
    int ok = 1;
    size_t blen;
    const char *body = tr_h1_body(p, &blen);
    if (tr_h1_state_of(p) != e->state) {
        snprintf(why, why_n, "state %d, want %d (error %s)", tr_h1_state_of(p), e->state,
                 tr_h1_error_name(tr_h1_error_of(p)));
        ok = 0;
    } else if (tr_h1_error_of(p) != e->error) {
        snprintf(why, why_n, "error %s, want %s", tr_h1_error_name(tr_h1_error_of(p)),
                 tr_h1_error_name(e->error));
        ok = 0;
    } else if (e->status && tr_h1_status(p) != e->status) {
        snprintf(why, why_n, "status %d, want %d", tr_h1_status(p), e->status);
        ok = 0;
    } else if (e->body && (blen != strlen(e->body) || memcmp(body, e->body, blen) != 0)) {
        snprintf(why, why_n, "body '%.*s', want '%s'", (int)blen, body, e->body);
        ok = 0;
    } else if (e->header && !has_field(p, e->header, 0)) {
        snprintf(why, why_n, "header '%s' missing", e->header);
        ok = 0;
    } else if (e->trailer && !has_field(p, e->trailer, 1)) {
        snprintf(why, why_n, "trailer '%s' missing", e->trailer);
        ok = 0;
    } else if (e->keepalive >= 0 && tr_h1_keepalive(p) != e->keepalive) {
        snprintf(why, why_n, "keepalive %d, want %d", tr_h1_keepalive(p), e->keepalive);
        ok = 0;
    } else if (e->state == TR_H1_DONE && !eof && leftover != e->leftover) {
        snprintf(why, why_n, "leftover %zu, want %zu", leftover, e->leftover);
        ok = 0;
    }
    tr_h1_free(p);
    return ok;
}

static void case_lim(const char *what, const char *in, int eof, int head, const tr_h1_limits *lim,
                     expect e) {
    size_t len = strlen(in);
    char why[256] = "";
    int ok = run_one(in, len, 0, eof, head, lim, &e, why, sizeof why);
    for (size_t cut = 1; ok && cut < len; cut++) {
        ok = run_one(in, len, (long)cut, eof, head, lim, &e, why, sizeof why);
        if (!ok) {
            char more[64];
            snprintf(more, sizeof more, " [split at %zu]", cut);
            strncat(why, more, sizeof why - strlen(why) - 1);
        }
    }
    if (ok) {
        ok = run_one(in, len, -1, eof, head, lim, &e, why, sizeof why);
        if (!ok) strncat(why, " [bytewise]", sizeof why - strlen(why) - 1);
    }
    check(ok, what);
    if (!ok) printf("# %s\n", why);
}

static void test(const char *what, const char *in, int eof, expect e) {
    case_lim(what, in, eof, 0, NULL, e);
}

#define DONE(st, b)                                                                                \
    (expect) { TR_H1_DONE, TR_H1_OK, st, b, NULL, NULL, -1, 0 }
#define FAIL(err)                                                                                  \
    (expect) { TR_H1_ERROR, err, 0, NULL, NULL, NULL, -1, 0 }

static void test_framing(void) {
    test("content-length body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0,
         (expect){TR_H1_DONE, TR_H1_OK, 200, "hello", "content-length: 5", NULL, 1, 0});
    test("bytes after the body are left over",
         "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1", 0,
         (expect){TR_H1_DONE, TR_H1_OK, 200, "hi", NULL, NULL, 1, 8});
    test("header names are lower-cased and values trimmed",
         "HTTP/1.1 200 OK\r\nElectric-Handle: \t 123-456 \t\r\nContent-Length: 0\r\n\r\n", 0,
         (expect){TR_H1_DONE, TR_H1_OK, 200, "", "electric-handle: 123-456", NULL, 1, 0});
    test("empty header value",
         "HTTP/1.1 200 OK\r\nElectric-Up-To-Date:\r\nContent-Length: 0\r\n\r\n", 0,
         (expect){TR_H1_DONE, TR_H1_OK, 200, "", "electric-up-to-date: ", NULL, 1, 0});
    test("chunked body with extensions and trailers",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5;name=value\r\nhello\r\n"
         "1 ; a=\"q;x\"\r\n,\r\n"
         "6\r\n world\r\n"
         "0\r\nX-Checksum: abc\r\nX-Other:  two \r\n\r\n",
         0,
         (expect){TR_H1_DONE, TR_H1_OK, 200, "hello, world", "transfer-encoding: chunked",
                  "x-checksum: abc", 1, 0});
    test("chunked: upper-case hex and leading zeros",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n000A\r\n0123456789\r\n0\r\n\r\n", 0,
         DONE(200, "0123456789"));
    test("chunked: bare LF line endings",
         "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n", 0, DONE(200, "abc"));
    test("chunked beats Content-Length, and the connection is not reused",
         "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
         "2\r\nok\r\n0\r\n\r\n",
         0, (expect){TR_H1_DONE, TR_H1_OK, 200, "ok", NULL, NULL, 0, 0});
    test("transfer-encoding list ending in chunked",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 0,
         DONE(200, "x"));
    test("read until close", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", 1,
         (expect){TR_H1_DONE, TR_H1_OK, 200, "all of it", NULL, NULL, 0, 0});
    test("read until close, HTTP/1.0", "HTTP/1.0 200 OK\r\n\r\nold", 1, DONE(200, "old"));
    test("204 has no body", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 0,
         (expect){TR_H1_DONE, TR_H1_OK, 204, "", NULL, NULL, 1, 0});
    test("304 has no body", "HTTP/1.1 304 Not Modified\r\n\r\n", 0, DONE(304, ""));
    test("interim 100 and 103 are skipped",
         "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
         "HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n[]",
         0, DONE(409, "[]"));
    test("status line without a reason", "HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n", 0,
         DONE(503, ""));
    test("status line with an empty reason", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", 0,
         DONE(200, ""));
    test("repeated equal Content-Length values",
         "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc", 0,
         DONE(200, "abc"));
    test("obs-fold joins the previous value",
         "HTTP/1.1 200 OK\r\nX-Long: one\r\n  two\r\n\tthree\r\nContent-Length: 0\r\n\r\n", 0,
         (expect){TR_H1_DONE, TR_H1_OK, 200, "", "x-long: one two three", NULL, 1, 0});
    test("Connection: close stops reuse",
         "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", 0,
         (expect){TR_H1_DONE, TR_H1_OK, 200, "x", NULL, NULL, 0, 0});
    test("HTTP/1.0 keep-alive allows reuse",
         "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", 0,
         (expect){TR_H1_DONE, TR_H1_OK, 200, "x", NULL, NULL, 1, 0});
    test("a leading empty line is tolerated", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0,
         DONE(200, ""));
    case_lim("HEAD response has no body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 0, 1,
             NULL, (expect){TR_H1_DONE, TR_H1_OK, 200, "", NULL, NULL, 1, 0});
}

static void test_errors(void) {
    test("not HTTP", "SSH-2.0-OpenSSH\r\n", 0, FAIL(TR_H1_E_STATUS_LINE));
    test("HTTP/2 status line", "HTTP/2 200\r\n\r\n", 0, FAIL(TR_H1_E_STATUS_LINE));
    test("status below 100", "HTTP/1.1 099 Low\r\n\r\n", 0, FAIL(TR_H1_E_STATUS_LINE));
    test("two-digit status", "HTTP/1.1 20 OK\r\n\r\n", 0, FAIL(TR_H1_E_STATUS_LINE));
    test("control character in the reason", "HTTP/1.1 200 O\001K\r\n\r\n", 0,
         FAIL(TR_H1_E_STATUS_LINE));
    test("header without a colon", "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", 0, FAIL(TR_H1_E_HEADER));
    test("space before the colon", "HTTP/1.1 200 OK\r\nName : v\r\n\r\n", 0, FAIL(TR_H1_E_HEADER));
    test("empty header name", "HTTP/1.1 200 OK\r\n: v\r\n\r\n", 0, FAIL(TR_H1_E_HEADER));
    test("bare CR inside a header", "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", 0, FAIL(TR_H1_E_HEADER));
    test("NUL inside a header value", "HTTP/1.1 200 OK\r\nA: b\001c\r\n\r\n", 0,
         FAIL(TR_H1_E_HEADER));
    test("obs-fold before any field", "HTTP/1.1 200 OK\r\n folded\r\n\r\n", 0,
         FAIL(TR_H1_E_HEADER));
    test("conflicting Content-Length",
         "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 0,
         FAIL(TR_H1_E_CONTENT_LENGTH));
    test("Content-Length list that disagrees", "HTTP/1.1 200 OK\r\nContent-Length: 3,4\r\n\r\n", 0,
         FAIL(TR_H1_E_CONTENT_LENGTH));
    test("negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0,
         FAIL(TR_H1_E_CONTENT_LENGTH));
    test("Content-Length overflow",
         "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", 0,
         FAIL(TR_H1_E_CONTENT_LENGTH));
    test("gzip transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0,
         FAIL(TR_H1_E_TRANSFER_ENCODING));
    test("chunked twice",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
         FAIL(TR_H1_E_TRANSFER_ENCODING));
    test("chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 0,
         FAIL(TR_H1_E_CHUNK));
    test("empty chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 0,
         FAIL(TR_H1_E_CHUNK));
    test("chunk size overflow",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", 0,
         FAIL(TR_H1_E_CHUNK));
    test("chunk data not followed by CRLF",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 0,
         FAIL(TR_H1_E_CHUNK));
    test("control byte in a chunk extension",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a\001\r\nab\r\n", 0,
         FAIL(TR_H1_E_CHUNK));
    test("truncated in the status line", "HTTP/1.1 20", 1, FAIL(TR_H1_E_TRUNCATED));
    test("truncated in the headers", "HTTP/1.1 200 OK\r\nContent-Le", 1, FAIL(TR_H1_E_TRUNCATED));
    test("truncated Content-Length body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1,
         FAIL(TR_H1_E_TRUNCATED));
    test("truncated chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
         1, FAIL(TR_H1_E_TRUNCATED));
    test("truncated before the last chunk",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", 1,
         FAIL(TR_H1_E_TRUNCATED));
    test("truncated in the trailers",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n", 1,
         FAIL(TR_H1_E_TRUNCATED));
    test("closed before any byte", "", 1, FAIL(TR_H1_E_NO_RESPONSE));
    test("too many leading empty lines", "\r\n\r\n\r\n\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", 0,
         FAIL(TR_H1_E_STATUS_LINE));
}

static void test_limits(void) {
    tr_h1_limits small_body = {0, 0, 4};
    case_lim("Content-Length over max_body is refused up front",
             "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 0, 0, &small_body,
             FAIL(TR_H1_E_BODY_TOO_LARGE));
    case_lim("Content-Length at max_body is fine",
             "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd", 0, 0, &small_body,
             DONE(200, "abcd"));
    case_lim("chunked body over max_body",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n", 0, 0,
             &small_body, FAIL(TR_H1_E_BODY_TOO_LARGE));
    case_lim("read-until-close body over max_body", "HTTP/1.1 200 OK\r\n\r\nabcde", 1, 0,
             &small_body, FAIL(TR_H1_E_BODY_TOO_LARGE));
    tr_h1_limits small_head = {40, 0, 0};
    case_lim("header section over max_header_bytes",
             "HTTP/1.1 200 OK\r\nX-Padding: 0123456789abcdef\r\n\r\n", 0, 0, &small_head,
             FAIL(TR_H1_E_HEADER_TOO_LARGE));
    case_lim("header section within max_header_bytes", "HTTP/1.1 200 OK\r\nA: b\r\n\r\n", 1, 0,
             &small_head, DONE(200, ""));
    tr_h1_limits two = {0, 2, 0};
    case_lim("more fields than max_headers", "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 0,
             0, &two, FAIL(TR_H1_E_TOO_MANY_HEADERS));
    case_lim("trailers count toward max_headers",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\nU: 2\r\n\r\n", 0, 0,
             &two, FAIL(TR_H1_E_TOO_MANY_HEADERS));

    /* A long chunk-extension line is refused rather than buffered. */
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;";
    static const char tail[] = "\r\nx\r\n0\r\n\r\n";
    size_t n = 6000, hn = sizeof head - 1, tn = sizeof tail - 1;
    char *big = malloc(hn + n + tn + 1);
    if (big != NULL) {
        memcpy(big, head, hn);
        memset(big + hn, 'e', n);
        memcpy(big + hn + n, tail, tn + 1);
        tr_h1 *p = tr_h1_new(NULL, 0);
        tr_h1_feed(p, big, strlen(big), NULL);
        check(tr_h1_error_of(p) == TR_H1_E_CHUNK, "a chunk-size line over 4 KiB is refused");
        tr_h1_free(p);
        free(big);
    }

    /* Many interim responses are refused. */
    tr_h1 *p = tr_h1_new(NULL, 0);
    for (int i = 0; i < 20; i++)
        tr_h1_feed(p, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL);
    check(tr_h1_error_of(p) == TR_H1_E_TOO_MANY_INTERIM, "more than 16 interim responses fail");
    tr_h1_free(p);
}

static void test_api(void) {
    tr_h1 *p = tr_h1_new(NULL, 0);
    size_t used = 123;
    check(tr_h1_feed(p, NULL, 5, &used) == TR_H1_MORE && used == 0, "NULL data feeds nothing");
    check(tr_h1_status(p) == 0 && tr_h1_reason(p, NULL) == NULL, "no status before the line");
    const char *r404 = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    tr_h1_feed(p, r404, strlen(r404), &used);
    size_t rn;
    const char *reason = tr_h1_reason(p, &rn);
    check(tr_h1_status(p) == 404 && rn == 9 && memcmp(reason, "Not Found", 9) == 0,
          "status and reason");
    check(tr_h1_feed(p, "more", 4, &used) == TR_H1_DONE && used == 0,
          "bytes after DONE are not consumed");
    check(tr_h1_finish(p) == TR_H1_DONE, "finish after DONE stays DONE");
    check(tr_h1_field(p, 99, NULL, NULL, NULL, NULL, NULL) == -1, "field index out of range");
    tr_h1_free(p);
    tr_h1_free(NULL);

    p = tr_h1_new(NULL, 0);
    const char *cut = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab";
    tr_h1_feed(p, cut, strlen(cut), NULL);
    size_t bl;
    const char *b = tr_h1_body(p, &bl);
    check(bl == 2 && memcmp(b, "ab", 2) == 0 && tr_h1_headers_complete(p),
          "the body so far is readable before the end");
    tr_h1_finish(p);
    check(tr_h1_error_of(p) == TR_H1_E_TRUNCATED && tr_h1_error_offset(p) == strlen(cut),
          "truncation reports the offset");
    check(strcmp(tr_h1_error_name(TR_H1_E_TRUNCATED), "truncated") == 0 &&
              strcmp(tr_h1_error_name((tr_h1_error)99), "unknown") == 0,
          "error names");
    tr_h1_free(p);
}

int main(void) {
    test_framing();
    test_errors();
    test_limits();
    test_api();
    printf("1..%d\n", n_checks);
    return n_failed ? 1 : 0;
}
