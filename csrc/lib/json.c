#include "json.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Nesting is tracked in a bit stack (1 = object, 0 = array) rather than by recursion, so the
 * C stack stays flat whatever the input. */
#define TR_JSON_HARD_MAX_DEPTH 4096

typedef struct parser {
    const char *s;
    size_t n, i;
    const tr_json_sink *sink;
    tr_buf *scratch; /* the caller's */
    const char *what;
    tr_json_status status;
} parser;

static int fail(parser *p, tr_json_status st, const char *what) {
    if (p->status == TR_JSON_OK) {
        p->status = st;
        p->what = what;
    }
    return -1;
}

static int sink_said(parser *p, int rc) {
    return rc == 0 ? 0 : fail(p, TR_JSON_STOPPED, "stopped by the receiver");
}

/* Called before every token; compact JSON (a shape log, a packet) has no white space at all, so
 * the first look is inline. */
static void skip_space_loop(parser *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->i++;
    }
}

static inline void skip_space(parser *p) {
    if (p->i < p->n && (unsigned char)p->s[p->i] > ' ') return;
    skip_space_loop(p);
}

static int literal(parser *p, const char *word, size_t len) {
    if (p->n - p->i < len || memcmp(p->s + p->i, word, len) != 0)
        return fail(p, TR_JSON_SYNTAX, "unexpected character");
    p->i += len;
    return 0;
}

static int hex4(parser *p, unsigned *out) {
    if (p->n - p->i < 4) return fail(p, TR_JSON_SYNTAX, "short \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return fail(p, TR_JSON_SYNTAX, "bad \\u escape");
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

static int put_utf8(parser *p, unsigned cp) {
    char b[4];
    size_t len;
    if (cp < 0x80) {
        b[0] = (char)cp;
        len = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3F));
        len = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | cp >> 12);
        b[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        len = 3;
    } else {
        b[0] = (char)(0xF0 | cp >> 18);
        b[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        b[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        len = 4;
    }
    return tr_buf_add_inline(p->scratch, b, len) == 0 ? 0
                                                      : fail(p, TR_JSON_MEMORY, "out of memory");
}

/* \uD83D\uDE00 pairs become one code point; a lone surrogate is kept as its own code point
 * (JavaScript strings may hold one, and JSON.stringify escapes it). */
static int unicode_escape(parser *p) {
    unsigned cp = 0; /* (set by hex4 when it returns 0) */
    if (hex4(p, &cp) != 0) return -1;
    if (cp >= 0xD800 && cp <= 0xDBFF && p->n - p->i >= 6 && p->s[p->i] == '\\' &&
        p->s[p->i + 1] == 'u') {
        size_t save = p->i;
        unsigned lo = 0;
        p->i += 2;
        if (hex4(p, &lo) != 0) return -1;
        if (lo >= 0xDC00 && lo <= 0xDFFF)
            return put_utf8(p, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
        p->i = save; /* not a pair: the second escape stands on its own */
    }
    return put_utf8(p, cp);
}

/* 1 for the bytes that end a run of plain string bytes: the control characters, the quote and
 * the backslash. One look-up a byte instead of three comparisons: strings are most of the bytes
 * of a shape log (JSON packets inside JSON). */
static const unsigned char ends_run[256] = {1, 1, 1, 1, 1, 1, 1, 1, 1,         1,         1, 1,
                                            1, 1, 1, 1, 1, 1, 1, 1, 1,         1,         1, 1,
                                            1, 1, 1, 1, 1, 1, 1, 1, ['"'] = 1, ['\\'] = 1};

/* The byte a two-byte escape stands for (0: not one of them; \u is handled apart). */
static const unsigned char simple_escape[256] = {
    ['"'] = '"',  ['\\'] = '\\', ['/'] = '/',  ['b'] = '\b',
    ['f'] = '\f', ['n'] = '\n',  ['r'] = '\r', ['t'] = '\t'};

/* Sixteen bytes at a time where the compiler has SSE2 (every x86-64): a mask of the bytes that
 * end a run, found with three compares instead of sixteen look-ups. The packets inside a shape
 * log have an escape every few bytes, so the point is not long runs but a cheap way to the next
 * ender and a copy of everything before it in one store. */
#if defined(__SSE2__) && defined(__GNUC__) /* (clang defines __GNUC__ too) */
#include <emmintrin.h>
#define TR_JSON_WIDE 16
static inline unsigned run_enders16(const unsigned char *u) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)u);
    __m128i quote = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
    __m128i backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
    __m128i control = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1F)), _mm_set1_epi8(0x1F));
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control));
}
static inline void copy16(char *dst, const unsigned char *src) {
    _mm_storeu_si128((__m128i *)(void *)dst, _mm_loadu_si128((const __m128i *)(const void *)src));
}
#define lowest_bit(m) ((size_t)__builtin_ctz(m))
#else
#define TR_JSON_WIDE 0 /* a byte at a time */
#endif

