#include "rowblob.h"

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

/* Is s[0..n) a well-formed blob (every member read to the end)? */
static int well_formed(const char *s, size_t n) {
    size_t pos = 0;
    tr_rowblob_member m;
    int rc;
    while ((rc = tr_rowblob_next(s, n, &pos, &m)) == 1)
        ;
    return rc == 0;
}

/* Has the well-formed blob s[0..n) a member named as m? */
static int has_name(const char *s, size_t n, const tr_rowblob_member *m) {
    size_t pos = 0;
    tr_rowblob_member o;
    while (tr_rowblob_next(s, n, &pos, &o) == 1)
        if (o.name_len == m->name_len && memcmp(o.name, m->name, m->name_len) == 0) return 1;
    return 0;
}

int tr_rowblob_merge(const char *old, size_t old_n, const char *changes, size_t changes_n,
                     tr_buf *out) {
    if (!well_formed(changes, changes_n)) return -1;
    if (tr_rowblob_start(out) != 0) return -2;
    size_t pos = 0, start = TR_ROWBLOB_MAGIC_LEN; /* the member read last began at start */
    tr_rowblob_member m;
    int rc;
    while ((rc = tr_rowblob_next(old, old_n, &pos, &m)) == 1) {
        if (!has_name(changes, changes_n, &m) && tr_buf_add(out, old + start, pos - start) != 0)
            return -2;
        start = pos;
    }
    if (rc < 0) return -1;
    if (tr_buf_add(out, changes + TR_ROWBLOB_MAGIC_LEN, changes_n - TR_ROWBLOB_MAGIC_LEN) != 0)
        return -2;
    return 0;
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
