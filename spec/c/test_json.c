/* Unit tests of the JSON parser (csrc/lib/json.c, no Lua): TAP output. Each text is parsed into a
 * canonical trace of what the sink saw, compared with the expected one. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../csrc/lib/json.h"

static int n_checks;

static void check(int ok, const char *what) {
    printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_checks, what);
}

typedef struct trace {
    tr_buf out;
    long stop_at; /* stop the parse at this call (0: never) */
    long calls;
} trace;

static int put(trace *t, const char *s, size_t n) {
    if (t->stop_at && ++t->calls == t->stop_at) return 1;
    return tr_buf_add(&t->out, s, n) == 0 ? 0 : -1;
}
static int t_null(void *ud) { return put(ud, "n;", 2); }
static int t_boolean(void *ud, int v) { return put(ud, v ? "t;" : "f;", 2); }
static int t_integer(void *ud, int64_t v) {
    char b[32];
    int n = snprintf(b, sizeof b, "i%lld;", (long long)v);
    return put(ud, b, (size_t)n);
}
static int t_number(void *ud, double v) {
    char b[40];
    int n = snprintf(b, sizeof b, "d%.17g;", v);
    return put(ud, b, (size_t)n);
}
/* strings as s<len>:<bytes, non-printable ones as \xHH>; */
static int t_text(trace *t, char tag, const char *s, size_t n) {
    char b[32];
    int k = snprintf(b, sizeof b, "%c%zu:", tag, n);
    if (put(t, b, (size_t)k) != 0) return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) {
            if (tr_buf_addc(&t->out, (char)c) != 0) return -1;
        } else {
            k = snprintf(b, sizeof b, "\\x%02X", c);
            if (tr_buf_add(&t->out, b, (size_t)k) != 0) return -1;
        }
    }
    return tr_buf_addc(&t->out, ';') == 0 ? 0 : -1;
}
static int t_string(void *ud, const char *s, size_t n) { return t_text(ud, 's', s, n); }
static int t_key(void *ud, const char *s, size_t n) { return t_text(ud, 'k', s, n); }
static int t_begin_object(void *ud) { return put(ud, "{", 1); }
static int t_end_object(void *ud) { return put(ud, "}", 1); }
static int t_begin_array(void *ud) { return put(ud, "[", 1); }
static int t_end_array(void *ud) { return put(ud, "]", 1); }

static tr_json_status parse(const char *s, size_t n, int depth, trace *t, size_t *at,
                            const char **what) {
    tr_json_sink sink = {t_null, t_boolean,    t_integer,     t_number,    t_string, t_begin_object,
                         t_key,  t_end_object, t_begin_array, t_end_array, t};
    tr_buf scratch;
    tr_buf_init(&scratch);
    tr_buf_reset(&t->out);
    t->calls = 0;
    *at = 0;
    *what = NULL;
    tr_json_status st = tr_json_parse_with(s, n, depth, &sink, &scratch, at, what);
    tr_buf_free(&scratch);
    return st;
}

/* text parses (depth 64) to the trace `want` */
static void parses_to(const char *text, size_t n, const char *want, const char *what) {
    trace t;
    memset(&t, 0, sizeof t);
    tr_buf_init(&t.out);
    size_t at;
    const char *why;
    tr_json_status st = parse(text, n, 64, &t, &at, &why);
    int ok = st == TR_JSON_OK && strcmp(tr_buf_cstr(&t.out), want) == 0;
    if (!ok) printf("# status %d at %zu (%s), trace %s\n", st, at, why ? why : "-", t.out.data);
    check(ok, what);
    tr_buf_free(&t.out);
}
#define PARSES_TO(text, want, what) parses_to(text, sizeof text - 1, want, what)

