#include "rowblob.h"

#include <stdlib.h>
#include <string.h>

int tr_rowblob_start(tr_buf *b) {
    tr_buf_reset(b);
    return tr_buf_add(b, TR_ROWBLOB_MAGIC, TR_ROWBLOB_MAGIC_LEN);
}

int tr_rowblob_name(tr_buf *b, const char *s, size_t n) {
    if (n > TR_ROWBLOB_NAME_MAX) return -1;
    if (tr_buf_addc_inline(b, (char)(unsigned char)n) != 0) return -1;
    return tr_buf_add_inline(b, s, n);
}

static int tagged(tr_buf *b, char tag, const void *p, size_t n) {
    if (tr_buf_addc_inline(b, tag) != 0) return -1;
    return n == 0 ? 0 : tr_buf_add_inline(b, p, n);
}

int tr_rowblob_string(tr_buf *b, const char *s, size_t n) {
    if (n > UINT32_MAX) return -1;
    uint32_t len = (uint32_t)n;
    if (tagged(b, 's', &len, sizeof len) != 0 || tr_buf_add_inline(b, s, n) != 0) return -1;
    return tr_buf_addc_inline(b, '\0');
}

int tr_rowblob_null(tr_buf *b) { return tagged(b, 'n', NULL, 0); }
int tr_rowblob_boolean(tr_buf *b, int v) { return tagged(b, v ? 't' : 'f', NULL, 0); }
int tr_rowblob_integer(tr_buf *b, int64_t v) { return tagged(b, 'i', &v, sizeof v); }
int tr_rowblob_number(tr_buf *b, double v) { return tagged(b, 'd', &v, sizeof v); }

int tr_rowblob_is(const char *s, size_t n) {
    return n >= TR_ROWBLOB_MAGIC_LEN && memcmp(s, TR_ROWBLOB_MAGIC, TR_ROWBLOB_MAGIC_LEN) == 0;
}

int tr_rowblob_next(const char *s, size_t n, size_t *pos, tr_rowblob_member *m) {
    size_t p = *pos;
    if (p == 0) {
        if (!tr_rowblob_is(s, n)) return -1;
        p = TR_ROWBLOB_MAGIC_LEN;
    }
    if (p == n) {
        *pos = p;
        return 0;
    }
    if (p > n) return -1;
    size_t name_len = (unsigned char)s[p++];
    if (n - p < name_len + 1) return -1;
    m->name = s + p;
    m->name_len = name_len;
    p += name_len;
    m->tag = s[p++];
    m->s = NULL;
    m->len = 0;
    switch (m->tag) {
    case 's': {
        uint32_t len;
        if (n - p < sizeof len) return -1;
        memcpy(&len, s + p, sizeof len);
        p += sizeof len;
        if (n - p < (size_t)len + 1 || s[p + len] != '\0') return -1;
        m->s = s + p;
        m->len = len;
        p += (size_t)len + 1;
        break;
    }
    case 'i':
        if (n - p < sizeof m->i) return -1;
        memcpy(&m->i, s + p, sizeof m->i);
        p += sizeof m->i;
        break;
    case 'd':
        if (n - p < sizeof m->d) return -1;
        memcpy(&m->d, s + p, sizeof m->d);
        p += sizeof m->d;
        break;
    case 'n':
    case 't':
    case 'f':
        break;
    default:
        return -1;
    }
    *pos = p;
    return 1;
}

/* Is s[0..n) a well-formed blob (every member read to the end)? Its member count in *count. */
static int well_formed(const char *s, size_t n, size_t *count) {
    size_t pos = 0;
    tr_rowblob_member m;
    int rc;
    *count = 0;
    while ((rc = tr_rowblob_next(s, n, &pos, &m)) == 1)
        (*count)++;
    return rc == 0;
}

/* The names of a well-formed blob, to look up in constant time (issue 28: scanning the changes
 * for each old column made a 100,000-column merge take 27 s): an open-addressed table (linear
 * probing) of the offsets where members begin, 0 for a free slot (a member never begins before
 * the magic), at least twice as many slots as members. Small blobs use the caller's slots. */
typedef struct name_set {
    const char *s;
    size_t *slot;
    size_t mask;
    size_t *compares; /* NULL, or counts the names compared (tests) */
} name_set;

#define NAME_SET_SMALL 64 /* slots on the stack: a partial update changes a few columns */

