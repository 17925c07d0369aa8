/* A sans-I/O Server-Sent Events parser and the S2 batch payload: see sse.h. */
#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

struct tr_sse {
    tr_sse_limits lim;
    tr_sse_error err;
    size_t err_at;
    size_t pos; /* bytes consumed since tr_sse_new */

    int bom;            /* 0..2: bytes of a leading BOM matched so far; 3: no longer looking */
    int after_cr;       /* the last line ended with CR: an LF right after belongs to it */
    tr_buf line;        /* the line being read, without its end */
    size_t field_bytes; /* bytes of field lines (ends included) since the last blank line */

    tr_buf data; /* the data lines of the event being read, joined by LF */
    size_t data_lines;
    tr_buf type; /* its event type ("" until an event field) */
    tr_buf id;   /* the last event id */
    int has_id;
    int64_t retry;

    tr_buf out_data, out_type; /* the event handed out */
    tr_sse_ev ev;
};

static const char BOM[3] = {'\xEF', '\xBB', '\xBF'};

tr_sse *tr_sse_new(const tr_sse_limits *limits) {
    tr_sse *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    if (limits) p->lim = *limits;
    if (p->lim.max_line == 0) p->lim.max_line = TR_SSE_DEFAULT_MAX_LINE;
    if (p->lim.max_event == 0) p->lim.max_event = TR_SSE_DEFAULT_MAX_EVENT;
    tr_buf_init(&p->line);
    tr_buf_init(&p->data);
    tr_buf_init(&p->type);
    tr_buf_init(&p->id);
    tr_buf_init(&p->out_data);
    tr_buf_init(&p->out_type);
    p->retry = -1;
    return p;
}

void tr_sse_free(tr_sse *p) {
    if (p == NULL) return;
    tr_buf_free(&p->line);
    tr_buf_free(&p->data);
    tr_buf_free(&p->type);
    tr_buf_free(&p->id);
    tr_buf_free(&p->out_data);
    tr_buf_free(&p->out_type);
    free(p);
}

static void fail(tr_sse *p, tr_sse_error e, size_t at) {
    p->err = e;
    p->err_at = at;
}

static const char *bytes_of(const tr_buf *b) { return b->data ? b->data : ""; }

static void swap_bufs(tr_buf *a, tr_buf *b) {
    tr_buf t = *a;
    *a = *b;
    *b = t;
}

