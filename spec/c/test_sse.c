/* Unit tests of the Server-Sent Events parser and the S2 batch payload (csrc/lib/sse.c): TAP.
 * Every stream is fed whole, split at every byte boundary into two pieces, and one byte at a
 * time; all three must give the same events, the same end (bytes dropped at EOF) and the same
 * error. The test vectors of shared/protocol/streams.md section 7 are among the cases. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/lib/sse.h"

static int n_checks, n_failed;

static void check(int ok, const char *what) {
    printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_checks, what);
    if (!ok) n_failed++;
}

/* What a parse gave, as text: one line per event "type|id|data" (LF in data as \n), a
 * comment as ":text", then "end N" (bytes dropped at EOF) or "error NAME@OFFSET". */
static void add(tr_buf *out, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            tr_buf_adds(out, "\\n");
        else if (s[i] == '\r')
            tr_buf_adds(out, "\\r");
        else
            tr_buf_addc(out, s[i]);
    }
}

static void record(tr_buf *out, const tr_sse *p) {
    const tr_sse_ev *e = tr_sse_event(p);
    if (e->kind == TR_SSE_KIND_COMMENT) {
        tr_buf_addc(out, ':');
        add(out, e->data, e->data_len);
    } else {
        add(out, e->type, e->type_len);
        tr_buf_addc(out, '|');
        if (e->has_id) add(out, e->id, e->id_len);
        tr_buf_addc(out, '|');
        add(out, e->data, e->data_len);
    }
    tr_buf_addc(out, '\n');
}

/* Feed one piece entirely, recording events; 0 once an error stopped it. */
static int feed_all(tr_sse *p, const char *s, size_t n, tr_buf *out) {
    while (n > 0) {
        size_t used = 0;
        tr_sse_state st = tr_sse_feed(p, s, n, &used);
        if (used > n) return 0;
        s += used;
        n -= used;
        if (st == TR_SSE_EVENT)
            record(out, p);
        else if (st == TR_SSE_ERROR)
            return 0;
        else if (n != 0) {
            tr_buf_adds(out, "MORE with input left\n");
            return 0;
        }
    }
    return 1;
}

static void finish(tr_sse *p, tr_buf *out, int ok) {
    char tail[96];
    if (!ok || tr_sse_error_of(p) != TR_SSE_OK)
        snprintf(tail, sizeof tail, "error %s@%zu", tr_sse_error_name(tr_sse_error_of(p)),
                 tr_sse_error_offset(p));
    else
        snprintf(tail, sizeof tail, "end %zu", tr_sse_finish(p));
    tr_buf_adds(out, tail);
}

/* split == 0: whole; > 0: two pieces at that offset; < 0: byte by byte. */
static void run(const char *in, size_t len, long split, const tr_sse_limits *lim, tr_buf *out) {
    tr_buf_reset(out);
    tr_sse *p = tr_sse_new(lim);
    int ok = 1;
    if (split < 0) {
        for (size_t i = 0; ok && i < len; i++)
            ok = feed_all(p, in + i, 1, out);
    } else {
        size_t cut = split == 0 ? len : (size_t)split;
        ok = feed_all(p, in, cut, out);
        if (ok) ok = feed_all(p, in + cut, len - cut, out);
    }
    finish(p, out, ok);
    tr_sse_free(p);
}

static void case_n(const char *what, const char *in, size_t len, const tr_sse_limits *lim,
                   const char *want) {
    tr_buf got;
    tr_buf_init(&got);
    int ok = 1;
    char where[64] = "whole";
    run(in, len, 0, lim, &got);
    ok = strcmp(tr_buf_cstr(&got), want) == 0;
    for (size_t cut = 1; ok && cut < len; cut++) {
        run(in, len, (long)cut, lim, &got);
        ok = strcmp(tr_buf_cstr(&got), want) == 0;
        if (!ok) snprintf(where, sizeof where, "split at %zu", cut);
    }
    if (ok) {
        run(in, len, -1, lim, &got);
        ok = strcmp(tr_buf_cstr(&got), want) == 0;
        if (!ok) snprintf(where, sizeof where, "byte by byte");
    }
    check(ok, what);
    if (!ok) printf("# %s: got\n# %s\n# want\n# %s\n", where, tr_buf_cstr(&got), want);
    tr_buf_free(&got);
}

