/* A plain-C caller of the streaming shape-log reader (csrc/lib/shapelog.h), shared by
 * spec/c/test_shapelog.c and fuzz/fuzz_shapelog.c: each message is parsed with the JSON parser
 * and a sink that follows only its structure (a message must be an object; the parse stops
 * right after its closing brace, as lshape.c's sink does), and kept as its bytes. */
#ifndef SHAPELOG_DRIVE_H
#define SHAPELOG_DRIVE_H

#include <stdint.h>
#include <string.h>

#include "../../csrc/lib/json.h"
#include "../../csrc/lib/shapelog.h"

#define DRIVE_DEPTH 127

typedef struct drive_msg {
    int depth;
    int done;
    const char *problem;
} drive_msg;

typedef struct drive {
    tr_shapelog r;
    tr_buf scratch;
    tr_buf msgs;    /* each kept message: its length (8 bytes) and bytes */
    int kept;       /* messages kept */
    long handed;    /* messages handed out (parses, retries included) */
    int refused;    /* the caller refused a message (state FAILED, what NULL) */
    size_t max_msg; /* the longest message kept */
    int oom;
} drive;

static int dm_begin(void *ud) {
    drive_msg *m = ud;
    m->depth++;
    return 0;
}
static int dm_begin_array(void *ud) {
    drive_msg *m = ud;
    if (m->depth == 0) {
        m->problem = "is not an object";
        return -1;
    }
    m->depth++;
    return 0;
}
static int dm_end(void *ud) {
    drive_msg *m = ud;
    if (--m->depth > 0) return 0;
    m->done = 1;
    return 1;
}
static int dm_scalar(drive_msg *m) {
    if (m->depth > 0) return 0;
    m->problem = "is not an object";
    return -1;
}
static int dm_null(void *ud) { return dm_scalar(ud); }
static int dm_boolean(void *ud, int v) {
    (void)v;
    return dm_scalar(ud);
}
static int dm_integer(void *ud, int64_t v) {
    (void)v;
    return dm_scalar(ud);
}
static int dm_number(void *ud, double v) {
    (void)v;
    return dm_scalar(ud);
}
static int dm_string(void *ud, const char *s, size_t n) {
    (void)s;
    (void)n;
    return dm_scalar(ud);
}
static int dm_key(void *ud, const char *s, size_t n) {
    (void)ud;
    (void)s;
    (void)n;
    return 0;
}

static void drive_init(drive *d) {
    memset(d, 0, sizeof *d);
    tr_shapelog_init(&d->r);
    tr_buf_init(&d->scratch);
    tr_buf_init(&d->msgs);
}

static void drive_free(drive *d) {
    tr_shapelog_release(&d->r);
    tr_buf_free(&d->scratch);
    tr_buf_free(&d->msgs);
}

/* Move the reader on (final: the body is all there), as lshape.c's advance does. */
static void drive_advance(drive *d, int final) {
    const char *p;
    size_t n;
    while (tr_shapelog_next(&d->r, final, &p, &n) == TR_SHAPELOG_MESSAGE) {
        drive_msg m = {0, 0, NULL};
        tr_json_sink sink = {dm_null, dm_boolean, dm_integer,     dm_number, dm_string, dm_begin,
                             dm_key,  dm_end,     dm_begin_array, dm_end,    &m};
        size_t at = 0;
        const char *what = NULL;
        d->handed++;
        tr_json_status st = tr_json_parse_with(p, n, DRIVE_DEPTH, &sink, &d->scratch, &at, &what);
        tr_shapelog_parse kind = m.problem                         ? TR_SHAPELOG_PARSE_REFUSED
                                 : st == TR_JSON_STOPPED && m.done ? TR_SHAPELOG_PARSE_DONE
                                 : st == TR_JSON_STOPPED           ? TR_SHAPELOG_PARSE_REFUSED
                                                                   : TR_SHAPELOG_PARSE_INVALID;
        tr_shapelog_verdict v = tr_shapelog_parsed(&d->r, kind, at, what);
        if (v == TR_SHAPELOG_AGAIN) break;
        if (v == TR_SHAPELOG_REFUSE) {
            d->refused = kind == TR_SHAPELOG_PARSE_REFUSED;
            break;
        }
        uint64_t len = at;
        if (tr_buf_add(&d->msgs, &len, sizeof len) != 0 || tr_buf_add(&d->msgs, p, at) != 0)
            d->oom = 1;
        if (at > d->max_msg) d->max_msg = at;
        d->kept++;
    }
    if (d->r.state != TR_SHAPELOG_FAILED) tr_shapelog_compact(&d->r);
}

/* Feed n bytes and move on. */
static void drive_feed(drive *d, const char *s, size_t n) {
    if (tr_shapelog_feed(&d->r, s, n) != 0) d->oom = 1;
    drive_advance(d, 0);
}

/* Do two drives agree on what the body is: the same messages, the same end or failure? */
static int drive_same(const drive *a, const drive *b) {
    if (a->r.state != b->r.state || a->kept != b->kept || a->msgs.len != b->msgs.len ||
        a->refused != b->refused)
        return 0;
    /* (bytes fed after a refusal are not counted: it may come at another piece) */
    if (a->r.state != TR_SHAPELOG_FAILED && a->r.fed != b->r.fed) return 0;
    if (a->msgs.len && memcmp(a->msgs.data, b->msgs.data, a->msgs.len) != 0) return 0;
    if (a->r.state == TR_SHAPELOG_FAILED) {
        if ((a->r.what == NULL) != (b->r.what == NULL)) return 0;
        if (a->r.what && (strcmp(a->r.what, b->r.what) != 0 || a->r.at != b->r.at)) return 0;
    }
    if (a->r.state == TR_SHAPELOG_WHOLE &&
        (a->r.tail.len != b->r.tail.len ||
         (a->r.tail.len && memcmp(a->r.tail.data, b->r.tail.data, a->r.tail.len) != 0)))
        return 0;
    return 1;
}

#endif
