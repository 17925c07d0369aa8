/* The streaming shape-log reader (no Lua, no I/O): follows the top level of a shape-log body
 * (a JSON array of messages) as its bytes arrive in pieces, and says where each message starts
 * so the caller can parse it with the bytes there are.
 *
 * It never holds the body: only the unfinished tail (the message still coming, at most a piece
 * plus one message). A message that is an object is parsed with the bytes there are, with no
 * scan for its end first (a scan cost a quarter of the parse): the parser sees a prefix of what
 * it would see in the whole body, so when it gets to the message's closing brace (or the
 * caller refuses the message, which it does only at a brace) the result is the whole body's;
 * when it fails instead, the bytes may not all be in yet, and the message is parsed again once
 * the tail has doubled (so a long message costs a bounded number of tries), or at the end with
 * all the bytes. Any other message is refused, once the parser has read it to a byte after it
 * ("5" may be "5x": bad JSON first). A body that does not start with '[' is kept whole (state
 * TR_SHAPELOG_WHOLE) for the caller to decode in one go (it refuses it anyway).
 *
 * The caller's loop (core.shape_reader in lshape.c; spec/c/test_shapelog.c; the fuzz target):
 *
 *     tr_shapelog_feed(r, bytes, n);                     (or tr_shapelog_borrow: all at once)
 *     while (tr_shapelog_next(r, final, &p, &n) == TR_SHAPELOG_MESSAGE) {
 *         parse the message at p[0..n) (see tr_shapelog_parsed), then
 *         switch (tr_shapelog_parsed(r, kind, at, what)) { KEEP / AGAIN (undo it) / FAILED }
 *     }
 *     tr_shapelog_compact(r);
 *
 * A failure (state TR_SHAPELOG_FAILED) is final: later calls change nothing. */
#ifndef TR_SHAPELOG_H
#define TR_SHAPELOG_H

#include <stddef.h>

#include "buf.h"

#define TR_SHAPELOG_LAST_KEEP 512 /* body bytes kept for tr_shapelog_ends_up_to_date */

typedef enum tr_shapelog_state {
    TR_SHAPELOG_START,   /* before the array: white space */
    TR_SHAPELOG_FIRST,   /* after '[': a message or ']' */
    TR_SHAPELOG_ELEMENT, /* in a message (not all of it in yet) */
    TR_SHAPELOG_AFTER,   /* after a message: ',' or ']' */
    TR_SHAPELOG_VALUE,   /* after ',': a message */
    TR_SHAPELOG_END,     /* after ']': white space only */
    TR_SHAPELOG_WHOLE,   /* not an array: kept whole (tail) for the caller's one-go decode */
    TR_SHAPELOG_FAILED   /* refused: what/at, or the caller's own problem (what NULL) */
} tr_shapelog_state;

/* Fields are read by callers, written only by the functions below. */
typedef struct tr_shapelog {
    tr_shapelog_state state;
    tr_buf tail;  /* the bytes not consumed yet; tail.data[0] is body byte `base` */
    size_t base;  /* body offset of tail.data[0] */
    size_t pos;   /* the next byte of the top level (in tail) */
    size_t retry; /* parse the current message again once the tail holds this many bytes from
                     pos (0: at once) */
    size_t fed;   /* body bytes so far */
    char last[TR_SHAPELOG_LAST_KEEP];
    size_t last_len;
    int borrowed;     /* tail is the caller's bytes (tr_shapelog_borrow), never moved or freed */
    int budget;       /* messages tr_shapelog_next may still hand out; < 0: no limit */
    int whole;        /* the message handed out has all the bytes it will ever have */
    const char *what; /* FAILED: why (static text), at body byte `at` (0-based); NULL: the
                         caller refused a message (its problem is its own) */
    size_t at;
} tr_shapelog;

void tr_shapelog_init(tr_shapelog *r);
/* Give up the tail (freed unless borrowed); the reader is then as after init but for state,
 * fed, last and base (safe to call more than once). */
void tr_shapelog_release(tr_shapelog *r);

/* Append the next n bytes of the body: 0, or -1 when memory runs out. */
int tr_shapelog_feed(tr_shapelog *r, const char *s, size_t n);
/* The whole body at once, borrowed (s must stay valid and unchanged while the reader uses it):
 * only on a reader fed nothing. 0, or -1 otherwise. */
int tr_shapelog_borrow(tr_shapelog *r, const char *s, size_t n);

typedef enum tr_shapelog_step {
    TR_SHAPELOG_STOP,   /* nothing to do until more bytes (or the end): see state */
    TR_SHAPELOG_MESSAGE /* a message starts at *p, *n bytes there (>= 1): parse it */
} tr_shapelog_step;
/* Move the top level on as far as the bytes go (final: they are all there). */
tr_shapelog_step tr_shapelog_next(tr_shapelog *r, int final, const char **p, size_t *n);

typedef enum tr_shapelog_parse {
    TR_SHAPELOG_PARSE_DONE,    /* the message ended: `at` bytes after its start */
    TR_SHAPELOG_PARSE_REFUSED, /* the caller refused the message (having read `at` bytes) */
    TR_SHAPELOG_PARSE_INVALID  /* the JSON parser failed at `at` (what: why, NULL: any) */
} tr_shapelog_parse;
typedef enum tr_shapelog_verdict {
    TR_SHAPELOG_KEEP,  /* the message is in: keep what the caller made of it */
    TR_SHAPELOG_AGAIN, /* not all in yet, maybe: undo it; it is handed out again later */
    TR_SHAPELOG_REFUSE /* the body is refused (state FAILED) */
} tr_shapelog_verdict;
/* What the caller's parse of the message tr_shapelog_next handed out came to. */
tr_shapelog_verdict tr_shapelog_parsed(tr_shapelog *r, tr_shapelog_parse kind, size_t at,
                                       const char *what);

/* Forget the bytes consumed (after a run of tr_shapelog_next; a whole or borrowed body stays). */
void tr_shapelog_compact(tr_shapelog *r);

/* Does the body so far end with an up-to-date control message (tr_shape_body_ends_up_to_date
 * of its last TR_SHAPELOG_LAST_KEEP bytes)? */
int tr_shapelog_ends_up_to_date(const tr_shapelog *r);

#endif
