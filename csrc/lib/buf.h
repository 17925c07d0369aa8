/* A growable byte buffer: the one owner of the bytes it holds. */
#ifndef TR_BUF_H
#define TR_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct tr_buf {
    char *data;
    size_t len;
    size_t cap;
} tr_buf;

void tr_buf_init(tr_buf *b);
void tr_buf_free(tr_buf *b);
void tr_buf_reset(tr_buf *b);
/* Append bytes; returns 0 on success, -1 when memory runs out (the buffer is left as it was). */
int tr_buf_add(tr_buf *b, const void *p, size_t n);
/* Room for n more bytes (and a NUL) without moving; 0, or -1 when memory runs out. */
int tr_buf_reserve(tr_buf *b, size_t n);
int tr_buf_adds(tr_buf *b, const char *s);
int tr_buf_addc(tr_buf *b, char c);
/* The common case inline: room is already there (hot loops such as JSON strings). */
static inline int tr_buf_add_inline(tr_buf *b, const void *p, size_t n) {
    if (b->cap - b->len > n) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        return 0;
    }
    return tr_buf_add(b, p, n);
}

static inline int tr_buf_addc_inline(tr_buf *b, char c) {
    if (b->cap - b->len > 1) {
        b->data[b->len++] = c;
        return 0;
    }
    return tr_buf_addc(b, c);
}

/* Keep a NUL after the bytes so the data can be read as a C string. */
const char *tr_buf_cstr(tr_buf *b);

#endif
