/* Unit tests of the streaming shape-log reader (csrc/lib/shapelog.c, no Lua): TAP output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shapelog_drive.h"

static int n_checks;

static void check(int ok, const char *what) {
    printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_checks, what);
}

/* body fed in pieces of `piece` bytes (0: all at once), then finished. */
static void run(drive *d, const char *body, size_t n, size_t piece) {
    drive_init(d);
    if (piece == 0) piece = n ? n : 1;
    for (size_t i = 0; i < n; i += piece)
        drive_feed(d, body + i, n - i < piece ? n - i : piece);
    drive_advance(d, 1);
}

/* The body whole, borrowed, at most `max` messages a call (reader:parse). */
static void run_borrowed(drive *d, const char *body, size_t n, int max) {
    drive_init(d);
    if (tr_shapelog_borrow(&d->r, body, n) != 0) d->oom = 1;
    for (int calls = 0; calls < 100000; calls++) {
        d->r.budget = max;
        drive_advance(d, 1);
        d->r.budget = -1;
        if (d->r.state == TR_SHAPELOG_END || d->r.state == TR_SHAPELOG_WHOLE ||
            d->r.state == TR_SHAPELOG_FAILED)
            break;
    }
}

/* Every split point, byte by byte, and borrowed one message a call all agree with the body
 * read at once. */
static int every_split_agrees(const char *body) {
    size_t n = strlen(body);
    drive ref, d;
    run(&ref, body, n, 0);
    int ok = 1;
    for (size_t piece = 1; piece <= n && ok; piece++) {
        run(&d, body, n, piece);
        ok = drive_same(&ref, &d) && !d.oom;
        drive_free(&d);
    }
    for (size_t cut = 0; cut <= n && ok; cut++) {
        drive_init(&d);
        drive_feed(&d, body, cut);
        drive_feed(&d, body + cut, n - cut);
        drive_advance(&d, 1);
        ok = drive_same(&ref, &d);
        drive_free(&d);
    }
    if (ok) {
        run_borrowed(&d, body, n, 1);
        ok = drive_same(&ref, &d);
        drive_free(&d);
    }
    drive_free(&ref);
    return ok;
}

static int message_is(const drive *d, int i, const char *want) {
    size_t off = 0;
    for (int k = 0; k < d->kept; k++) {
        uint64_t len;
        memcpy(&len, d->msgs.data + off, sizeof len);
        off += sizeof len;
        if (k == i) return len == strlen(want) && memcmp(d->msgs.data + off, want, len) == 0;
        off += len;
    }
    return 0;
}

static void test_messages(void) {
    static const char body[] = " [ {\"headers\":{\"operation\":\"insert\"},\"key\":\"a\",\"value\":"
                               "{\"x\":\"1\"}} ,\n{\"headers\":{\"control\":\"up-to-date\"}} ] ";
    drive d;
    run(&d, body, sizeof body - 1, 0);
    check(d.r.state == TR_SHAPELOG_END && d.kept == 2, "two messages, then the end");
    check(message_is(
              &d, 0,
              "{\"headers\":{\"operation\":\"insert\"},\"key\":\"a\",\"value\":{\"x\":\"1\"}}"),
          "the first message's bytes, exactly");
    check(message_is(&d, 1, "{\"headers\":{\"control\":\"up-to-date\"}}"),
          "the second message's bytes");
    check(tr_shapelog_ends_up_to_date(&d.r), "ends up to date");
    check(d.r.fed == sizeof body - 1, "counts the bytes fed");
    drive_free(&d);
    check(every_split_agrees(body), "any split gives the same messages");
    run(&d, "[]", 2, 0);
    check(d.r.state == TR_SHAPELOG_END && d.kept == 0, "[] is an empty log");
    drive_free(&d);
    check(every_split_agrees(" [ \t] \r\n"), "white space around an empty log, any split");
    check(every_split_agrees("[{\"a\":[1,{\"b\":\"]}\\\"\"}]},{}]"),
          "brackets and quotes inside strings, any split");
}