static void test(const char *what, const char *in, const char *want) {
    case_n(what, in, strlen(in), NULL, want);
}

static void test_c(const char *what, const char *in, const char *want) {
    tr_sse_limits lim = {0, 0, 1};
    case_n(what, in, strlen(in), &lim, want);
}

static void test_framing(void) {
    test("one event", "data: hello\n\n", "message||hello\nend 0");
    test("type, id and data", "event: batch\nid: 7\ndata: x\n\n", "batch|7|x\nend 0");
    test("data lines are joined by LF", "data: a\ndata: b\ndata:\ndata: c\n\n",
         "message||a\\nb\\n\\nc\nend 0");
    test("one space after the colon is dropped, not two", "data:  two\ndata:none\n\n",
         "message|| two\\nnone\nend 0");
    test("a field without a colon has an empty value", "data\n\ndata\ndata\n\n",
         "message||\nmessage||\\n\nend 0");
    test("an empty data line is an event", "data:\n\n", "message||\nend 0");
    test("CRLF line ends", "event: e\r\ndata: x\r\n\r\n", "e||x\nend 0");
    test("CR line ends", "event: e\rdata: x\r\rdata: y\r\r", "e||x\nmessage||y\nend 0");
    test("mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", "message||a\\nb\\nc\nend 0");
    test("CR CR is two line ends", "data: a\r\r", "message||a\nend 0");
    test("a BOM at the start is skipped",
         "\xEF\xBB\xBF"
         "data: x\n\n",
         "message||x\nend 0");
    test("only one BOM is skipped",
         "\xEF\xBB\xBF\xEF\xBB\xBF"
         "data: x\n\n",
         "end 0"); /* the second BOM makes the field name "\xEF\xBB\xBFdata": ignored */
    test("a partial BOM is text",
         "\xEF\xBB"
         "data: x\n\ndata: y\n\n",
         "message||y\nend 0");
    test("the id persists from event to event", "id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
         "message|1|a\nmessage|1|b\nmessage||c\nend 0");
    static const char nul_id[] = "id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n";
    case_n("an id with NUL is ignored", nul_id, sizeof nul_id - 1, NULL,
           "message|1|a\nmessage|1|b\nend 0");
    test("an event without data is not dispatched, but its id counts",
         "id: 5\nevent: nothing\n\ndata: x\n\n", "message|5|x\nend 0");
    test("the event type does not carry over", "event: a\n\ndata: x\n\n", "message||x\nend 0");
    test("unknown fields are ignored", "foo: bar\ndata: x\nDATA: y\n\n", "message||x\nend 0");
    test("comments are skipped", ": ping\n\n:\ndata: x\n: inside\n\n", "message||x\nend 0");
    test_c("comments are reported when asked", ": ping\n\ndata: x\n:inside\n\n",
           ":ping\n:inside\nmessage||x\nend 0");
    test("the last field line wins for event", "event: a\nevent: b\ndata: x\n\n", "b||x\nend 0");
    test("blank lines between events do nothing", "\n\n\ndata: x\n\n\n\n", "message||x\nend 0");
    test("an unfinished event is dropped at EOF", "data: x\n\ndata: partial\n",
         "message||x\nend 14");
    test("a partial line is dropped at EOF", "data: x\n\ndata: parti", "message||x\nend 11");
    test("a trailing comment is a clean end", "data: x\n\n: ping\n", "message||x\nend 0");
    test("no input, clean end", "", "end 0");
    test("data with colons keeps them", "data: {\"a\":\"b:c\"}\n\n",
         "message||{\"a\":\"b:c\"}\nend 0");
}

static void test_retry(void) {
    tr_sse *p = tr_sse_new(NULL);
    check(tr_sse_retry(p) == -1, "no retry before one came");
    const char *s = "retry: 2500\n\nretry: 12x\n\nretry:\n\n";
    tr_sse_feed(p, s, strlen(s), NULL);
    check(tr_sse_retry(p) == 2500, "retry takes ASCII digits only");
    const char *t = "retry: 99999999999999999999999\n";
    tr_sse_feed(p, t, strlen(t), NULL);
    check(tr_sse_retry(p) > 2500, "a huge retry saturates");
    tr_sse_free(p);
}

