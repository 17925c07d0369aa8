#include "buf.h"

#include <stdlib.h>
#include <string.h>

void tr_buf_init(tr_buf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void tr_buf_free(tr_buf *b) {
    free(b->data);
    tr_buf_init(b);
}

void tr_buf_reset(tr_buf *b) { b->len = 0; }

int tr_buf_reserve(tr_buf *b, size_t extra) {
    if (extra > (size_t)-1 - b->len - 1) return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > ((size_t)-1) / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int tr_buf_add(tr_buf *b, const void *p, size_t n) {
    if (n == 0) return 0;
    if (tr_buf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int tr_buf_adds(tr_buf *b, const char *s) { return tr_buf_add(b, s, strlen(s)); }

int tr_buf_addc(tr_buf *b, char c) { return tr_buf_add(b, &c, 1); }

const char *tr_buf_cstr(tr_buf *b) {
    if (tr_buf_reserve(b, 0) != 0) return NULL;
    b->data[b->len] = '\0';
    return b->data;
}
