/* Unit tests of the plain-C core (no Lua): TAP output, one line per check. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../csrc/lib/jwt.h"
#include "../../csrc/lib/pgtext.h"
#include "../../csrc/lib/shape.h"

static int n_checks;

static void check(int ok, const char *what) {
    printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_checks, what);
}

static int query_is(tr_shape *s, const tr_param *p, size_t n, const char *want) {
    tr_buf b;
    tr_buf_init(&b);
    int ok = tr_shape_query(s, p, n, &b) == 0 && strcmp(tr_buf_cstr(&b), want) == 0;
    if (!ok) printf("# got %s\n", b.data ? b.data : "(null)");
    tr_buf_free(&b);
    return ok;
}

static tr_shape_response ok200(const char *handle, const char *offset, int up_to_date) {
    tr_shape_response r;
    memset(&r, 0, sizeof r);
    r.status = 200;
    r.handle = handle;
    r.offset = offset;
    r.up_to_date = up_to_date;
    return r;
}

static void test_shape(void) {
    tr_shape *s = tr_shape_new();
    tr_param tags[] = {{"tags", "user:1234,b c"}, {"createdAt", "1h"}};
    check(query_is(s, tags, 2, "createdAt=1h&log=full&offset=-1&tags=user%3A1234%2Cb%20c"),
          "first query is sorted and encoded");
    tr_shape_response r = ok200("h1", "0_0", 0);
    check(tr_shape_on_response(s, &r).action == TR_SHAPE_APPLY, "200 applies");
    check(query_is(s, NULL, 0, "handle=h1&log=full&offset=0_0"), "adopts handle and offset");
    r = ok200("h1", "7_2", 1);
    r.cursor = "c9";
    tr_shape_on_response(s, &r);
    check(query_is(s, NULL, 0, "cursor=c9&handle=h1&live=true&log=full&offset=7_2"),
          "goes live once up to date");
    r = ok200(NULL, "8_0", 1);
    tr_shape_verdict v = tr_shape_on_response(s, &r);
    check(v.action == TR_SHAPE_FATAL && strcmp(v.kind, "protocol") == 0,
          "missing electric-handle is a protocol error");
    check(strcmp(tr_shape_offset(s), "7_2") == 0, "a refused response changes nothing");
    memset(&r, 0, sizeof r);
    r.status = 409;
    check(tr_shape_on_response(s, &r).action == TR_SHAPE_RESYNC, "409 resyncs");
    check(query_is(s, NULL, 0, "expired_handle=h1&handle=h1-next&log=full&offset=-1"),
          "409 without a handle uses <old>-next");
    r = ok200("h1", "0_0", 0);
    v = tr_shape_on_response(s, &r);
    check(v.action == TR_SHAPE_RETRY, "a stale response with the expired handle is retried");
    check(
        query_is(s, NULL, 0, "cache-buster=1&expired_handle=h1&handle=h1-next&log=full&offset=-1"),
        "the retry busts caches");
    memset(&r, 0, sizeof r);
    r.status = 400;
    r.body = "{\"message\":\"offset 9_9 out of bounds\"}";
    r.body_len = strlen(r.body);
    check(tr_shape_on_response(s, &r).action == TR_SHAPE_RESYNC, "400 out of bounds resyncs");
    r.body = "{}";
    r.body_len = 2;
    check(tr_shape_on_response(s, &r).action == TR_SHAPE_FATAL, "other 400s are fatal");
    int statuses[] = {401, 403, 404, 301};
    for (int i = 0; i < 4; i++) {
        memset(&r, 0, sizeof r);
        r.status = statuses[i];
        check(tr_shape_on_response(s, &r).action == TR_SHAPE_FATAL, "4xx/3xx are fatal");
    }
    int transient[] = {429, 500, 502, 503, 504};
    for (int i = 0; i < 5; i++) {
        memset(&r, 0, sizeof r);
        r.status = transient[i];
        check(tr_shape_on_response(s, &r).action == TR_SHAPE_RETRY, "429/5xx are retried");
    }
    r = ok200("h 1", "0_0", 0);
    check(tr_shape_on_response(s, &r).action == TR_SHAPE_FATAL, "a handle with spaces is refused");
    tr_shape_free(s);

    s = tr_shape_new();
    double d1 = tr_shape_backoff(s, 1, 32, 0, 0.999);
    double d2 = tr_shape_backoff(s, 1, 32, 0, 0.999);
    double d3 = tr_shape_backoff(s, 1, 32, 5, 0.0);
    for (int i = 0; i < 20; i++)
        tr_shape_backoff(s, 1, 32, 0, 0.999);
    double dcap = tr_shape_backoff(s, 1, 32, 0, 0.999);
    check(d1 < 1 && d2 > 1 && d2 < 2, "backoff doubles with full jitter");
    check(d3 == 5, "retry-after is a floor");
    check(dcap < 32 && dcap > 31, "backoff is capped");
    {
        /* NaN and infinities in, a finite delay in [0, TR_SHAPE_MAX_DELAY] out (callers cast
         * it to integer milliseconds). */
        double nan = NAN, inf = HUGE_VAL, bad = 1;
        const double in[][4] = {{nan, 32, 0, 0.5},  {1, nan, 0, 0.5},   {1, 32, nan, 0.5},
                                {1, 32, 0, nan},    {inf, inf, 0, 0.5}, {1, inf, inf, 0.5},
                                {-1, -5, -3, -0.5}, {inf, 32, 0, 0.5},  {1, 32, -inf, 0.5}};
        for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
            double d = tr_shape_backoff(s, in[i][0], in[i][1], in[i][2], in[i][3]);
            if (!(d >= 0 && d <= TR_SHAPE_MAX_DELAY)) bad = d;
        }
        check(bad == 1, "backoff of NaN, infinite or negative inputs is finite and >= 0");
    }
    check(tr_shape_restore(s, NULL, "5_0", NULL) != 0, "restore refuses an offset without handle");
    check(tr_shape_restore(s, "h", "5_0", "c") == 0 && !tr_shape_live(s), "restore works");
    tr_shape *c = tr_shape_clone(s);
    tr_shape_response next = ok200("h", "6_0", 0);
    check(c != NULL && tr_shape_on_response(c, &next).action == TR_SHAPE_APPLY &&
              query_is(c, NULL, 0, "handle=h&log=full&offset=6_0"),
          "a clone moves on by itself");
    check(query_is(s, NULL, 0, "handle=h&log=full&offset=5_0"), "the original stays");
    tr_shape_free(c);
    tr_shape_free(s);
}