static void test_vectors(void) {
    /* 7(a), v2 */
    test("7(a) v2: three batches, a ping and [DONE]",
         "event: batch\n"
         "id: 0,1,41\n"
         "data: {\"records\":[{\"seq_num\":0,\"timestamp\":1761825601000,\"body\":\"{\\\"data\\\":"
         "\\\"Hello\\\",\\\"id\\\":\\\"a1B2c3D\\\"}\"}],\"tail\":{\"seq_num\":1,\"timestamp\":"
         "1761825601000}}\n"
         "\n"
         "event: batch\n"
         "id: 1,2,80\n"
         "data: {\"records\":[{\"seq_num\":1,\"timestamp\":1761825601200,\"body\":\"{\\\"data\\\":"
         "{\\\"n\\\":2},\\\"id\\\":\\\"e4F5g6H\\\"}\"}],\"tail\":{\"seq_num\":2,\"timestamp\":"
         "1761825601200}}\n"
         "\n"
         "event: ping\n"
         "data: {\"timestamp\":1761825606400}\n"
         "\n"
         "data: [DONE]\n"
         "\n",
         "batch|0,1,41|{\"records\":[{\"seq_num\":0,\"timestamp\":1761825601000,\"body\":\"{\\\""
         "data\\\":\\\"Hello\\\",\\\"id\\\":\\\"a1B2c3D\\\"}\"}],\"tail\":{\"seq_num\":1,"
         "\"timestamp\":1761825601000}}\n"
         "batch|1,2,80|{\"records\":[{\"seq_num\":1,\"timestamp\":1761825601200,\"body\":\"{\\\""
         "data\\\":{\\\"n\\\":2},\\\"id\\\":\\\"e4F5g6H\\\"}\"}],\"tail\":{\"seq_num\":2,"
         "\"timestamp\":1761825601200}}\n"
         "ping|1,2,80|{\"timestamp\":1761825606400}\n"
         "message|1,2,80|[DONE]\n"
         "end 0");
    /* 7(a), v1 */
    test("7(a) v1: ids, data lines and a ping comment",
         "id: 1761825601000-0\ndata: \"Hello\"\n\n"
         "id: 1761825601200-0\ndata: {\"n\":2}\n\n"
         "id: 1761825601400-0\ndata: \"!\"\n\n"
         ": ping\n\n",
         "message|1761825601000-0|\"Hello\"\n"
         "message|1761825601200-0|{\"n\":2}\n"
         "message|1761825601400-0|\"!\"\n"
         "end 0");
    /* 7(b).1: cut mid-stream, mid-event */
    test("7(b) cut mid-event: the partial event is dropped",
         "event: batch\nid: 0,1,41\ndata: {\"records\":[]}\n\nevent: batch\nid: 1,2,80\ndata: "
         "{\"rec",
         "batch|0,1,41|{\"records\":[]}\nend 35");
    /* 7(b).5: event: error */
    test("7(b) event: error then close",
         "event: batch\nid: 0,1,41\ndata: {\"records\":[]}\n\nevent: error\ndata: backend "
         "restarting\n\n",
         "batch|0,1,41|{\"records\":[]}\nerror|0,1,41|backend restarting\nend 0");
}

