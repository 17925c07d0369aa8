/* Unit tests of row blobs (csrc/lib/rowblob.c, no Lua): TAP output. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../csrc/lib/rowblob.h"

static int n_checks;

static void check(int ok, const char *what) {
    printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_checks, what);
}

/* A blob of the columns named <prefix><i> for i in [from, to) by `step`, each valued <i>. */
static int columns_blob(tr_buf *b, const char *prefix, long from, long to, long step) {
    char name[32], value[32];
    if (tr_rowblob_start(b) != 0) return -1;
    for (long i = from; i < to; i += step) {
        int n = snprintf(name, sizeof name, "%s%ld", prefix, i);
        int v = snprintf(value, sizeof value, "%ld", i);
        if (tr_rowblob_name(b, name, (size_t)n) != 0 || tr_rowblob_string(b, value, (size_t)v) != 0)
            return -1;
    }
    return 0;
}

static void test_rowblob_merge(void) {
    enum { N = 100000 };
    tr_buf old, changes, out;
    tr_buf_init(&old);
    tr_buf_init(&changes);
    tr_buf_init(&out);
    /* old: c0..c99999; changes: every other one of them and as many new columns */
    int built = columns_blob(&old, "c", 0, N, 1) == 0;
    built = built && tr_rowblob_start(&changes) == 0;
    for (long i = 0; built && i < N; i += 2) {
        char name[32];
        int n = snprintf(name, sizeof name, "c%ld", i);
        built = tr_rowblob_name(&changes, name, (size_t)n) == 0 &&
                tr_rowblob_string(&changes, "new", 3) == 0;
        n = snprintf(name, sizeof name, "d%ld", i);
        built = built && tr_rowblob_name(&changes, name, (size_t)n) == 0 &&
                tr_rowblob_null(&changes) == 0;
    }
    check(built, "rowblob: 100,000-column blobs built");
    size_t compares = 0;
    int rc =
        tr_rowblob_merge_counted(old.data, old.len, changes.data, changes.len, &out, &compares);
    check(rc == 0, "rowblob: a 100,000-column merge");
    /* the old columns the changes do not name (the odd ones, in order), then the changes */
    size_t pos = 0, members = 0;
    tr_rowblob_member m;
    int order = 1;
    char want[32];
    while (tr_rowblob_next(out.data, out.len, &pos, &m) == 1) {
        long i = (long)members;
        if (i < N / 2)
            snprintf(want, sizeof want, "c%ld", 2 * i + 1);
        else
            snprintf(want, sizeof want, "%c%ld", (i - N / 2) % 2 ? 'd' : 'c', (i - N / 2) / 2 * 2);
        order = order && m.name_len == strlen(want) && memcmp(m.name, want, m.name_len) == 0 &&
                (i >= N / 2 || (m.tag == 's' && strcmp(m.s, want + 1) == 0));
        members++;
    }
    check(order && members == N / 2 + N, "rowblob: merged columns in order, old values kept");
    /* linear: a name is compared with a few of the changes' names, not with all of them
     * (scanning them was 100,000 x 100,000 / 2 comparisons here) */
    if (compares > (size_t)4 * N) printf("# %zu names compared\n", compares);
    check(compares <= (size_t)4 * N, "rowblob: a merge compares a few names per column");
    /* a name the changes hold twice, an empty name, an old blob that is cut short */
    tr_buf_reset(&changes);
    built = tr_rowblob_start(&changes) == 0 && tr_rowblob_name(&changes, "c1", 2) == 0 &&
            tr_rowblob_null(&changes) == 0 && tr_rowblob_name(&changes, "", 0) == 0 &&
            tr_rowblob_boolean(&changes, 1) == 0 && tr_rowblob_name(&changes, "c1", 2) == 0 &&
            tr_rowblob_integer(&changes, 7) == 0 && columns_blob(&old, "c", 0, 3, 1) == 0;
    rc = tr_rowblob_merge(old.data, old.len, changes.data, changes.len, &out);
    pos = 0;
    members = 0;
    order = 1;
    const char *names[] = {"c0", "c2", "c1", "", "c1"};
    while (tr_rowblob_next(out.data, out.len, &pos, &m) == 1 && members < 5) {
        order = order && m.name_len == strlen(names[members]) &&
                memcmp(m.name, names[members], m.name_len) == 0;
        members++;
    }
    check(built && rc == 0 && order && members == 5 && pos == out.len,
          "rowblob: names given twice or empty merge as tables do");
    check(tr_rowblob_merge(old.data, old.len - 1, changes.data, changes.len, &out) == -1 &&
              tr_rowblob_merge(old.data, old.len, changes.data, changes.len - 1, &out) == -1,
          "rowblob: a malformed blob is refused");
    tr_buf_free(&old);
    tr_buf_free(&changes);
    tr_buf_free(&out);
}