static int same(const char *s, size_t n, const char *lit) {
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* Hand out the event read so far: 1 when there was one (data lines came), else 0. */
static int dispatch(tr_sse *p) {
    p->field_bytes = 0;
    if (p->data_lines == 0) {
        tr_buf_reset(&p->type);
        return 0;
    }
    swap_bufs(&p->data, &p->out_data);
    swap_bufs(&p->type, &p->out_type);
    tr_buf_reset(&p->data);
    tr_buf_reset(&p->type);
    p->data_lines = 0;
    p->ev.kind = TR_SSE_KIND_EVENT;
    if (p->out_type.len == 0) {
        p->ev.type = "message";
        p->ev.type_len = 7;
    } else {
        p->ev.type = p->out_type.data;
        p->ev.type_len = p->out_type.len;
    }
    p->ev.data = bytes_of(&p->out_data);
    p->ev.data_len = p->out_data.len;
    p->ev.id = bytes_of(&p->id);
    p->ev.id_len = p->id.len;
    p->ev.has_id = p->has_id;
    return 1;
}

/* One whole line (without its end, which is at stream offset `end_at`): 1 when it completed
 * an event or a reported comment, 0 otherwise, -1 on error. */
static int take_line(tr_sse *p, size_t end_at) {
    const char *s = bytes_of(&p->line);
    size_t n = p->line.len;
    if (n == 0) return dispatch(p);
    if (s[0] == ':') {
        if (!p->lim.comments) return 0;
        size_t v = (n > 1 && s[1] == ' ') ? 2 : 1;
        tr_buf_reset(&p->out_data);
        if (tr_buf_add(&p->out_data, s + v, n - v) != 0) {
            fail(p, TR_SSE_E_NOMEM, end_at);
            return -1;
        }
        p->ev.kind = TR_SSE_KIND_COMMENT;
        p->ev.type = "";
        p->ev.type_len = 0;
        p->ev.data = bytes_of(&p->out_data);
        p->ev.data_len = p->out_data.len;
        p->ev.id = bytes_of(&p->id);
        p->ev.id_len = p->id.len;
        p->ev.has_id = p->has_id;
        return 1;
    }
    p->field_bytes += n + 1;
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *value = colon ? colon + 1 : s + n;
    size_t value_len = n - (size_t)(value - s);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (same(s, name_len, "data")) {
        size_t extra = value_len + (p->data_lines > 0);
        if (extra > p->lim.max_event || p->data.len + p->type.len > p->lim.max_event - extra) {
            fail(p, TR_SSE_E_EVENT_TOO_LARGE, end_at);
            return -1;
        }
        if ((p->data_lines > 0 && tr_buf_addc(&p->data, '\n') != 0) ||
            tr_buf_add(&p->data, value, value_len) != 0) {
            fail(p, TR_SSE_E_NOMEM, end_at);
            return -1;
        }
        p->data_lines++;
    } else if (same(s, name_len, "event")) {
        if (value_len > p->lim.max_event || p->data.len > p->lim.max_event - value_len) {
            fail(p, TR_SSE_E_EVENT_TOO_LARGE, end_at);
            return -1;
        }
        tr_buf_reset(&p->type);
        if (tr_buf_add(&p->type, value, value_len) != 0) {
            fail(p, TR_SSE_E_NOMEM, end_at);
            return -1;
        }
    } else if (same(s, name_len, "id")) {
        if (memchr(value, '\0', value_len) == NULL) {
            tr_buf_reset(&p->id);
            if (tr_buf_add(&p->id, value, value_len) != 0) {
                fail(p, TR_SSE_E_NOMEM, end_at);
                return -1;
            }
            p->has_id = 1;
        }
    } else if (same(s, name_len, "retry")) {
        int64_t v = 0;
        size_t i = 0;
        for (; i < value_len && value[i] >= '0' && value[i] <= '9'; i++)
            if (v < INT64_MAX / 100) v = v * 10 + (value[i] - '0'); /* saturates, far past use */
        if (value_len > 0 && i == value_len) p->retry = v;
    }
    return 0;
}

tr_sse_state tr_sse_feed(tr_sse *p, const char *data, size_t len, size_t *consumed) {
    size_t i = 0;
    tr_sse_state st = TR_SSE_MORE;
    if (p->err != TR_SSE_OK) {
        if (consumed) *consumed = 0;
        return TR_SSE_ERROR;
    }
    if (data == NULL) len = 0;
    while (i < len) {
        if (p->bom < 3) {
            if (data[i] == BOM[p->bom]) {
                p->bom++;
                i++;
                continue;
            }
            /* not a BOM after all: the bytes matched so far are text of the first line */
            if (tr_buf_add(&p->line, BOM, (size_t)p->bom) != 0) {
                fail(p, TR_SSE_E_NOMEM, p->pos + i);
                break;
            }
            p->bom = 3;
        }
        if (p->after_cr) {
            p->after_cr = 0;
            if (data[i] == '\n') {
                i++;
                continue;
            }
        }
        /* the run of line bytes up to the next CR or LF */
        size_t j = i;
        while (j < len && data[j] != '\n' && data[j] != '\r')
            j++;
        if (j > i) {
            size_t run = j - i;
            if (run > p->lim.max_line - p->line.len) {
                fail(p, TR_SSE_E_LINE_TOO_LONG, p->pos + i + (p->lim.max_line - p->line.len));
                break;
            }
            if (tr_buf_add(&p->line, data + i, run) != 0) {
                fail(p, TR_SSE_E_NOMEM, p->pos + i);
                break;
            }
            i = j;
        }
        if (i == len) break;
        p->after_cr = data[i] == '\r';
        int r = take_line(p, p->pos + i);
        i++;
        tr_buf_reset(&p->line);
        if (r < 0) break;
        if (r > 0) {
            st = TR_SSE_EVENT;
            break;
        }
    }
    if (consumed) *consumed = i;
    p->pos += i;
    return p->err != TR_SSE_OK ? TR_SSE_ERROR : st;
}

size_t tr_sse_finish(tr_sse *p) {
    size_t dropped = p->field_bytes + p->line.len;
    if (p->bom > 0 && p->bom < 3) dropped += (size_t)p->bom; /* a lone partial BOM */
    tr_buf_reset(&p->line);
    tr_buf_reset(&p->data);
    tr_buf_reset(&p->type);
    p->data_lines = 0;
    p->field_bytes = 0;
    p->after_cr = 0;
    p->bom = 0;
    return dropped;
}

const tr_sse_ev *tr_sse_event(const tr_sse *p) { return &p->ev; }
tr_sse_error tr_sse_error_of(const tr_sse *p) { return p->err; }
size_t tr_sse_error_offset(const tr_sse *p) { return p->err_at; }
int64_t tr_sse_retry(const tr_sse *p) { return p->retry; }

const char *tr_sse_last_id(const tr_sse *p, size_t *len) {
    if (len) *len = p->id.len;
    return bytes_of(&p->id);
}

const char *tr_sse_error_name(tr_sse_error e) {
    switch (e) {
    case TR_SSE_OK:
        return "ok";
    case TR_SSE_E_LINE_TOO_LONG:
        return "line_too_long";
    case TR_SSE_E_EVENT_TOO_LARGE:
        return "event_too_large";
    case TR_SSE_E_NOMEM:
        return "nomem";
    }
    return "unknown";
}

const char *tr_sse_error_message(tr_sse_error e) {
    switch (e) {
    case TR_SSE_OK:
        return "no error";
    case TR_SSE_E_LINE_TOO_LONG:
        return "an event-stream line is longer than max_line";
    case TR_SSE_E_EVENT_TOO_LARGE:
        return "an event's data is larger than max_event";
    case TR_SSE_E_NOMEM:
        return "out of memory";
    }
    return "unknown error";
}

/* ---------------------------------------------------------------------------------------- */
/* The S2 batch payload, walked with the json.c sink: a stack of what each open container is. */

typedef enum ctx {
    C_ROOT,    /* the top-level object */
    C_RECORDS, /* records: [...] */
    C_RECORD,  /* one record object */
    C_HEADERS, /* a record's headers: [...] */
    C_PAIR,    /* one header: ["name", "value"] */
    C_TAIL,    /* tail: {...} */
    C_SKIP     /* any container we do not look into */
} ctx;

typedef enum key { K_OTHER, K_RECORDS, K_TAIL, K_SEQ, K_TIMESTAMP, K_HEADERS, K_BODY } key;

#define S2_MAX_DEPTH 64

typedef struct walk {
    tr_s2_batch *b;
    ctx stack[S2_MAX_DEPTH];
    key keys[S2_MAX_DEPTH]; /* the key whose value comes next, per open object */
    int depth;              /* containers open */
    int started;
    /* the record being read */
    int has_seq;
    tr_s2_record rec;
    size_t n_headers;
    size_t pair_index;
    int pair_first_empty;
    int tail_seq;
    const char *why;
} walk;

static int stop(walk *w, const char *why) {
    w->why = why;
    return 1;
}

/* Where the next value goes: the top container and, for objects, its pending key. */
static ctx top(const walk *w) { return w->stack[w->depth - 1]; }
static key pending(const walk *w) { return w->keys[w->depth - 1]; }

static int push(walk *w, ctx c) {
    if (w->depth >= S2_MAX_DEPTH) return stop(w, "nested too deeply");
    w->stack[w->depth] = c;
    w->keys[w->depth] = K_OTHER;
    w->depth++;
    return 0;
}

/* A scalar (or a container start when `container` names what it would be) at the current
 * place. `kind`: 's' string, 'i' integer, 'n' other number, 'z' null/boolean, 'o' object,
 * 'a' array. */
static int value(walk *w, char kind, int64_t iv, const char *s, size_t n) {
    if (!w->started) {
        w->started = 1;
        if (kind != 'o') return stop(w, "not a JSON object");
        return push(w, C_ROOT);
    }
    ctx c = top(w);
    key k = pending(w);
    switch (c) {
    case C_ROOT:
        if (k == K_RECORDS) {
            if (kind == 'a') return push(w, C_RECORDS);
            return stop(w, "records is not an array");
        }
        if (k == K_TAIL) {
            if (kind == 'o') {
                w->b->has_tail = 1;
                w->b->tail_timestamp = -1;
                w->tail_seq = 0;
                return push(w, C_TAIL);
            }
            if (kind == 'z') return 0;
            return stop(w, "tail is not an object");
        }
        if (k == K_TIMESTAMP && kind == 'i') w->b->timestamp = iv;
        break;
    case C_RECORDS:
        if (kind != 'o') return stop(w, "a record is not an object");
        memset(&w->rec, 0, sizeof w->rec);
        w->rec.timestamp = -1;
        w->rec.body = w->b->bodies.len;
        w->has_seq = 0;
        w->n_headers = 0;
        return push(w, C_RECORD);
    case C_RECORD:
        if (k == K_SEQ) {
            if (kind != 'i' || iv < 0) return stop(w, "a record's seq_num is not a whole number");
            w->rec.seq_num = iv;
            w->has_seq = 1;
            return 0;
        }
        if (k == K_TIMESTAMP) {
            if (kind == 'i') w->rec.timestamp = iv;
            break;
        }
        if (k == K_HEADERS) {
            if (kind == 'a') return push(w, C_HEADERS);
            return stop(w, "a record's headers are not an array");
        }
        if (k == K_BODY) {
            if (kind != 's') return stop(w, "a record's body is not a string");
            w->rec.body = w->b->bodies.len;
            w->rec.body_len = n;
            if (tr_buf_add(&w->b->bodies, s, n) != 0) return stop(w, "out of memory");
            return 0;
        }
        break;
    case C_HEADERS:
        if (kind != 'a') return stop(w, "a header is not a [name, value] pair");
        w->pair_index = 0;
        w->pair_first_empty = 0;
        return push(w, C_PAIR);
    case C_PAIR:
        if (kind != 's' || w->pair_index >= 2) return stop(w, "a header is not a pair of strings");
        if (w->pair_index == 0) {
            if (n == 0 && w->n_headers == 0) w->rec.kind = TR_S2_COMMAND;
            if (w->rec.kind == TR_S2_DATA && n == 15 && memcmp(s, "trigger-control", 15) == 0)
                w->rec.kind = TR_S2_CONTROL;
        }
        w->pair_index++;
        return 0;
    case C_TAIL:
        if (k == K_SEQ) {
            if (kind != 'i' || iv < 0) return stop(w, "tail.seq_num is not a whole number");
            w->b->tail_seq_num = iv;
            w->tail_seq = 1;
            return 0;
        }
        if (k == K_TIMESTAMP && kind == 'i') w->b->tail_timestamp = iv;
        break;
    case C_SKIP:
        break;
    }
    /* a value we do not look into */
    if (kind == 'o' || kind == 'a') return push(w, C_SKIP);
    return 0;
}

static int on_null(void *ud) { return value(ud, 'z', 0, NULL, 0); }
static int on_boolean(void *ud, int v) {
    (void)v;
    return value(ud, 'z', 0, NULL, 0);
}
static int on_integer(void *ud, int64_t v) { return value(ud, 'i', v, NULL, 0); }
static int on_number(void *ud, double v) {
    (void)v;
    return value(ud, 'n', 0, NULL, 0);
}
static int on_string(void *ud, const char *s, size_t n) { return value(ud, 's', 0, s, n); }
static int on_begin_object(void *ud) { return value(ud, 'o', 0, NULL, 0); }
static int on_begin_array(void *ud) { return value(ud, 'a', 0, NULL, 0); }

static int on_key(void *ud, const char *s, size_t n) {
    walk *w = ud;
    ctx c = top(w);
    key k = K_OTHER;
    if (c == C_ROOT) {
        if (same(s, n, "records"))
            k = K_RECORDS;
        else if (same(s, n, "tail"))
            k = K_TAIL;
        else if (same(s, n, "timestamp"))
            k = K_TIMESTAMP;
    } else if (c == C_RECORD) {
        if (same(s, n, "seq_num"))
            k = K_SEQ;
        else if (same(s, n, "timestamp"))
            k = K_TIMESTAMP;
        else if (same(s, n, "headers"))
            k = K_HEADERS;
        else if (same(s, n, "body"))
            k = K_BODY;
    } else if (c == C_TAIL) {
        if (same(s, n, "seq_num"))
            k = K_SEQ;
        else if (same(s, n, "timestamp"))
            k = K_TIMESTAMP;
    }
    w->keys[w->depth - 1] = k;
    return 0;
}

static int on_end(void *ud) {
    walk *w = ud;
    ctx c = top(w);
    w->depth--;
    if (c == C_RECORD) {
        if (!w->has_seq) return stop(w, "a record has no seq_num");
        tr_s2_batch *b = w->b;
        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 8;
            tr_s2_record *r = realloc(b->records, cap * sizeof *r);
            if (r == NULL) return stop(w, "out of memory");
            b->records = r;
            b->cap = cap;
        }
        b->records[b->n++] = w->rec;
    } else if (c == C_PAIR) {
        if (w->pair_index != 2) return stop(w, "a header is not a pair of strings");
        w->n_headers++;
    } else if (c == C_TAIL) {
        if (!w->tail_seq) return stop(w, "tail has no seq_num");
    }
    return 0;
}