static int tail_says(const char *body) { return tr_shape_body_ends_up_to_date(body, strlen(body)); }

/* The native runs feed: up to date only in the body, and a failed live poll is asked again
 * without live=true. */
static void test_shape_native(void) {
    tr_shape *s = tr_shape_new();
    tr_shape_response r = ok200("runs_1736510400000_1_0a1b2c3d", "1736510401120_42", 0);
    r.body_up_to_date = 1;
    check(tr_shape_on_response(s, &r).action == TR_SHAPE_APPLY && tr_shape_live(s),
          "a body ending up to date goes live without the header");
    r = ok200("runs_1736510400000_1_0a1b2c3d", "1736510401120_43", 0);
    r.cursor = "43";
    tr_shape_on_response(s, &r);
    check(query_is(s, NULL, 0,
                   "cursor=43&handle=runs_1736510400000_1_0a1b2c3d&live=true&log=full&"
                   "offset=1736510401120_43"),
          "native handle and offset formats are kept as they are");
    tr_shape_interrupted(s);
    check(!tr_shape_live(s) &&
              query_is(s, NULL, 0,
                       "handle=runs_1736510400000_1_0a1b2c3d&log=full&offset=1736510401120_43"),
          "after a failed live poll: non-live, same handle and offset");
    tr_shape_free(s);

    check(tail_says("[{\"headers\":{\"control\":\"up-to-date\"}}]"), "tail: bare up-to-date");
    check(tail_says("[{\"key\":\"k\",\"value\":{},\"headers\":{\"operation\":\"insert\"}},"
                    "{\"headers\":{\"control\":\"up-to-date\",\"global_last_seen_lsn\":\"12\"}}]"),
          "tail: Electric's up-to-date with a last-seen LSN");
    check(tail_says("[ {\"headers\" : { \"control\" : \"up-to-date\" } } ]\n"),
          "tail: white space anywhere");
    check(!tail_says("[{\"key\":\"k\",\"value\":{\"status\":\"up-to-date\"},"
                     "\"headers\":{\"operation\":\"insert\"}}]"),
          "tail: a value that reads up-to-date is not the control");
    check(!tail_says("[{\"headers\":{\"control\":\"must-refetch\"}}]"), "tail: must-refetch");
    check(!tail_says("[]") && !tail_says("") && !tail_says("}}]"), "tail: short bodies");

    /* After a flip native -> Electric -> native, the single-run feed's handle comes back. */
    s = tr_shape_new();
    r = ok200("run-cm1", "0_1", 0);
    tr_shape_on_response(s, &r);
    memset(&r, 0, sizeof r);
    r.status = 409;
    r.handle = "38207091-1";
    tr_shape_on_response(s, &r); /* expired: run-cm1 */
    r = ok200("run-cm1", "5_2", 0);
    r.no_store = 1;
    check(tr_shape_on_response(s, &r).action == TR_SHAPE_APPLY,
          "the expired handle in an answer no cache kept (no-store) is taken");
    tr_shape_free(s);
    s = tr_shape_new();
    r = ok200("h1", "0_1", 0);
    tr_shape_on_response(s, &r);
    memset(&r, 0, sizeof r);
    r.status = 409;
    r.handle = "h2";
    tr_shape_on_response(s, &r);
    int retried = 0;
    for (int i = 0; i < 10; i++) {
        r = ok200("h1", "0_1", 0);
        if (tr_shape_on_response(s, &r).action == TR_SHAPE_RETRY) retried++;
    }
    check(retried == 3, "a stale handle is asked again with fresh URLs 3 times, then taken");
    tr_shape_free(s);
}