static void test_failures(void) {
    drive d;
    run(&d, "[{\"a\":1} {\"b\":2}]", 17, 0);
    check(d.r.state == TR_SHAPELOG_FAILED && d.r.what &&
              strcmp(d.r.what, "expected , or a closing bracket") == 0 && d.r.at == 10 &&
              d.kept == 1,
          "a missing comma: refused at the byte after it, the message before kept");
    drive_free(&d);
    check(every_split_agrees("[{\"a\":1} {\"b\":2}]"), "a missing comma, any split");
    run(&d, "[{\"a\":1}] x", 11, 0);
    check(d.r.state == TR_SHAPELOG_FAILED && strcmp(d.r.what, "text after the value") == 0 &&
              d.r.at == 10,
          "text after the array");
    drive_free(&d);
    run(&d, "[{\"a\":1}", 8, 0);
    check(d.r.state == TR_SHAPELOG_FAILED && strcmp(d.r.what, "unexpected end") == 0 && d.r.at == 8,
          "a body cut short: unexpected end at its end");
    drive_free(&d);
    run(&d, "", 0, 0);
    check(d.r.state == TR_SHAPELOG_FAILED && strcmp(d.r.what, "unexpected end") == 0 && d.r.at == 0,
          "an empty body: unexpected end");
    drive_free(&d);
    run(&d, "[{\"a\":1},5]", 11, 0);
    check(d.r.state == TR_SHAPELOG_FAILED && d.r.what == NULL && d.refused && d.kept == 1,
          "a message that is not an object: the caller's refusal");
    drive_free(&d);
    check(every_split_agrees("[{\"a\":1},5]"), "not an object, any split (5 may be 5x)");
    check(every_split_agrees("[5x]"), "bad JSON before the refusal, any split");
    check(every_split_agrees("[{\"a\":tru}]"), "bad JSON inside a message, any split");
    run(&d, "[{\"a\":1}x", 9, 0);
    size_t fed = d.r.fed;
    drive_feed(&d, "]", 1);
    check(d.r.state == TR_SHAPELOG_FAILED && d.r.fed == fed,
          "a refused body changes no more with later bytes");
    drive_free(&d);
}

static void test_whole(void) {
    drive d;
    static const char body[] = "{\"message\":\"not a log\"}";
    run(&d, body, sizeof body - 1, 3);
    check(d.r.state == TR_SHAPELOG_WHOLE && d.r.tail.len == sizeof body - 1 &&
              memcmp(d.r.tail.data, body, sizeof body - 1) == 0,
          "a body that is not an array is kept whole");
    drive_free(&d);
    check(every_split_agrees(body), "kept whole, any split");
}

static void test_bounds(void) {
    /* One message of 20000 bytes, fed a byte at a time: parsed again only once the tail has
     * doubled, so a bounded number of times. */
    size_t big = 20000;
    char *body = malloc(big + 64);
    size_t n = 0;
    n += (size_t)sprintf(body, "[{\"v\":\"");
    while (n < big)
        body[n++] = 'x';
    n += (size_t)sprintf(body + n, "\"},{}]");
    drive d;
    run(&d, body, n, 1);
    check(d.r.state == TR_SHAPELOG_END && d.kept == 2, "a long message fed a byte at a time");
    printf("# parses for a %zu-byte message fed byte by byte: %ld\n", n, d.handed);
    check(d.handed <= 40, "a long message is parsed a bounded number of times (log2 of it)");
    drive_free(&d);
    /* The tail never holds more than the message coming (twice over, by the retry rule) and
     * one piece: consumed bytes are forgotten. */
    free(body);
    char many[40000];
    n = 0;
    many[n++] = '[';
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%s{\"k\":\"%d\"}", i ? "," : "", i);
    many[n++] = ']';
    drive_init(&d);
    size_t most = 0;
    for (size_t i = 0; i < n; i += 7) {
        drive_feed(&d, many + i, n - i < 7 ? n - i : 7);
        if (d.r.tail.len > most) most = d.r.tail.len;
    }
    drive_advance(&d, 1);
    check(d.r.state == TR_SHAPELOG_END && d.kept == 1000, "a thousand messages in pieces of 7");
    printf("# most bytes held for a %zu-byte body: %zu\n", n, most);
    check(most <= 2 * d.max_msg + 7, "holds no more than the message coming and one piece");
    drive_free(&d);
}

static void test_up_to_date(void) {
    char body[2000];
    size_t n = 0;
    body[n++] = '[';
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(body + n, sizeof body - n,
                              "{\"headers\":{\"operation\":\"delete\"},"
                              "\"key\":\"%d\"},",
                              i);
    n += (size_t)snprintf(body + n, sizeof body - n, "{\"headers\":{\"control\":\"up-to-date\"}}]");
    drive d;
    run(&d, body, n, 5);
    check(n > TR_SHAPELOG_LAST_KEEP && tr_shapelog_ends_up_to_date(&d.r),
          "up to date from the last bytes of a long body fed in pieces");
    drive_free(&d);
    run(&d, body, n - 40, 5);
    check(!tr_shapelog_ends_up_to_date(&d.r), "not up to date before its last message");
    drive_free(&d);
    drive_init(&d);
    check(tr_shapelog_borrow(&d.r, body, n) == 0 && tr_shapelog_ends_up_to_date(&d.r) &&
              d.r.fed == n,
          "a borrowed body: up to date, its bytes counted");
    check(tr_shapelog_feed(&d.r, "x", 1) != 0, "no feed after a borrow");
    drive_free(&d);
    drive_init(&d);
    drive_feed(&d, "[", 1);
    check(tr_shapelog_borrow(&d.r, body, n) != 0, "no borrow after a feed");
    drive_free(&d);
}

int main(void) {
    test_messages();
    test_failures();
    test_whole();
    test_bounds();
    test_up_to_date();
    printf("1..%d\n", n_checks);
    return 0;
}
