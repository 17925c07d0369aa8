#include "pgtext.h"

#include <string.h>

#include "buf.h"

typedef struct parser {
    const char *s;
    size_t n, i;
    const tr_pg_array_sink *sink;
    tr_buf *scratch; /* the caller's */
    int stopped;
} parser;

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void skip_space(parser *p) {
    while (p->i < p->n && is_space(p->s[p->i]))
        p->i++;
}

static int emit_text(parser *p, const char *text, size_t len, int is_null) {
    if (p->sink->element(p->sink->ud, text, len, is_null) != 0) {
        p->stopped = 1;
        return -1;
    }
    return 0;
}

static int emit(parser *p, int is_null) {
    return emit_text(p, p->scratch->data ? p->scratch->data : "", p->scratch->len, is_null);
}

static int quoted_element(parser *p) {
    p->i++; /* opening quote */
    /* Fast path: no backslash before the closing quote, the input bytes are the element. */
    size_t start = p->i;
    while (p->i < p->n && p->s[p->i] != '"' && p->s[p->i] != '\\')
        p->i++;
    if (p->i < p->n && p->s[p->i] == '"') {
        p->i++;
        return emit_text(p, p->s + start, p->i - 1 - start, 0);
    }
    if (tr_buf_add(p->scratch, p->s + start, p->i - start) != 0) goto oom;
    while (p->i < p->n) {
        char c = p->s[p->i++];
        if (c == '"') return emit(p, 0);
        if (c == '\\') {
            if (p->i >= p->n) return -1;
            c = p->s[p->i++];
        }
        if (tr_buf_addc_inline(p->scratch, c) != 0) goto oom;
    }
    return -1;
oom:
    p->stopped = 1;
    return -1;
}

static int bare_element(parser *p) {
    size_t start = p->i;
    /* Fast path: no backslash, so the element is the input up to the delimiter, trailing
     * blanks trimmed (leading ones were skipped). */
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ',' || c == '}' || c == '\\') break;
        if (c == '{' || c == '"') return -1;
        p->i++;
    }
    if (p->i < p->n && p->s[p->i] != '\\') {
        if (p->i == start) return -1; /* empty element */
        size_t end = p->i;
        while (end > start && is_space(p->s[end - 1]))
            end--;
        /* Only an unquoted, unescaped NULL is the null value. */
        int is_null = end - start == 4 && strncmp(p->s + start, "NULL", 4) == 0;
        return emit_text(p, p->s + start, end - start, is_null);
    }
    p->i = start;
    size_t last_text = 0; /* scratch length up to the last non-space character */
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ',' || c == '}') break;
        if (c == '{' || c == '"') return -1;
        p->i++;
        if (c == '\\') {
            if (p->i >= p->n) return -1;
            c = p->s[p->i++];
            if (tr_buf_addc_inline(p->scratch, c) != 0) goto oom;
            last_text = p->scratch->len;
            continue;
        }
        if (tr_buf_addc_inline(p->scratch, c) != 0) goto oom;
        if (!is_space(c)) last_text = p->scratch->len;
    }
    if (p->i == start) return -1; /* empty element */
    p->scratch->len = last_text;
    return emit(p, 0); /* an escaped character: never the null value */
oom:
    p->stopped = 1;
    return -1;
}

static int array(parser *p, int depth) {
    if (depth > TR_PG_MAX_DEPTH) return -1;
    if (p->i >= p->n || p->s[p->i] != '{') return -1;
    p->i++;
    if (p->sink->open(p->sink->ud) != 0) {
        p->stopped = 1;
        return -1;
    }
    skip_space(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            skip_space(p);
            if (p->i >= p->n) return -1;
            char c = p->s[p->i];
            int rc;
            if (c == '{') {
                rc = array(p, depth + 1);
            } else {
                tr_buf_reset(p->scratch);
                rc = c == '"' ? quoted_element(p) : bare_element(p);
            }
            if (rc != 0) return -1;
            skip_space(p);
            if (p->i >= p->n) return -1;
            c = p->s[p->i++];
            if (c == '}') break;
            if (c != ',') return -1;
        }
    }
    if (p->sink->close(p->sink->ud) != 0) {
        p->stopped = 1;
        return -1;
    }
    return 0;
}