typedef struct collect {
    char out[256];
    size_t len;
} collect;

static void put(collect *c, const char *s, size_t n) {
    if (c->len + n < sizeof c->out) {
        memcpy(c->out + c->len, s, n);
        c->len += n;
        c->out[c->len] = '\0';
    }
}
static int c_open(void *ud) {
    put(ud, "[", 1);
    return 0;
}
static int c_close(void *ud) {
    put(ud, "]", 1);
    return 0;
}
static int c_elem(void *ud, const char *s, size_t n, int is_null) {
    if (is_null)
        put(ud, "<null>", 6);
    else {
        put(ud, "<", 1);
        put(ud, s, n);
        put(ud, ">", 1);
    }
    return 0;
}

static int array_is(const char *in, const char *want) {
    collect c = {"", 0};
    tr_pg_array_sink sink = {c_open, c_close, c_elem, &c};
    size_t at;
    int rc = tr_pg_array_parse(in, strlen(in), &sink, &at);
    if (want == NULL) return rc == -1;
    if (rc != 0 || strcmp(c.out, want) != 0) printf("# %s -> %d %s\n", in, rc, c.out);
    return rc == 0 && strcmp(c.out, want) == 0;
}

static int ts_is(const char *in, const char *want) {
    char out[TR_PG_ISO_LEN + 1];
    int rc = tr_pg_timestamp_iso(in, strlen(in), out);
    if (want == NULL) return rc == -1;
    return rc == 0 && strcmp(out, want) == 0;
}