static size_t name_hash(const char *p, size_t n) {
    size_t h = (size_t)2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * (size_t)16777619u;
    return h ^ (h >> 15);
}

/* The slot of the name p[0..n): the one holding it, or the free one where it would go. */
static size_t *name_slot(const name_set *t, const char *p, size_t n) {
    size_t i = name_hash(p, n) & t->mask;
    for (;; i = (i + 1) & t->mask) {
        size_t at = t->slot[i];
        if (at == 0) return &t->slot[i];
        if (t->compares) (*t->compares)++;
        if ((size_t)(unsigned char)t->s[at] == n && memcmp(t->s + at + 1, p, n) == 0)
            return &t->slot[i];
    }
}

/* Fill t with the names of the well-formed blob s[0..n) of `count` members; 0, or -2 when
 * memory runs out (free t->slot after unless it is `small`). */
static int name_set_fill(name_set *t, const char *s, size_t n, size_t count, size_t *small) {
    size_t cap = NAME_SET_SMALL;
    while (cap < 2 * count)
        cap *= 2;
    t->s = s;
    t->mask = cap - 1;
    if (cap == NAME_SET_SMALL) {
        t->slot = small;
    } else if (cap > (size_t)-1 / sizeof *t->slot || !(t->slot = malloc(cap * sizeof *t->slot))) {
        t->slot = small; /* nothing to free */
        return -2;
    }
    memset(t->slot, 0, cap * sizeof *t->slot);
    size_t pos = 0, start = TR_ROWBLOB_MAGIC_LEN;
    tr_rowblob_member m;
    while (tr_rowblob_next(s, n, &pos, &m) == 1) {
        size_t *at = name_slot(t, m.name, m.name_len);
        if (*at == 0) *at = start;
        start = pos;
    }
    return 0;
}

int tr_rowblob_merge_counted(const char *old, size_t old_n, const char *changes, size_t changes_n,
                             tr_buf *out, size_t *compares) {
    size_t count, small[NAME_SET_SMALL];
    if (!well_formed(changes, changes_n, &count)) return -1;
    name_set t = {NULL, NULL, 0, compares};
    int rc = name_set_fill(&t, changes, changes_n, count, small);
    if (rc == 0 && tr_rowblob_start(out) != 0) rc = -2;
    size_t pos = 0, start = TR_ROWBLOB_MAGIC_LEN; /* the member read last began at start */
    tr_rowblob_member m;
    while (rc == 0 && (rc = tr_rowblob_next(old, old_n, &pos, &m)) == 1) {
        rc = 0;
        if (*name_slot(&t, m.name, m.name_len) == 0 &&
            tr_buf_add(out, old + start, pos - start) != 0)
            rc = -2;
        start = pos;
    }
    if (t.slot != small) free(t.slot);
    if (rc < 0) return rc;
    if (tr_buf_add(out, changes + TR_ROWBLOB_MAGIC_LEN, changes_n - TR_ROWBLOB_MAGIC_LEN) != 0)
        return -2;
    return 0;
}

int tr_rowblob_merge(const char *old, size_t old_n, const char *changes, size_t changes_n,
                     tr_buf *out) {
    return tr_rowblob_merge_counted(old, old_n, changes, changes_n, out, NULL);
}

static int value(const tr_json_sink *k, const tr_rowblob_member *m) {
    switch (m->tag) {
    case 's':
        return k->string(k->ud, m->s, m->len);
    case 'i':
        return k->integer(k->ud, m->i);
    case 'd':
        return k->number(k->ud, m->d);
    case 't':
        return k->boolean(k->ud, 1);
    case 'f':
        return k->boolean(k->ud, 0);
    default:
        return k->null(k->ud);
    }
}

int tr_rowblob_replay(const char *s, size_t n, const tr_json_sink *sink, int open, int close) {
    int rc;
    if (!tr_rowblob_is(s, n)) return -1;
    if (open && (rc = sink->begin_object(sink->ud)) != 0) return rc;
    size_t pos = 0;
    tr_rowblob_member m;
    while ((rc = tr_rowblob_next(s, n, &pos, &m)) == 1) {
        int k = sink->key(sink->ud, m.name, m.name_len);
        if (k == 0) k = value(sink, &m);
        if (k != 0) return k;
    }
    if (rc < 0) return -1;
    return close ? sink->end_object(sink->ud) : 0;
}
