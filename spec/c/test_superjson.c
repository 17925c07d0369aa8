/* Unit tests of superjson's pure decisions (csrc/lib/superjson.c, no Lua): TAP output. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../csrc/lib/superjson.h"

static int n_checks;

static void check(int ok, const char *what) {
    printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_checks, what);
}

static int kind(const char *s) { return (int)tr_superjson_kind_of(s, strlen(s)); }

static void test_kinds(void) {
    check(kind("undefined") == TR_SUPERJSON_UNDEFINED, "undefined drops its field");
    check(kind("bigint") == TR_SUPERJSON_BIGINT, "bigint");
    check(kind("number") == TR_SUPERJSON_NUMBER, "number");
    check(kind("map") == TR_SUPERJSON_MAP, "map is not a leaf");
    const char *kept[] = {"Date", "set", "regexp", "URL", "Error", "symbol", "custom", ""};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "'%s' keeps its JSON form", kept[i]);
        check(kind(kept[i]) == TR_SUPERJSON_KEEP, what);
    }
    check(kind("Map") == TR_SUPERJSON_KEEP && kind("BigInt") == TR_SUPERJSON_KEEP &&
              kind("Undefined") == TR_SUPERJSON_KEEP,
          "names are case-sensitive");
    check(kind("bigin") == TR_SUPERJSON_KEEP && kind("bigints") == TR_SUPERJSON_KEEP &&
              kind("ma") == TR_SUPERJSON_KEEP && kind("maps") == TR_SUPERJSON_KEEP,
          "a prefix or a longer name is not the name");
    check(tr_superjson_kind_of("map\0x", 5) == TR_SUPERJSON_KEEP &&
              tr_superjson_kind_of("bigint\0", 7) == TR_SUPERJSON_KEEP,
          "a NUL byte is just a byte: the whole length counts");
    check(tr_superjson_kind_of("mapx", 3) == TR_SUPERJSON_MAP, "only n bytes are read");
}

static int bigint(const char *s, int64_t *v) { return tr_superjson_bigint(s, strlen(s), v); }

static void test_bigint(void) {
    int64_t v = 42;
    check(bigint("0", &v) && v == 0, "0");
    check(bigint("7", &v) && v == 7, "7");
    check(bigint("-7", &v) && v == -7, "-7");
    check(bigint("1234567890123", &v) && v == INT64_C(1234567890123), "13 digits");
    check(bigint("9223372036854775807", &v) && v == INT64_MAX, "INT64_MAX");
    check(bigint("-9223372036854775808", &v) && v == INT64_MIN, "INT64_MIN");
    check(bigint("-9223372036854775807", &v) && v == -INT64_MAX, "-INT64_MAX");
    check(bigint("1000000000000000000", &v) && v == INT64_C(1000000000000000000), "19 digits");
    v = 42;
    check(!bigint("9223372036854775808", &v) && v == 42, "INT64_MAX + 1 stays text");
    check(!bigint("-9223372036854775809", &v) && v == 42, "INT64_MIN - 1 stays text");
    check(!bigint("9999999999999999999", &v), "19 nines stay text");
    check(!bigint("10000000000000000000", &v) && !bigint("-10000000000000000000", &v),
          "20 digits stay text");
    check(!bigint("18446744073709551616", &v), "2^64 stays text (no wrap)");
    check(!bigint("-0", &v), "-0 stays text");
    check(!bigint("00", &v) && !bigint("007", &v) && !bigint("-07", &v) && !bigint("-00", &v),
          "leading zeros stay text");
    check(!bigint("+7", &v) && !bigint("+0", &v), "a '+' sign stays text");
    check(!bigint("--7", &v) && !bigint("-+7", &v) && !bigint("7-", &v), "odd signs stay text");
    check(!bigint("", &v) && !bigint("-", &v), "empty, or a sign alone, stays text");
    check(!bigint(" 7", &v) && !bigint("7 ", &v) && !bigint("1e3", &v) && !bigint("1.0", &v) &&
              !bigint("0x10", &v) && !bigint("12a", &v),
          "spaces, exponents, points, hex, letters stay text");
    check(!tr_superjson_bigint("12\0"
                               "3",
                               4, &v),
          "a NUL byte inside stays text");
    check(tr_superjson_bigint("123", 2, &v) && v == 12, "only n bytes are read");
    check(!tr_superjson_bigint(NULL, 0, &v), "no bytes at all");
}

static int special(const char *s, double *v) {
    return tr_superjson_special_number(s, strlen(s), v);
}

static void test_special_numbers(void) {
    double v = 1;
    check(special("NaN", &v) && isnan(v), "NaN");
    check(special("Infinity", &v) && isinf(v) && v > 0, "Infinity");
    check(special("-Infinity", &v) && isinf(v) && v < 0, "-Infinity");
    check(special("-0", &v) && v == 0 && signbit(v), "-0 is negative zero");
    v = 1;
    check(!special("0", &v) && !special("nan", &v) && !special("inf", &v) &&
              !special("+Infinity", &v) && !special("-NaN", &v) && !special("", &v) &&
              !special("Infinityx", &v) && !special("-Infinit", &v) && v == 1,
          "anything else is not special, and *out is left alone");
    check(!tr_superjson_special_number("NaN\0", 4, &v), "a trailing NUL byte counts");
}

static void test_plain_fields(void) {
    check(tr_superjson_plain_field("createdAt", 9), "a plain name");
    check(tr_superjson_plain_field("", 0), "the empty name");
    check(!tr_superjson_plain_field("a.b", 3) && !tr_superjson_plain_field(".", 1),
          "a dot is a path");
    check(!tr_superjson_plain_field("a\\.b", 4), "a backslash is an escape");
    check(tr_superjson_plain_field("a\0.", 2), "only n bytes are read");
    check(!tr_superjson_plain_field("a\0.", 3), "past a NUL byte too");
}

static void test_leaves(void) {
    tr_superjson_leaves l;
    tr_superjson_leaves_init(&l);
    size_t n;
    check(l.count == 0 && l.names_len == 0, "empty when made");
    check(tr_superjson_leaves_name(&l, "createdAt", 9) == 0, "a name");
    tr_superjson_leaves_keep(&l, TR_SUPERJSON_KEEP);
    check(tr_superjson_leaves_name(&l, "id", 2) == 0, "another");
    tr_superjson_leaves_keep(&l, TR_SUPERJSON_BIGINT);
    const char *a = tr_superjson_leaf_name(&l, 0, &n);
    int first = n == 9 && memcmp(a, "createdAt", 9) == 0 && l.leaf[0].kind == TR_SUPERJSON_KEEP;
    const char *b = tr_superjson_leaf_name(&l, 1, &n);
    check(l.count == 2 && first && n == 2 && memcmp(b, "id", 2) == 0 &&
              l.leaf[1].kind == TR_SUPERJSON_BIGINT,
          "kept with their kinds, in order");
    check(tr_superjson_leaves_name(&l, "id", 2) != 0, "a name twice is refused");
    check(tr_superjson_leaves_name(&l, "a.b", 3) != 0, "a path is refused");
    check(tr_superjson_leaves_name(&l, "a\\b", 3) != 0, "an escape is refused");
    check(tr_superjson_leaves_name(&l, "i", 1) == 0 && tr_superjson_leaves_name(&l, "id\0", 3) == 0,
          "a prefix, or the name and a NUL byte, is another name");
    check(l.count == 2, "a name not kept is not counted");

    tr_superjson_leaves_init(&l);
    int ok = 1;
    for (int i = 0; i < TR_SUPERJSON_LEAVES_MAX; i++) {
        char name[8];
        int k = snprintf(name, sizeof name, "f%d", i);
        ok = ok && tr_superjson_leaves_name(&l, name, (size_t)k) == 0;
        tr_superjson_leaves_keep(&l, TR_SUPERJSON_UNDEFINED);
    }
    check(ok && l.count == TR_SUPERJSON_LEAVES_MAX, "32 leaves are kept");
    check(tr_superjson_leaves_name(&l, "more", 4) != 0, "a 33rd is refused");

    static char big[TR_SUPERJSON_NAMES_MAX + 1];
    memset(big, 'x', sizeof big);
    tr_superjson_leaves_init(&l);
    check(tr_superjson_leaves_name(&l, big, TR_SUPERJSON_NAMES_MAX + 1) != 0,
          "a name longer than the room is refused");
    check(tr_superjson_leaves_name(&l, big, TR_SUPERJSON_NAMES_MAX - 1) == 0,
          "one that fits is kept");
    tr_superjson_leaves_keep(&l, TR_SUPERJSON_KEEP);
    check(tr_superjson_leaves_name(&l, "yy", 2) != 0, "past the room: refused");
    check(tr_superjson_leaves_name(&l, "y", 1) == 0, "up to the last byte: kept");
    tr_superjson_leaves_keep(&l, TR_SUPERJSON_KEEP);
    check(l.names_len == TR_SUPERJSON_NAMES_MAX && tr_superjson_leaves_name(&l, "", 0) == 0,
          "the room full: an empty name still fits");
}

int main(void) {
    test_kinds();
    test_bigint();
    test_special_numbers();
    test_plain_fields();
    test_leaves();
    printf("1..%d\n", n_checks);
    return n_checks > 0 ? 0 : 1;
}