static void test_pgtext(void) {
    check(array_is("{}", "[]"), "empty array");
    check(array_is("{a,b}", "[<a><b>]"), "bare elements");
    check(array_is("{\"b c\",\"q\\\"d\",\"x\\\\y\"}", "[<b c><q\"d><x\\y>]"), "quoted, escaped");
    check(array_is("{NULL,\"NULL\",null}", "[<null><NULL><null>]"), "NULL vs \"NULL\"");
    check(array_is("{{1,2},{3,4}}", "[[<1><2>][<3><4>]]"), "two dimensions");
    check(array_is("{ a , b }", "[<a><b>]"), "blanks around bare elements");
    check(array_is("[0:1]={x,y}", "[<x><y>]"), "explicit bounds");
    check(array_is("{\"\"}", "[<>]"), "empty string element");
    check(array_is("{a\\,b,c}", "[<a,b><c>]"), "escaped delimiter in a bare element");
    check(array_is("{NULL  ,x}", "[<null><x>]"), "NULL with trailing blanks is null");
    check(array_is("{N\\ULL}", "[<NULL>]"), "an escaped NULL is text");
    check(array_is("{a\\ ,b }", "[<a ><b>]"), "an escaped blank is kept, a plain one trimmed");
    check(array_is("{\"a\\\\b\",\"c\"}", "[<a\\b><c>]"), "quoted with and without escapes");
    const char *bad[] = {"", "{", "{a", "{a,}", "{,a}", "{\"a}", "a", "{a}x", "{a\"b}", "{a\\"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check(array_is(bad[i], NULL), "malformed arrays are refused");
    char deep[64];
    memset(deep, '{', 40);
    memset(deep + 40, '}', 20);
    deep[60] = '\0';
    check(array_is(deep, NULL), "too deep is refused");

    check(ts_is("2025-01-10 12:00:00.123", "2025-01-10T12:00:00.123Z"), "space form");
    check(ts_is("2025-01-10T12:00:00", "2025-01-10T12:00:00.000Z"), "T form, no fraction");
    check(ts_is("2025-01-10 12:00:00.123456", "2025-01-10T12:00:00.123Z"), "microseconds cut");
    check(ts_is("2025-01-10 12:00:00.5Z", "2025-01-10T12:00:00.500Z"), "Z suffix");
    check(ts_is("2025-01-01 01:00:00+02", "2024-12-31T23:00:00.000Z"), "zone offset");
    check(ts_is("2024-02-29 23:30:00-01:00", "2024-03-01T00:30:00.000Z"), "leap day offset");
    const char *badts[] = {"",
                           "2025-13-01 00:00:00",
                           "2025-02-30 00:00:00",
                           "2025-01-10",
                           "2025-01-10 12:00:00.",
                           "2025-01-10 12:00:00 junk",
                           "infinity",
                           "2025-01-10 25:00:00",
                           "2025-01-10 12:00:00+05:",
                           "2025-01-10 12:00:00+05:3"};
    for (size_t i = 0; i < sizeof badts / sizeof badts[0]; i++)
        check(ts_is(badts[i], NULL), "malformed timestamps are refused");
}

static void test_jwt(void) {
    /* RFC 4231 test case 2 */
    unsigned char mac[TR_HS256_LEN];
    tr_hs256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    static const unsigned char want[] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                         0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                         0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                         0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    check(memcmp(mac, want, 32) == 0, "HMAC-SHA256 matches RFC 4231 case 2");
    tr_buf b;
    tr_buf_init(&b);
    tr_base64url_encode(&b, "\xfb\xff", 2);
    check(strcmp(tr_buf_cstr(&b), "-_8") == 0, "base64url alphabet, no padding");
    tr_buf_reset(&b);
    check(tr_base64url_decode(&b, "-_8", 3) == 0 && b.len == 2 &&
              memcmp(b.data, "\xfb\xff", 2) == 0,
          "base64url decodes");
    tr_buf_reset(&b);
    check(tr_base64url_decode(&b, "a+b", 3) == -1, "base64url refuses +");
    check(tr_base64url_decode(&b, "abcde", 5) == -1, "base64url refuses impossible lengths");
    tr_buf_reset(&b);
    check(tr_base64url_decode(&b, "YR", 2) == -1, "base64url refuses stray low bits");
    tr_buf_reset(&b);
    check(tr_base64url_decode(&b, "YQ==", 4) == 0 && b.len == 1, "base64url takes padding");
    tr_buf_reset(&b);
    check(tr_base64url_decode(&b, "YQ===", 5) == -1, "base64url refuses extra padding");
    tr_buf_free(&b);
}

/* The request budget (shape.h, TR_SHAPE_HELD_S): idle answers in a row back off after the first. */
static void test_shape_budget(void) {
    tr_shape *s = tr_shape_new();
    tr_shape_response r = ok200("h1", "1_0", 1);
    r.changes = 1;
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_GO && tr_shape_live(s),
          "budget: a snapshot up to date goes on at once");
    r = ok200("h1", "1_0", 1); /* a live answer at once with nothing new */
    tr_shape_verdict v = tr_shape_on_response(s, &r);
    check(v.action == TR_SHAPE_APPLY && v.pace == TR_SHAPE_STREAK && v.kind != NULL,
          "budget: the first idle answer is free");
    v = tr_shape_on_response(s, &r);
    check(v.pace == TR_SHAPE_BACKOFF && strcmp(v.kind, "protocol") == 0 && tr_shape_idle(s) == 2,
          "budget: the second backs off");
    tr_shape_backoff(s, 1, 32, 0, 0.5);
    tr_shape_backoff(s, 1, 32, 0, 0.5);
    r.elapsed_s = 20; /* a long-poll that ran out */
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_GO && tr_shape_idle(s) == 0 &&
              tr_shape_attempts(s) == 0,
          "budget: a held long-poll is progress: the streak and its backoff are over");
    r = ok200("h1", "2_0", 1);
    r.changes = 3;
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_GO, "budget: changes at once are progress");
    memset(&r, 0, sizeof r);
    r.status = 204;
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_STREAK, "budget: a 204 at once is idle");
    r = ok200("h2", "2_0", 1);
    r.changes = 1;
    r.elapsed_s = 20;
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_BACKOFF,
          "budget: another handle without a 409 is idle, held or not");
    tr_shape_free(s);

    /* 409s in a row, a snapshot between them or not: a resync after a resync backs off. */
    s = tr_shape_new();
    r = ok200("h1", "1_0", 1);
    tr_shape_on_response(s, &r);
    memset(&r, 0, sizeof r);
    r.status = 409;
    r.handle = "h2";
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_STREAK, "budget: the first 409 is free");
    r = ok200("h2", "1_0", 1);
    r.changes = 5;
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_STREAK,
          "budget: a resync's snapshot does not end the streak");
    memset(&r, 0, sizeof r);
    r.status = 409;
    r.handle = "h3";
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_BACKOFF, "budget: a second 409 backs off");
    r = ok200("h3", "1_0", 0);
    r.body_must_refetch = 1;
    check(tr_shape_on_response(s, &r).action == TR_SHAPE_RESYNC,
          "budget: a must-refetch in a 200 body resyncs (no fake 409)");
    memset(&r, 0, sizeof r);
    r.status = 409; /* without a handle, for ever */
    for (int i = 0; i < 500; i++)
        tr_shape_on_response(s, &r);
    const char *h = tr_shape_handle(s);
    check(h == NULL || strlen(h) < 512, "budget: 409s without a handle never grow the handle");
    tr_shape_free(s);

    /* A non-live answer that moves nothing. */
    s = tr_shape_new();
    r = ok200("h1", "1_0", 0);
    r.changes = 2;
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_GO, "budget: a page of a sync is neutral");
    r = ok200("h1", "1_0", 0);
    check(tr_shape_on_response(s, &r).pace == TR_SHAPE_STREAK,
          "budget: a non-live [] at the same offset, not up to date, is idle");
    tr_shape_free(s);
}