void tr_s2_batch_init(tr_s2_batch *b) {
    memset(b, 0, sizeof *b);
    tr_buf_init(&b->bodies);
    b->tail_timestamp = -1;
    b->timestamp = -1;
}

void tr_s2_batch_free(tr_s2_batch *b) {
    free(b->records);
    tr_buf_free(&b->bodies);
    tr_s2_batch_init(b);
}

int tr_s2_batch_parse(tr_s2_batch *b, const char *s, size_t n, char *err, size_t err_len) {
    b->n = 0;
    tr_buf_reset(&b->bodies);
    b->has_tail = 0;
    b->tail_seq_num = 0;
    b->tail_timestamp = -1;
    b->timestamp = -1;
    walk w;
    memset(&w, 0, sizeof w);
    w.b = b;
    tr_json_sink sink = {on_null, on_boolean, on_integer,     on_number, on_string, on_begin_object,
                         on_key,  on_end,     on_begin_array, on_end,    &w};
    size_t at = 0;
    const char *what = NULL;
    tr_json_status st = tr_json_parse(s, n, S2_MAX_DEPTH, &sink, &at, &what);
    if (st == TR_JSON_OK) return 0;
    if (err != NULL && err_len > 0) {
        if (st == TR_JSON_STOPPED && w.why != NULL)
            snprintf(err, err_len, "not an S2 batch: %s", w.why);
        else
            snprintf(err, err_len, "not an S2 batch: %s at byte %zu", what ? what : "bad JSON", at);
    }
    b->n = 0;
    return -1;
}