int tr_pg_array_parse_with(const char *s, size_t n, const tr_pg_array_sink *sink, tr_buf *scratch,
                           size_t *error_at) {
    parser p = {s, n, 0, sink, scratch, 0};
    tr_buf_reset(scratch);
    skip_space(&p);
    /* Arrays with non-default bounds carry a "[1:3]=" decoration before the braces. */
    if (p.i < n && s[p.i] == '[') {
        while (p.i < n && s[p.i] != '=')
            p.i++;
        if (p.i < n) p.i++;
    }
    int rc = array(&p, 1);
    if (rc == 0) {
        skip_space(&p);
        if (p.i != n) rc = -1;
    }
    if (rc != 0 && error_at) *error_at = p.i;
    if (rc != 0) return p.stopped ? -2 : -1;
    return 0;
}

/* --- timestamps --- */

static int digits(const char *s, size_t n, size_t at, size_t count, int *out) {
    int v = 0;
    if (at + count > n) return -1;
    for (size_t k = 0; k < count; k++) {
        char c = s[at + k];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static long days_from_civil(long y, int m, int d) {
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(long z, long *y, int *m, int *d) {
    z += 719468;
    long era = (z >= 0 ? z : z - 146096) / 146097;
    long doe = z - era * 146097;
    long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int y, int m) {
    static const int len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : len[m - 1];
}

/* Write v as exactly width decimal digits (v is known to fit). */
static void put_digits(char *out, int v, int width) {
    for (int k = width - 1; k >= 0; k--) {
        out[k] = (char)('0' + v % 10);
        v /= 10;
    }
}

int tr_pg_timestamp_iso(const char *s, size_t n, char *out) {
    int Y, M, D, h, mi, sec, ms = 0;
    if (digits(s, n, 0, 4, &Y) || n < 19 || s[4] != '-' || digits(s, n, 5, 2, &M) || s[7] != '-' ||
        digits(s, n, 8, 2, &D) || (s[10] != ' ' && s[10] != 'T') || digits(s, n, 11, 2, &h) ||
        s[13] != ':' || digits(s, n, 14, 2, &mi) || s[16] != ':' || digits(s, n, 17, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > days_in_month(Y, M) || h > 23 || mi > 59 || sec > 60)
        return -1;
    size_t i = 19;
    if (i < n && s[i] == '.') {
        size_t k = 0;
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (k < 3) ms = ms * 10 + (s[i] - '0');
            k++;
            i++;
        }
        if (k == 0) return -1;
        for (; k < 3; k++)
            ms *= 10;
    }
    long offset_min = 0;
    if (i < n && s[i] == 'Z') {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i] == '-' ? -1 : 1, oh, om = 0;
        if (digits(s, n, i + 1, 2, &oh)) return -1;
        i += 3;
        if (i < n && s[i] == ':') {
            if (digits(s, n, i + 1, 2, &om)) return -1; /* "+05:" is not a zone */
            i += 3;
        } else if (i < n && digits(s, n, i, 2, &om) == 0) {
            i += 2;
        }
        if (oh > 23 || om > 59) return -1;
        offset_min = sign * (oh * 60L + om);
    }
    if (i != n) return -1;
    long y = Y, rem = h * 60L + mi;
    if (offset_min != 0) { /* already UTC (the usual case): the date stays as it is */
        long minutes = days_from_civil(Y, M, D) * 1440L + rem - offset_min;
        long days = minutes >= 0 ? minutes / 1440 : -((-minutes + 1439) / 1440);
        rem = minutes - days * 1440;
        civil_from_days(days, &y, &M, &D);
        if (y < 0 || y > 9999) return -1;
    }
    put_digits(out, (int)y, 4);
    out[4] = '-';
    put_digits(out + 5, M, 2);
    out[7] = '-';
    put_digits(out + 8, D, 2);
    out[10] = 'T';
    put_digits(out + 11, (int)(rem / 60), 2);
    out[13] = ':';
    put_digits(out + 14, (int)(rem % 60), 2);
    out[16] = ':';
    put_digits(out + 17, sec, 2);
    out[19] = '.';
    put_digits(out + 20, ms, 3);
    out[23] = 'Z';
    out[24] = '\0';
    return 0;
}

int tr_pg_array_parse(const char *s, size_t n, const tr_pg_array_sink *sink, size_t *error_at) {
    tr_buf scratch;
    tr_buf_init(&scratch);
    int rc = tr_pg_array_parse_with(s, n, sink, &scratch, error_at);
    tr_buf_free(&scratch);
    return rc;
}