/* tr_status_verdict: the one table of statuses, and tr_shape_on_response agrees with it. */
static void test_status_verdict(void) {
    static const int statuses[] = {200, 204, 301, 400, 401, 403, 404, 408,
                                   409, 418, 429, 500, 503, 599, 600};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        int st = statuses[i];
        tr_shape_verdict v = tr_status_verdict(st, NULL, 0);
        tr_shape *s = tr_shape_new();
        tr_shape_response r;
        memset(&r, 0, sizeof r);
        r.status = st;
        r.handle = "h1";
        r.offset = "0_0";
        tr_shape_verdict w = tr_shape_on_response(s, &r);
        char what[96];
        snprintf(what, sizeof what, "status %d: the shape state starts from the status verdict",
                 st);
        check(v.action == w.action && (v.action == TR_SHAPE_APPLY || strcmp(v.kind, w.kind) == 0),
              what);
        tr_shape_free(s);
    }
    tr_shape_verdict v = tr_status_verdict(409, NULL, 0);
    check(v.action == TR_SHAPE_RESYNC && strcmp(v.kind, "protocol") == 0 &&
              strstr(v.message, "409") != NULL,
          "status verdict: 409 resyncs");
    static const char oob[] = "{\"message\":\"offset out of bounds\"}";
    v = tr_status_verdict(400, oob, sizeof oob - 1);
    check(v.action == TR_SHAPE_RESYNC && strstr(v.message, "out of bounds") != NULL,
          "status verdict: 400 out of bounds resyncs");
    v = tr_status_verdict(400, "bad", 3);
    check(v.action == TR_SHAPE_FATAL && strcmp(v.kind, "bad_request") == 0,
          "status verdict: another 400 is a bad request");
    check(tr_status_verdict(401, NULL, 0).action == TR_SHAPE_FATAL &&
              strcmp(tr_status_verdict(401, NULL, 0).kind, "auth") == 0,
          "status verdict: 401 is auth, fatal");
    check(tr_status_verdict(429, NULL, 0).action == TR_SHAPE_RETRY &&
              strcmp(tr_status_verdict(429, NULL, 0).kind, "rate_limited") == 0,
          "status verdict: 429 retries");
    check(tr_status_verdict(503, NULL, 0).action == TR_SHAPE_RETRY &&
              strcmp(tr_status_verdict(503, NULL, 0).kind, "network") == 0,
          "status verdict: 5xx retries as network");
    check(tr_status_verdict(302, NULL, 0).action == TR_SHAPE_FATAL,
          "status verdict: a redirect is fatal");
    check(tr_status_verdict(204, NULL, 0).action == TR_SHAPE_APPLY, "status verdict: 204 applies");
}

int main(void) {
    test_shape();
    test_status_verdict();
    test_shape_native();
    test_shape_budget();
    test_pgtext();
    test_jwt();
    printf("1..%d\n", n_checks);
    return 0;
}
