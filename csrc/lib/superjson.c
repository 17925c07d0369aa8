#include "superjson.h"

#include <math.h>
#include <string.h>

static int is(const char *s, size_t n, const char *text) {
    return strlen(text) == n && memcmp(s, text, n) == 0;
}

tr_superjson_kind tr_superjson_kind_of(const char *name, size_t n) {
    if (is(name, n, "undefined")) return TR_SUPERJSON_UNDEFINED;
    if (is(name, n, "bigint")) return TR_SUPERJSON_BIGINT;
    if (is(name, n, "number")) return TR_SUPERJSON_NUMBER;
    if (is(name, n, "map")) return TR_SUPERJSON_MAP;
    return TR_SUPERJSON_KEEP;
}

int tr_superjson_bigint(const char *s, size_t n, int64_t *out) {
    size_t i = n > 0 && s[0] == '-';
    /* at most 19 digits, which cannot wrap a uint64; "0" but not "-0", "00" or "012" */
    if (n == i || n - i > 19 || (s[i] == '0' && (n - i != 1 || i != 0))) return 0;
    uint64_t v = 0;
    for (size_t k = i; k < n; k++) {
        if (s[k] < '0' || s[k] > '9') return 0;
        v = v * 10 + (uint64_t)(s[k] - '0');
    }
    if (v > (uint64_t)INT64_MAX + (i ? 1 : 0)) return 0;
    /* (-v computed in uint64 and converted: INT64_MIN itself has no positive twin) */
    *out = i ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 1;
}

int tr_superjson_special_number(const char *s, size_t n, double *out) {
    static const struct {
        const char *text;
        double value;
    } specials[] = {{"NaN", NAN}, {"Infinity", HUGE_VAL}, {"-Infinity", -HUGE_VAL}, {"-0", -0.0}};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        if (is(s, n, specials[i].text)) {
            *out = specials[i].value;
            return 1;
        }
    }
    return 0;
}

int tr_superjson_plain_field(const char *s, size_t n) {
    return memchr(s, '.', n) == NULL && memchr(s, '\\', n) == NULL;
}

void tr_superjson_leaves_init(tr_superjson_leaves *l) {
    l->count = 0;
    l->names_len = 0;
}

int tr_superjson_leaves_name(tr_superjson_leaves *l, const char *s, size_t n) {
    if (l->count == TR_SUPERJSON_LEAVES_MAX || n > TR_SUPERJSON_NAMES_MAX - l->names_len ||
        !tr_superjson_plain_field(s, n))
        return -1;
    for (int i = 0; i < l->count; i++)
        if (l->leaf[i].len == n && memcmp(l->names + l->leaf[i].at, s, n) == 0) return -1;
    tr_superjson_leaf *f = &l->leaf[l->count];
    f->at = (unsigned short)l->names_len;
    f->len = (unsigned short)n;
    if (n > 0) memcpy(l->names + l->names_len, s, n);
    l->names_len += n;
    return 0;
}

void tr_superjson_leaves_keep(tr_superjson_leaves *l, tr_superjson_kind kind) {
    l->leaf[l->count++].kind = (unsigned char)kind;
}

const char *tr_superjson_leaf_name(const tr_superjson_leaves *l, int i, size_t *n) {
    *n = l->leaf[i].len;
    return l->names + l->leaf[i].at;
}