static void test_limits(void) {
    tr_sse_limits small_line = {8, 0, 0};
    case_n("a line over max_line is an error", "data: 12\n\ndata: 123\n\n", 21, &small_line,
           "message||12\nerror line_too_long@18");
    case_n("a line at max_line is fine", "data: 12\n\n", 10, &small_line, "message||12\nend 0");
    tr_sse_limits small_event = {0, 6, 0};
    case_n("an event over max_event is an error", "data: abc\ndata: def\n\n", 21, &small_event,
           "error event_too_large@19");
    case_n("an event at max_event is fine", "data: abc\ndata: de\n\n", 20, &small_event,
           "message||abc\\nde\nend 0");
    case_n("the event type counts toward max_event", "event: abcd\ndata: xyz\n\n", 24, &small_event,
           "error event_too_large@21");

    /* The error is sticky. */
    tr_sse *p = tr_sse_new(&small_line);
    size_t used = 99;
    tr_sse_feed(p, "data: 1234567890", 16, &used);
    check(tr_sse_error_of(p) == TR_SSE_E_LINE_TOO_LONG, "a long line fails while it is read");
    check(tr_sse_feed(p, "\n\n", 2, &used) == TR_SSE_ERROR && used == 0, "the error is sticky");
    check(strcmp(tr_sse_error_name(TR_SSE_E_LINE_TOO_LONG), "line_too_long") == 0 &&
              strcmp(tr_sse_error_name((tr_sse_error)99), "unknown") == 0 &&
              strcmp(tr_sse_error_message((tr_sse_error)99), "unknown error") == 0,
          "error names and sentences");
    tr_sse_free(p);

    /* A 1 MiB line fed in one piece and in 4 KiB pieces. */
    size_t n = 1024 * 1024;
    char *big = malloc(n + 16);
    if (big != NULL) {
        memcpy(big, "data: ", 6);
        memset(big + 6, 'x', n);
        memcpy(big + 6 + n, "\n\n", 2);
        size_t total = n + 8, at = 0, got = 0;
        p = tr_sse_new(NULL);
        while (at < total) {
            size_t piece = total - at < 4096 ? total - at : 4096;
            size_t u = 0;
            if (tr_sse_feed(p, big + at, piece, &u) == TR_SSE_EVENT)
                got = tr_sse_event(p)->data_len;
            at += u;
            if (u == 0) break;
        }
        check(got == n, "a 1 MiB data line in 4 KiB pieces");
        tr_sse_free(p);
        free(big);
    }
}

static void test_api(void) {
    tr_sse *p = tr_sse_new(NULL);
    size_t used = 5;
    check(tr_sse_feed(p, NULL, 3, &used) == TR_SSE_MORE && used == 0, "NULL data feeds nothing");
    const char *s = "id: a\ndata: 1\n\ndata: 2\n\n";
    check(tr_sse_feed(p, s, strlen(s), &used) == TR_SSE_EVENT && used == 15,
          "feed stops right after the event's blank line");
    size_t idn;
    const char *id = tr_sse_last_id(p, &idn);
    check(idn == 1 && id[0] == 'a', "the last event id");
    check(tr_sse_finish(p) == 0, "finish between events drops nothing");
    const char *t = "\xEF\xBB\xBF"
                    "data: again\n\n";
    check(tr_sse_feed(p, t, strlen(t), &used) == TR_SSE_EVENT && tr_sse_event(p)->data_len == 5 &&
              tr_sse_event(p)->has_id,
          "after finish a new stream may start with a BOM; the id is kept");
    tr_sse_free(p);
    tr_sse_free(NULL);
}

/* ---- the S2 batch payload ---- */

static int batch(const char *json, tr_s2_batch *b, char *err, size_t n) {
    return tr_s2_batch_parse(b, json, strlen(json), err, n);
}

static int body_is(const tr_s2_batch *b, size_t i, const char *want) {
    const tr_s2_record *r = &b->records[i];
    return r->body_len == strlen(want) && memcmp(b->bodies.data + r->body, want, r->body_len) == 0;
}