/* The index of the first byte at or after i that ends a run (n: none before the end). */
static inline size_t plain_run_end(const unsigned char *u, size_t i, size_t n) {
#if TR_JSON_WIDE
    while (n - i >= TR_JSON_WIDE) {
        unsigned m = run_enders16(u + i);
        if (m != 0) return i + lowest_bit(m);
        i += TR_JSON_WIDE;
    }
#endif
    while (i < n && !ends_run[u[i]])
        i++;
    return i;
}

/* Reads a string starting at the opening quote; on success the text is in (*out, *len). */
static int string(parser *p, const char **out, size_t *len) {
    size_t start = ++p->i;
    /* Fast path: no escapes, hand out the input bytes themselves. */
    while (p->i < p->n) {
        const unsigned char *u = (const unsigned char *)p->s;
        size_t i = p->i, n = p->n;
        i = plain_run_end(u, i, n);
        p->i = i;
        if (i >= n) break;
        unsigned char c = u[i];
        if (c == '"') {
            *out = p->s + start;
            *len = p->i - start;
            p->i++;
            return 0;
        }
        if (c == '\\') break;
        if (c < 0x20) return fail(p, TR_JSON_SYNTAX, "control character in string");
        p->i++;
    }
    tr_buf_reset(p->scratch);
    if (tr_buf_add(p->scratch, p->s + start, p->i - start) != 0)
        return fail(p, TR_JSON_MEMORY, "out of memory");
    const unsigned char *u = (const unsigned char *)p->s;
    while (p->i < p->n) {
        /* Unescape up to CHUNK input bytes straight into the buffer (the unescaped text of k
         * bytes is at most k bytes, and room for them is reserved once), so plain bytes and the
         * common escapes (\" in a JSON packet inside JSON) cost no call each. A \u escape goes
         * through put_utf8. */
        enum { CHUNK = 256 };
        size_t chunk = p->n - p->i < CHUNK ? p->n - p->i : CHUNK;
        tr_buf *b = p->scratch;
        if (tr_buf_reserve(b, chunk + TR_JSON_WIDE) != 0)
            return fail(p, TR_JSON_MEMORY, "out of memory");
        char *dst = b->data + b->len;
        size_t i = p->i, stop = p->i + chunk;
        int unicode = 0;
        while (i < stop) {
#if TR_JSON_WIDE
            /* The output so far is no longer than the input since the chunk began (< chunk
             * bytes), so a 16-byte store stays within the room reserved. */
            if (p->n - i >= TR_JSON_WIDE) {
                unsigned m = run_enders16(u + i);
                copy16(dst, u + i);
                if (m == 0) {
                    dst += TR_JSON_WIDE;
                    i += TR_JSON_WIDE;
                    continue;
                }
                dst += lowest_bit(m);
                i += lowest_bit(m);
                /* The escapes of a packet inside JSON (\" mostly, every few bytes) without the
                 * general way below. */
                if (u[i] == '\\' && i + 1 < p->n && simple_escape[u[i + 1]] != 0) {
                    *dst++ = (char)simple_escape[u[i + 1]];
                    i += 2;
                    continue;
                }
            }
#endif
            unsigned char c = u[i];
            if (!ends_run[c]) {
                *dst++ = (char)c;
                i++;
                continue;
            }
            if (c == '"') {
                b->len = (size_t)(dst - b->data);
                p->i = i + 1;
                *out = b->data;
                *len = b->len;
                return 0;
            }
            if (c < 0x20) {
                p->i = i + 1;
                return fail(p, TR_JSON_SYNTAX, "control character in string");
            }
            if (i + 1 >= p->n) { /* a backslash, the last byte */
                p->i = p->n;
                return fail(p, TR_JSON_SYNTAX, "unterminated string");
            }
            unsigned char e = u[i + 1];
            i += 2;
            if (e == 'u') {
                unicode = 1;
                break;
            }
            if (simple_escape[e] == 0) {
                p->i = i;
                return fail(p, TR_JSON_SYNTAX, "bad escape");
            }
            *dst++ = (char)simple_escape[e];
        }
        b->len = (size_t)(dst - b->data);
        p->i = i;
        if (unicode && unicode_escape(p) != 0) return -1;
    }
    return fail(p, TR_JSON_SYNTAX, "unterminated string");
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The powers of ten a double holds exactly. */
static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

int tr_decimal_fast(const char *s, size_t n, double *out) {
    size_t i = 0, digits = 0, frac = 0;
    int negative = 0;
    uint64_t m = 0;
    if (i < n && s[i] == '-') {
        negative = 1;
        i++;
    }
    for (; i < n && is_digit(s[i]); i++, digits++)
        m = m * 10 + (uint64_t)(s[i] - '0');
    if (digits == 0 || i >= n || s[i] != '.') return 0;
    for (i++; i < n && is_digit(s[i]); i++, frac++)
        m = m * 10 + (uint64_t)(s[i] - '0');
    /* Both m and 10^frac exact, so the one division rounds correctly, as strtod does. */
    if (i != n || frac == 0 || digits + frac > 15 || frac > 22) return 0;
    double d = (double)m / exact_pow10[frac];
    *out = negative ? -d : d;
    return 1;
}

static int number(parser *p) {
    size_t start = p->i;
    int negative = 0, integral = 1;
    if (p->s[p->i] == '-') {
        negative = 1;
        p->i++;
    }
    if (p->i >= p->n || !is_digit(p->s[p->i])) return fail(p, TR_JSON_SYNTAX, "bad number");
    if (p->s[p->i] == '0') {
        p->i++;
    } else {
        while (p->i < p->n && is_digit(p->s[p->i]))
            p->i++;
    }
    if (p->i < p->n && p->s[p->i] == '.') {
        integral = 0;
        p->i++;
        if (p->i >= p->n || !is_digit(p->s[p->i])) return fail(p, TR_JSON_SYNTAX, "bad number");
        while (p->i < p->n && is_digit(p->s[p->i]))
            p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        integral = 0;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        if (p->i >= p->n || !is_digit(p->s[p->i])) return fail(p, TR_JSON_SYNTAX, "bad number");
        while (p->i < p->n && is_digit(p->s[p->i]))
            p->i++;
    }
    size_t len = p->i - start;
    if (integral && len - (size_t)negative <= 18) {
        /* At most 18 digits always fit in an int64: no overflow check needed. */
        int64_t v = 0;
        for (size_t k = start + (size_t)negative; k < p->i; k++)
            v = v * 10 + (p->s[k] - '0');
        return sink_said(p, p->sink->integer(p->sink->ud, negative ? -v : v));
    }
    if (integral && len - (size_t)negative == 19) {
        /* 19 digits: fits unless above INT64_MAX (or below INT64_MIN). */
        uint64_t v = 0;
        for (size_t k = start + (size_t)negative; k < p->i; k++)
            v = v * 10 + (uint64_t)(p->s[k] - '0');
        if (!negative && v <= (uint64_t)INT64_MAX)
            return sink_said(p, p->sink->integer(p->sink->ud, (int64_t)v));
        if (negative && v <= (uint64_t)INT64_MAX + 1)
            return sink_said(p, p->sink->integer(p->sink->ud, v == (uint64_t)INT64_MAX + 1
                                                                  ? INT64_MIN
                                                                  : -(int64_t)v));
    }
    double d;
    if (!integral && tr_decimal_fast(p->s + start, len, &d))
        return sink_said(p, p->sink->number(p->sink->ud, d));
    char small[64];
    char *text = len < sizeof small ? small : malloc(len + 1);
    if (text == NULL) return fail(p, TR_JSON_MEMORY, "out of memory");
    memcpy(text, p->s + start, len);
    text[len] = '\0';
    d = strtod(text, NULL);
    if (text != small) free(text);
    return sink_said(p, p->sink->number(p->sink->ud, d));
}

static int scalar(parser *p) {
    char c = p->s[p->i];
    const char *str;
    size_t len;
    switch (c) {
    case '"':
        if (string(p, &str, &len) != 0) return -1;
        return sink_said(p, p->sink->string(p->sink->ud, str, len));
    case 't':
        if (literal(p, "true", 4) != 0) return -1;
        return sink_said(p, p->sink->boolean(p->sink->ud, 1));
    case 'f':
        if (literal(p, "false", 5) != 0) return -1;
        return sink_said(p, p->sink->boolean(p->sink->ud, 0));
    case 'n':
        if (literal(p, "null", 4) != 0) return -1;
        return sink_said(p, p->sink->null(p->sink->ud));
    default:
        if (c == '-' || is_digit(c)) return number(p);
        return fail(p, TR_JSON_SYNTAX, "unexpected character");
    }
}

static int run(parser *p, int max_depth) {
    unsigned char kinds[TR_JSON_HARD_MAX_DEPTH / 8];
    int depth = 0;
    memset(kinds, 0, sizeof kinds);
#define IN_OBJECT() (kinds[(depth - 1) / 8] >> ((depth - 1) % 8) & 1)
    for (;;) {
        /* expecting a value */
        skip_space(p);
        if (p->i >= p->n) return fail(p, TR_JSON_SYNTAX, "unexpected end");
        char c = p->s[p->i];
        if (c == '{' || c == '[') {
            if (depth >= max_depth) return fail(p, TR_JSON_DEPTH, "nested too deep");
            p->i++;
            int object = c == '{';
            if (object)
                kinds[depth / 8] |= (unsigned char)(1u << depth % 8);
            else
                kinds[depth / 8] &= (unsigned char)~(1u << depth % 8);
            depth++;
            if (sink_said(p, object ? p->sink->begin_object(p->sink->ud)
                                    : p->sink->begin_array(p->sink->ud)) != 0)
                return -1;
            skip_space(p);
            if (p->i < p->n && p->s[p->i] == (object ? '}' : ']')) {
                p->i++;
                depth--;
                if (sink_said(p, object ? p->sink->end_object(p->sink->ud)
                                        : p->sink->end_array(p->sink->ud)) != 0)
                    return -1;
                goto after_value;
            }
            if (object) goto object_key;
            continue;
        }
        if (scalar(p) != 0) return -1;
    after_value:
        for (;;) {
            if (depth == 0) return 0;
            skip_space(p);
            if (p->i >= p->n) return fail(p, TR_JSON_SYNTAX, "unexpected end");
            c = p->s[p->i++];
            int object = IN_OBJECT();
            if (c == ',') {
                if (object) goto object_key;
                break; /* next array element */
            }
            if (c != (object ? '}' : ']'))
                return fail(p, TR_JSON_SYNTAX, "expected , or a closing bracket");
            depth--;
            if (sink_said(p, object ? p->sink->end_object(p->sink->ud)
                                    : p->sink->end_array(p->sink->ud)) != 0)
                return -1;
        }
        continue;
    object_key : {
        const char *key;
        size_t len;
        skip_space(p);
        if (p->i >= p->n || p->s[p->i] != '"') return fail(p, TR_JSON_SYNTAX, "expected a key");
        if (string(p, &key, &len) != 0) return -1;
        if (sink_said(p, p->sink->key(p->sink->ud, key, len)) != 0) return -1;
        skip_space(p);
        if (p->i >= p->n || p->s[p->i] != ':') return fail(p, TR_JSON_SYNTAX, "expected :");
        p->i++;
    }
    }
#undef IN_OBJECT
}

tr_json_status tr_json_parse_with(const char *s, size_t n, int max_depth, const tr_json_sink *sink,
                                  tr_buf *scratch, size_t *error_at, const char **what) {
    parser p;
    memset(&p, 0, sizeof p);
    p.s = s;
    p.n = n;
    p.sink = sink;
    p.scratch = scratch;
    tr_buf_reset(scratch);
    if (max_depth < 0 || max_depth > TR_JSON_HARD_MAX_DEPTH) max_depth = TR_JSON_HARD_MAX_DEPTH;
    if (run(&p, max_depth) == 0) {
        skip_space(&p);
        if (p.i != n) fail(&p, TR_JSON_SYNTAX, "text after the value");
    }
    if (p.status != TR_JSON_OK) {
        if (error_at) *error_at = p.i;
        if (what) *what = p.what;
    }
    return p.status;
}

tr_json_status tr_json_parse(const char *s, size_t n, int max_depth, const tr_json_sink *sink,
                             size_t *error_at, const char **what) {
    tr_buf scratch;
    tr_buf_init(&scratch);
    tr_json_status st = tr_json_parse_with(s, n, max_depth, sink, &scratch, error_at, what);
    tr_buf_free(&scratch);
    return st;
}