/* Every tag written, read back as it was written. */
static void test_round_trip(void) {
    tr_buf b;
    tr_buf_init(&b);
    static const char nul[] = "a\0b";
    int built = tr_rowblob_start(&b) == 0 && tr_rowblob_name(&b, "s", 1) == 0 &&
                tr_rowblob_string(&b, nul, 3) == 0 && tr_rowblob_name(&b, "n", 1) == 0 &&
                tr_rowblob_null(&b) == 0 && tr_rowblob_name(&b, "t", 1) == 0 &&
                tr_rowblob_boolean(&b, 1) == 0 && tr_rowblob_name(&b, "f", 1) == 0 &&
                tr_rowblob_boolean(&b, 0) == 0 && tr_rowblob_name(&b, "i", 1) == 0 &&
                tr_rowblob_integer(&b, INT64_MIN) == 0 && tr_rowblob_name(&b, "d", 1) == 0 &&
                tr_rowblob_number(&b, -0.5) == 0 && tr_rowblob_name(&b, "e", 1) == 0 &&
                tr_rowblob_string(&b, "", 0) == 0;
    check(built && tr_rowblob_is(b.data, b.len), "rowblob: every tag written; it is a blob");
    tr_rowblob_member m[8];
    size_t pos = 0;
    int k = 0, rc;
    while (k < 8 && (rc = tr_rowblob_next(b.data, b.len, &pos, &m[k])) == 1)
        k++;
    check(k == 7 && pos == b.len, "rowblob: seven members read back, to the end");
    check(m[0].tag == 's' && m[0].len == 3 && memcmp(m[0].s, nul, 3) == 0 && m[0].s[3] == '\0',
          "rowblob: a string keeps its NUL byte, and a NUL follows it");
    check(m[1].tag == 'n' && m[2].tag == 't' && m[3].tag == 'f', "rowblob: null, true, false");
    check(m[4].tag == 'i' && m[4].i == INT64_MIN, "rowblob: an integer, exactly");
    check(m[5].tag == 'd' && m[5].d == -0.5, "rowblob: a number, exactly");
    check(m[6].tag == 's' && m[6].len == 0 && m[6].s[0] == '\0', "rowblob: an empty string");
    check(m[0].name_len == 1 && m[0].name[0] == 's' && m[6].name[0] == 'e', "rowblob: the names");
    /* every prefix of the blob: read as far as it goes, then refused or ended, never past n */
    int cut_ok = 1;
    for (size_t n = 0; n < b.len; n++) {
        size_t p = 0;
        tr_rowblob_member x;
        int r;
        int steps = 0;
        while ((r = tr_rowblob_next(b.data, n, &p, &x)) == 1 && steps < 10)
            steps++;
        if (p > n || (n >= TR_ROWBLOB_MAGIC_LEN && r == 0 && steps == 7)) cut_ok = 0;
        if (n < TR_ROWBLOB_MAGIC_LEN && (tr_rowblob_is(b.data, n) || r != -1)) cut_ok = 0;
    }
    check(cut_ok, "rowblob: a blob cut anywhere is never read past its end");
    check(!tr_rowblob_is("{}", 2) && !tr_rowblob_is("", 0), "rowblob: JSON text is no blob");
    tr_buf_free(&b);
}

static void test_limits(void) {
    tr_buf b;
    tr_buf_init(&b);
    char name[300];
    memset(name, 'x', sizeof name);
    tr_rowblob_start(&b);
    check(tr_rowblob_name(&b, name, TR_ROWBLOB_NAME_MAX) == 0,
          "rowblob: a name of 255 bytes is kept");
    size_t len = b.len;
    check(tr_rowblob_name(&b, name, TR_ROWBLOB_NAME_MAX + 1) == -1 && b.len == len,
          "rowblob: a longer name is refused, the blob unchanged");
    tr_rowblob_null(&b);
    size_t pos = 0;
    tr_rowblob_member m;
    check(tr_rowblob_next(b.data, b.len, &pos, &m) == 1 && m.name_len == 255 && m.tag == 'n',
          "rowblob: the 255-byte name reads back");
    tr_buf_free(&b);
}