static void test_batch(void) {
    tr_s2_batch b;
    tr_s2_batch_init(&b);
    char err[128] = "";
    int rc =
        batch("{\"records\":[{\"seq_num\":0,\"timestamp\":1761825601000,\"body\":\"{\\\"data\\\":"
              "\\\"Hello\\\",\\\"id\\\":\\\"a1B2c3D\\\"}\"}],\"tail\":{\"seq_num\":1,"
              "\"timestamp\":1761825601000}}",
              &b, err, sizeof err);
    check(rc == 0 && b.n == 1 && b.records[0].seq_num == 0 &&
              b.records[0].timestamp == 1761825601000LL && b.records[0].kind == TR_S2_DATA &&
              body_is(&b, 0, "{\"data\":\"Hello\",\"id\":\"a1B2c3D\"}"),
          "7(a) batch: one data record, its body unescaped");
    check(b.has_tail && b.tail_seq_num == 1 && b.tail_timestamp == 1761825601000LL, "its tail");

    rc = batch("{\"records\":[{\"seq_num\":5,\"timestamp\":1,\"headers\":[[\"\",\"trim\"]],"
               "\"body\":\"xx\"},{\"seq_num\":6,\"timestamp\":2,\"headers\":[[\"trigger-control\","
               "\"settled\"]]},{\"seq_num\":7,\"timestamp\":3,\"headers\":[[\"a\",\"b\"]],"
               "\"extra\":{\"deep\":[1,[2,{\"x\":null}]]}},{\"seq_num\":8,\"body\":\"\"}],"
               "\"other\":[true,false]}",
               &b, err, sizeof err);
    check(rc == 0 && b.n == 4 && b.records[0].kind == TR_S2_COMMAND &&
              b.records[1].kind == TR_S2_CONTROL && b.records[1].body_len == 0 &&
              b.records[2].kind == TR_S2_DATA && b.records[2].body_len == 0 &&
              b.records[3].timestamp == -1 && !b.has_tail,
          "command, control and plain records; unknown keys skipped; body and headers optional");

    rc = batch("{\"timestamp\":1761825606400}", &b, err, sizeof err);
    check(rc == 0 && b.n == 0 && b.timestamp == 1761825606400LL && !b.has_tail, "a ping");
    rc = batch("{\"timestamp\":5,\"tail\":{\"seq_num\":3,\"timestamp\":4}}", &b, err, sizeof err);
    check(rc == 0 && b.has_tail && b.tail_seq_num == 3, "a ping with a tail");
    rc = batch("{\"records\":[],\"tail\":null}", &b, err, sizeof err);
    check(rc == 0 && b.n == 0 && !b.has_tail, "no records, null tail");

    struct {
        const char *json, *why;
    } bad[] = {
        {"[DONE]", "not JSON"},
        {"[1]", "not an object"},
        {"{\"records\":{}}", "records not an array"},
        {"{\"records\":[1]}", "a record not an object"},
        {"{\"records\":[{\"body\":\"x\"}]}", "a record without seq_num"},
        {"{\"records\":[{\"seq_num\":-1}]}", "a negative seq_num"},
        {"{\"records\":[{\"seq_num\":1.5}]}", "a fractional seq_num"},
        {"{\"records\":[{\"seq_num\":\"1\"}]}", "a seq_num string"},
        {"{\"records\":[{\"seq_num\":1,\"body\":5}]}", "a body that is not a string"},
        {"{\"records\":[{\"seq_num\":1,\"headers\":[[\"a\"]]}]}", "a header that is not a pair"},
        {"{\"records\":[{\"seq_num\":1,\"headers\":[[\"a\",1]]}]}", "a header value not a string"},
        {"{\"records\":[{\"seq_num\":1,\"headers\":{}}]}", "headers not an array"},
        {"{\"tail\":{\"timestamp\":1}}", "a tail without seq_num"},
        {"{\"records\":[{\"seq_num\":1}]", "cut short"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        rc = batch(bad[i].json, &b, err, sizeof err);
        char what[160];
        snprintf(what, sizeof what, "refused: %s", bad[i].why);
        check(rc == -1 && b.n == 0 && strncmp(err, "not an S2 batch: ", 17) == 0, what);
    }
    /* Deep nesting inside an unknown key is bounded. */
    char deep[400];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{\"x\":");
    for (int i = 0; i < 100; i++)
        deep[k++] = '[';
    for (int i = 0; i < 100; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = '\0';
    check(batch(deep, &b, err, sizeof err) == -1, "nesting past 64 is refused");
    tr_s2_batch_free(&b);
}

int main(void) {
    test_framing();
    test_retry();
    test_vectors();
    test_limits();
    test_api();
    test_batch();
    printf("1..%d\n", n_checks);
    return n_failed ? 1 : 0;
}