/* text is refused with status st, at byte `at_want`, for reason `why_want` */
static void refused(const char *text, size_t n, int depth, tr_json_status st_want, size_t at_want,
                    const char *why_want, const char *what) {
    trace t;
    memset(&t, 0, sizeof t);
    tr_buf_init(&t.out);
    size_t at;
    const char *why;
    tr_json_status st = parse(text, n, depth, &t, &at, &why);
    int ok = st == st_want && at == at_want && why && strcmp(why, why_want) == 0;
    if (!ok) printf("# status %d at %zu (%s)\n", st, at, why ? why : "-");
    check(ok, what);
    tr_buf_free(&t.out);
}
#define REFUSED(text, st, at, why, what) refused(text, sizeof text - 1, 64, st, at, why, what)

static void test_escapes(void) {
    PARSES_TO("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"",
              "s17:a\"b\\c/d\\x08e\\x0Cf\\x0Ag\\x0Dh\\x09i;", "the simple escapes");
    PARSES_TO("\"\\u00e9\\u20AC\"", "s5:\\xC3\\xA9\\xE2\\x82\\xAC;", "\\u escapes as UTF-8");
    PARSES_TO("\"\\uD83D\\uDE00\"", "s4:\\xF0\\x9F\\x98\\x80;",
              "a surrogate pair is one code point");
    PARSES_TO("\"\\uD800x\"", "s4:\\xED\\xA0\\x80x;", "a lone high surrogate is kept");
    PARSES_TO("\"\\uD800\\u0041\"", "s4:\\xED\\xA0\\x80A;",
              "a high surrogate before another escape: both stand alone");
    PARSES_TO("\"\\uDE00\"", "s3:\\xED\\xB8\\x80;", "a lone low surrogate is kept");
    PARSES_TO("\"\\u0000\"", "s1:\\x00;", "\\u0000 is a NUL byte inside the string");
    PARSES_TO("{\"a\\u0000b\":1}", "{k3:a\\x00b;i1;}", "a NUL inside a key");
    PARSES_TO("\"\xc3\xa9\"", "s2:\\xC3\\xA9;", "UTF-8 bytes pass as they are");
    REFUSED("\"a\x01\"", TR_JSON_SYNTAX, 2, "control character in string",
            "a raw control byte in a string is refused");
    REFUSED("\"a\0\"", TR_JSON_SYNTAX, 2, "control character in string",
            "a raw NUL byte in a string is refused");
    REFUSED("1\0", TR_JSON_SYNTAX, 1, "text after the value", "a NUL byte after the value");
    REFUSED("\"\\x\"", TR_JSON_SYNTAX, 3, "bad escape", "an unknown escape");
    REFUSED("\"\\u12G4\"", TR_JSON_SYNTAX, 6, "bad \\u escape", "a bad \\u escape");
    REFUSED("\"\\u12", TR_JSON_SYNTAX, 3, "short \\u escape", "a \\u escape cut short");
    REFUSED("\"abc", TR_JSON_SYNTAX, 4, "unterminated string", "a string cut short");
    /* long strings with escapes cross the unescaper's 256-byte chunks */
    char text[2100], want[2500];
    size_t n = 0, w = 0;
    text[n++] = '"';
    for (int i = 0; i < 400; i++) {
        memcpy(text + n, "ab\\n", 4);
        n += 4;
        memcpy(want + w, "ab\\x0A", 6);
        w += 6;
    }
    text[n++] = '"';
    char expect[2600];
    snprintf(expect, sizeof expect, "s1200:%.*s;", (int)w, want);
    parses_to(text, n, expect, "1,200 bytes with an escape every 3 cross the chunks");
}

