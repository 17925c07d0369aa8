/* libFuzzer target: Postgres timestamps to ISO-8601 UTC (tr_pg_timestamp_iso, csrc/lib/pgtext.c).
 *
 * The input is the timestamp text, e.g. "2025-01-10 12:00:00.123456+05:30".
 * Checks, beyond the sanitizers (the input and the output buffer are exactly sized heap blocks):
 *   - an accepted timestamp gives exactly "YYYY-MM-DDTHH:MM:SS.mmmZ" with valid fields;
 *   - the output is a fixed point: converting it again gives itself;
 *   - it is the same instant: an independent reading of the input's fields and zone, through
 *     timegm(), equals the output's (milliseconds: the first three fraction digits). */
#define _DEFAULT_SOURCE /* timegm */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_assert.h"
#include "lib/pgtext.h"

static int num(const char *s, size_t at, size_t count) {
    int v = 0;
    for (size_t k = 0; k < count; k++)
        v = v * 10 + (s[at + k] - '0');
    return v;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static long long epoch_of(int Y, int M, int D, int h, int mi, int sec) {
    struct tm t;
    memset(&t, 0, sizeof t);
    t.tm_year = Y - 1900;
    t.tm_mon = M - 1;
    t.tm_mday = D;
    t.tm_hour = h;
    t.tm_min = mi;
    t.tm_sec = sec;
    return (long long)timegm(&t);
}

/* Check the output's shape; returns its instant in seconds and its milliseconds. */
static long long check_iso(const char *o, int *ms) {
    static const char pattern[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < TR_PG_ISO_LEN; i++) {
        if (pattern[i] == 'd')
            FUZZ_ASSERT(is_digit(o[i]), "a digit where the format has one");
        else
            FUZZ_ASSERT(o[i] == pattern[i], "a separator where the format has one");
    }
    FUZZ_ASSERT(o[TR_PG_ISO_LEN] == '\0', "the output is NUL-terminated");
    int Y = num(o, 0, 4), M = num(o, 5, 2), D = num(o, 8, 2), h = num(o, 11, 2), mi = num(o, 14, 2),
        sec = num(o, 17, 2);
    FUZZ_ASSERT(M >= 1 && M <= 12 && D >= 1 && D <= 31 && h <= 23 && mi <= 59 && sec <= 60,
                "fields in range");
    *ms = num(o, 20, 3);
    return epoch_of(Y, M, D, h, mi, sec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size ? size : 1);
    char *out = malloc(TR_PG_ISO_LEN + 1);
    FUZZ_ASSERT(s != NULL && out != NULL, "out of memory");
    memcpy(s, data, size);
    if (tr_pg_timestamp_iso(s, size, out) == 0) {
        int ms;
        long long t_out = check_iso(out, &ms);

        /* fixed point */
        char again[TR_PG_ISO_LEN + 1];
        FUZZ_ASSERT(tr_pg_timestamp_iso(out, TR_PG_ISO_LEN, again) == 0, "the output parses");
        FUZZ_ASSERT(memcmp(again, out, TR_PG_ISO_LEN + 1) == 0, "the output is a fixed point");

        /* the same instant, read independently: fixed positions, then fraction and zone */
        FUZZ_ASSERT(size >= 19, "accepted input has a date and a time");
        long long t_in = epoch_of(num(s, 0, 4), num(s, 5, 2), num(s, 8, 2), num(s, 11, 2),
                                  num(s, 14, 2), num(s, 17, 2));
        size_t i = 19;
        int want_ms = 0, k = 0;
        if (i < size && s[i] == '.') {
            for (i++; i < size && is_digit(s[i]); i++, k++)
                if (k < 3) want_ms = want_ms * 10 + (s[i] - '0');
            for (; k < 3; k++)
                want_ms *= 10;
        }
        long offset_min = 0;
        if (i < size && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i] == '-' ? -1 : 1;
            int oh = num(s, i + 1, 2), om = 0;
            i += 3;
            if (i < size && s[i] == ':') i++;
            if (i + 2 <= size && is_digit(s[i]) && is_digit(s[i + 1])) om = num(s, i, 2);
            offset_min = sign * (oh * 60L + om);
        }
        FUZZ_ASSERT(t_out == t_in - offset_min * 60, "the output is the input's instant in UTC");
        FUZZ_ASSERT(ms == want_ms, "milliseconds are the first three fraction digits");
    }
    free(out);
    free(s);
    return 0;
}
