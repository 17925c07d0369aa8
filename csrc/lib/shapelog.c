/* The streaming shape-log reader: see shapelog.h. */
#include "shapelog.h"

#include <string.h>

#include "shape.h"

void tr_shapelog_init(tr_shapelog *r) {
    memset(r, 0, sizeof *r);
    tr_buf_init(&r->tail);
    r->state = TR_SHAPELOG_START;
    r->budget = -1;
}

void tr_shapelog_release(tr_shapelog *r) {
    if (r->borrowed)
        tr_buf_init(&r->tail);
    else
        tr_buf_free(&r->tail);
    r->pos = r->retry = 0;
}

/* Keep the last bytes of the body for tr_shapelog_ends_up_to_date. */
static void keep_last(tr_shapelog *r, const char *s, size_t n) {
    size_t keep = n < TR_SHAPELOG_LAST_KEEP ? n : TR_SHAPELOG_LAST_KEEP;
    size_t old =
        r->last_len + keep > TR_SHAPELOG_LAST_KEEP ? TR_SHAPELOG_LAST_KEEP - keep : r->last_len;
    memmove(r->last, r->last + r->last_len - old, old);
    if (keep > 0) memcpy(r->last + old, s + n - keep, keep);
    r->last_len = old + keep;
    r->fed += n;
}

int tr_shapelog_feed(tr_shapelog *r, const char *s, size_t n) {
    if (r->borrowed) return -1;
    if (r->state == TR_SHAPELOG_FAILED) return 0; /* (a refused body changes no more) */
    keep_last(r, s, n);
    return tr_buf_add(&r->tail, s, n);
}

int tr_shapelog_borrow(tr_shapelog *r, const char *s, size_t n) {
    if (r->borrowed || r->fed != 0 || r->state != TR_SHAPELOG_START) return -1;
    keep_last(r, s, n);
    r->tail.data = (char *)s; /* (never written: a borrowed tail is not moved or freed) */
    r->tail.len = n;
    r->tail.cap = 0;
    r->borrowed = 1;
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Refused: what at body byte `at`; the tail is given up. */
static void fail(tr_shapelog *r, const char *what, size_t at) {
    r->state = TR_SHAPELOG_FAILED;
    r->what = what;
    r->at = at;
    tr_shapelog_release(r);
}

tr_shapelog_step tr_shapelog_next(tr_shapelog *r, int final, const char **p, size_t *n) {
    for (;;) {
        tr_shapelog_state state = r->state;
        if (state == TR_SHAPELOG_START || state == TR_SHAPELOG_FIRST ||
            state == TR_SHAPELOG_AFTER || state == TR_SHAPELOG_VALUE || state == TR_SHAPELOG_END) {
            while (r->pos < r->tail.len && is_space(r->tail.data[r->pos]))
                r->pos++;
            if (r->pos >= r->tail.len) {
                if (final && state != TR_SHAPELOG_END)
                    fail(r, "unexpected end", r->base + r->tail.len);
                return TR_SHAPELOG_STOP;
            }
        }
        char c = '\0';
        if (r->pos < r->tail.len) c = r->tail.data[r->pos];
        if (state == TR_SHAPELOG_START) {
            if (c != '[') {
                r->state = TR_SHAPELOG_WHOLE;
                return TR_SHAPELOG_STOP;
            }
            r->pos++;
            r->state = TR_SHAPELOG_FIRST;
        } else if (state == TR_SHAPELOG_FIRST && c == ']') {
            r->pos++;
            r->state = TR_SHAPELOG_END;
        } else if (state == TR_SHAPELOG_FIRST || state == TR_SHAPELOG_VALUE) {
            r->retry = 0;
            r->state = TR_SHAPELOG_ELEMENT;
        } else if (state == TR_SHAPELOG_ELEMENT) {
            if (r->budget == 0) return TR_SHAPELOG_STOP;
            r->whole = final || r->borrowed;
            if (!r->whole && r->tail.len - r->pos < r->retry) return TR_SHAPELOG_STOP;
            *p = r->tail.data + r->pos;
            *n = r->tail.len - r->pos;
            return TR_SHAPELOG_MESSAGE;
        } else if (state == TR_SHAPELOG_AFTER) {
            r->pos++;
            if (c == ',') {
                r->state = TR_SHAPELOG_VALUE;
            } else if (c == ']') {
                r->state = TR_SHAPELOG_END;
            } else {
                fail(r, "expected , or a closing bracket", r->base + r->pos);
                return TR_SHAPELOG_STOP;
            }
        } else if (state == TR_SHAPELOG_END) {
            fail(r, "text after the value", r->base + r->pos);
            return TR_SHAPELOG_STOP;
        } else {
            return TR_SHAPELOG_STOP; /* WHOLE, FAILED: nothing to do */
        }
    }
}

tr_shapelog_verdict tr_shapelog_parsed(tr_shapelog *r, tr_shapelog_parse kind, size_t at,
                                       const char *what) {
    size_t avail = r->tail.len - r->pos;
    int object = r->tail.data[r->pos] == '{';
    if (kind == TR_SHAPELOG_PARSE_DONE) {
        r->pos += at;
        r->state = TR_SHAPELOG_AFTER;
        if (r->budget > 0) r->budget--;
        return TR_SHAPELOG_KEEP;
    }
    /* Not all in yet, maybe: a parse that failed, or a refusal of a message that is not an
     * object which read to the end of the bytes ("5" may be "5x", bad JSON first). */
    if (!r->whole && (kind == TR_SHAPELOG_PARSE_INVALID || (!object && at >= avail))) {
        r->retry = 2 * avail; /* try again once the tail has doubled */
        return TR_SHAPELOG_AGAIN;
    }
    if (kind == TR_SHAPELOG_PARSE_REFUSED)
        fail(r, NULL, 0);
    else
        fail(r, what ? what : "invalid JSON", r->base + r->pos + at);
    return TR_SHAPELOG_REFUSE;
}

void tr_shapelog_compact(tr_shapelog *r) {
    if (r->state == TR_SHAPELOG_START || r->state == TR_SHAPELOG_WHOLE ||
        r->state == TR_SHAPELOG_FAILED || r->pos == 0 || r->borrowed)
        return;
    size_t k = r->pos;
    memmove(r->tail.data, r->tail.data + k, r->tail.len - k);
    r->tail.len -= k;
    r->base += k;
    r->pos = 0;
}

int tr_shapelog_ends_up_to_date(const tr_shapelog *r) {
    return tr_shape_body_ends_up_to_date(r->last, r->last_len);
}