/* Partial updates: the changed columns over the old row, as tables merge. */
static void test_partial_updates(void) {
    tr_buf old, ch, out;
    tr_buf_init(&old);
    tr_buf_init(&ch);
    tr_buf_init(&out);
    int built =
        tr_rowblob_start(&old) == 0 && tr_rowblob_name(&old, "id", 2) == 0 &&
        tr_rowblob_string(&old, "run_1", 5) == 0 && tr_rowblob_name(&old, "status", 6) == 0 &&
        tr_rowblob_string(&old, "QUEUED", 6) == 0 && tr_rowblob_name(&old, "output", 6) == 0 &&
        tr_rowblob_null(&old) == 0 && tr_rowblob_start(&ch) == 0 &&
        tr_rowblob_name(&ch, "status", 6) == 0 && tr_rowblob_string(&ch, "COMPLETED", 9) == 0 &&
        tr_rowblob_name(&ch, "output", 6) == 0 && tr_rowblob_string(&ch, "{}", 2) == 0;
    int rc = tr_rowblob_merge(old.data, old.len, ch.data, ch.len, &out);
    const char *names[] = {"id", "status", "output"};
    const char *values[] = {"run_1", "COMPLETED", "{}"};
    size_t pos = 0;
    int k = 0, ok = built && rc == 0;
    tr_rowblob_member m;
    while (ok && tr_rowblob_next(out.data, out.len, &pos, &m) == 1) {
        ok = k < 3 && m.name_len == strlen(names[k]) && memcmp(m.name, names[k], m.name_len) == 0 &&
             m.tag == 's' && strcmp(m.s, values[k]) == 0;
        k++;
    }
    check(ok && k == 3, "rowblob: an update of two columns keeps the third");
    tr_buf_reset(&ch);
    tr_rowblob_start(&ch);
    rc = tr_rowblob_merge(old.data, old.len, ch.data, ch.len, &out);
    check(rc == 0 && out.len == old.len && memcmp(out.data, old.data, old.len) == 0,
          "rowblob: an update of nothing keeps the row as it was");
    tr_buf_reset(&old);
    tr_rowblob_start(&old);
    tr_buf_reset(&ch);
    tr_rowblob_start(&ch);
    tr_rowblob_name(&ch, "a", 1);
    tr_rowblob_boolean(&ch, 1);
    rc = tr_rowblob_merge(old.data, old.len, ch.data, ch.len, &out);
    check(rc == 0 && out.len == ch.len && memcmp(out.data, ch.data, ch.len) == 0,
          "rowblob: an update of an empty row is the update");
    check(tr_rowblob_merge("{}", 2, ch.data, ch.len, &out) == -1,
          "rowblob: an old row that is no blob is refused");
    tr_buf_free(&old);
    tr_buf_free(&ch);
    tr_buf_free(&out);
}

/* Replay: the members to a sink as the parser gave them. */
typedef struct counts {
    int begin, end, keys, values, stop_after;
} counts;
static int c_value(counts *c) { return ++c->values == c->stop_after ? 7 : 0; }
static int c_null(void *ud) { return c_value(ud); }
static int c_boolean(void *ud, int v) {
    (void)v;
    return c_value(ud);
}
static int c_integer(void *ud, int64_t v) {
    (void)v;
    return c_value(ud);
}
static int c_number(void *ud, double v) {
    (void)v;
    return c_value(ud);
}
static int c_string(void *ud, const char *s, size_t n) {
    (void)s;
    (void)n;
    return c_value(ud);
}
static int c_key(void *ud, const char *s, size_t n) {
    (void)s;
    (void)n;
    ((counts *)ud)->keys++;
    return 0;
}
static int c_begin(void *ud) {
    ((counts *)ud)->begin++;
    return 0;
}
static int c_end(void *ud) {
    ((counts *)ud)->end++;
    return 0;
}

static void test_replay(void) {
    tr_buf b;
    tr_buf_init(&b);
    columns_blob(&b, "c", 0, 5, 1);
    tr_rowblob_name(&b, "n", 1);
    tr_rowblob_null(&b);
    counts c = {0, 0, 0, 0, 0};
    tr_json_sink sink = {c_null, c_boolean, c_integer, c_number, c_string, c_begin,
                         c_key,  c_end,     c_begin,   c_end,    &c};
    check(tr_rowblob_replay(b.data, b.len, &sink, 1, 1) == 0 && c.begin == 1 && c.end == 1 &&
              c.keys == 6 && c.values == 6,
          "rowblob: replay gives an object of six members");
    memset(&c, 0, sizeof c);
    check(tr_rowblob_replay(b.data, b.len, &sink, 0, 0) == 0 && c.begin == 0 && c.end == 0 &&
              c.keys == 6,
          "rowblob: replay without opening or closing");
    memset(&c, 0, sizeof c);
    c.stop_after = 3;
    check(tr_rowblob_replay(b.data, b.len, &sink, 1, 1) == 7 && c.values == 3 && c.end == 0,
          "rowblob: a sink that stops ends the replay with its code");
    memset(&c, 0, sizeof c);
    check(tr_rowblob_replay(b.data, b.len - 1, &sink, 1, 1) == -1,
          "rowblob: replay refuses a malformed blob");
    tr_buf_free(&b);
}

int main(void) {
    test_round_trip();
    test_limits();
    test_partial_updates();
    test_replay();
    test_rowblob_merge();
    printf("1..%d\n", n_checks);
    return 0;
}