static void test_numbers(void) {
    PARSES_TO("[0,-0,7,-12,123456789012345678]", "[i0;i0;i7;i-12;i123456789012345678;]",
              "integers");
    PARSES_TO("[9223372036854775807,-9223372036854775808]",
              "[i9223372036854775807;i-9223372036854775808;]", "the int64 limits are integers");
    PARSES_TO("[9223372036854775808,-9223372036854775809]",
              "[d9.2233720368547758e+18;d-9.2233720368547758e+18;]",
              "past the int64 limits: doubles");
    PARSES_TO("[12345678901234567890123]", "[d1.2345678901234568e+22;]", "many digits: a double");
    PARSES_TO("[1.5,0.1,-2.25,1e2,1E-2,2.5e+3]",
              "[d1.5;d0.10000000000000001;d-2.25;d100;d0.01;d2500;]", "fractions and exponents");
    PARSES_TO("[3.141592653589793238]", "[d3.1415926535897931;]",
              "more digits than a double holds");
    REFUSED("01", TR_JSON_SYNTAX, 1, "text after the value", "a leading zero");
    REFUSED("1.", TR_JSON_SYNTAX, 2, "bad number", "a point without digits");
    REFUSED("-", TR_JSON_SYNTAX, 1, "bad number", "a sign alone");
    REFUSED("1e+", TR_JSON_SYNTAX, 3, "bad number", "an exponent without digits");
    REFUSED(".5", TR_JSON_SYNTAX, 0, "unexpected character", "a point first");
    REFUSED("+1", TR_JSON_SYNTAX, 0, "unexpected character", "a plus sign first");
    double d = 0;
    check(tr_decimal_fast("3.25", 4, &d) == 1 && d == 3.25, "decimal_fast: 3.25");
    check(tr_decimal_fast("-0.001", 6, &d) == 1 && d == strtod("-0.001", NULL),
          "decimal_fast: agrees with strtod");
    check(tr_decimal_fast("1.2345678901234567", 18, &d) == 0,
          "decimal_fast: more than 15 digits are strtod's");
    check(tr_decimal_fast("1e5", 3, &d) == 0, "decimal_fast: an exponent is strtod's");
}

static void test_structure(void) {
    PARSES_TO(" {\"a\" : [true, false, null, {}, []] , \"b\":{\"c\":\"d\"}} \n",
              "{k1:a;[t;f;n;{}[]]k1:b;{k1:c;s1:d;}}", "objects, arrays, literals, white space");
    REFUSED("{\"a\" 1}", TR_JSON_SYNTAX, 5, "expected :", "a key without a colon");
    REFUSED("{\"a\":1,}", TR_JSON_SYNTAX, 7, "expected a key", "a comma before the brace");
    REFUSED("[1,]", TR_JSON_SYNTAX, 3, "unexpected character", "a comma before the bracket");
    REFUSED("[1 2]", TR_JSON_SYNTAX, 4, "expected , or a closing bracket", "a missing comma");
    REFUSED("[1}", TR_JSON_SYNTAX, 3, "expected , or a closing bracket", "brackets that differ");
    REFUSED("", TR_JSON_SYNTAX, 0, "unexpected end", "nothing");
    REFUSED("[1", TR_JSON_SYNTAX, 2, "unexpected end", "an array cut short");
    REFUSED("tru", TR_JSON_SYNTAX, 0, "unexpected character", "a literal cut short");
    REFUSED("{} {}", TR_JSON_SYNTAX, 3, "text after the value", "two texts");
}

static void test_depth(void) {
    char deep[10000];
    for (int i = 0; i < 5000; i++) {
        deep[i] = '[';
        deep[9999 - i] = ']';
    }
    PARSES_TO("[[[1]]]", "[[[i1;]]]", "three levels within a limit of 64");
    refused("[[[1]]]", 7, 2, TR_JSON_DEPTH, 2, "nested too deep",
            "a third level over a limit of 2");
    refused(deep, 10000, -1, TR_JSON_DEPTH, 4096, "nested too deep",
            "5,000 levels: refused at the hard limit of 4,096, no recursion");
    trace t;
    memset(&t, 0, sizeof t);
    tr_buf_init(&t.out);
    size_t at;
    const char *why;
    check(parse(deep + 5000 - 4096, 2 * 4096, -1, &t, &at, &why) == TR_JSON_OK,
          "4,096 levels are read");
    t.stop_at = 3;
    check(parse("[1,2,3]", 7, 64, &t, &at, &why) == TR_JSON_STOPPED &&
              strcmp(tr_buf_cstr(&t.out), "[i1;") == 0 && at == 4,
          "a sink that stops ends the parse there");
    tr_buf_free(&t.out);
}

int main(void) {
    test_escapes();
    test_numbers();
    test_structure();
    test_depth();
    printf("1..%d\n", n_checks);
    return 0;
}
