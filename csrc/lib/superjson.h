/* The pure decisions of superjson's annotations (no Lua, no I/O): what a leaf annotation's name
 * does to its field, a bigint's canonical decimal text as a 64-bit integer, the numbers JSON
 * cannot write (NaN, the infinities, -0) as superjson writes them, which field names can be a
 * leaf (no path, no escape), and the set of leaves a super+json packet's meta.values holds when
 * they are all of the common shape (a field of the top-level object, one plain annotation).
 *
 * csrc/lsuperjson.c walks the Lua tables (or the packet as it is parsed) and asks these; the
 * general walk, lua/trigger/run/superjson.lua, gives every annotation the same meaning. */
#ifndef TR_SUPERJSON_H
#define TR_SUPERJSON_H

#include <stddef.h>
#include <stdint.h>

/* What a leaf annotation does to its field. */
typedef enum tr_superjson_kind {
    TR_SUPERJSON_KEEP = 0,  /* Date, URL, regexp, set, Error...: their JSON form is the Lua form */
    TR_SUPERJSON_UNDEFINED, /* "undefined": the field goes */
    TR_SUPERJSON_BIGINT,    /* "bigint": its text as an integer, when it is one that fits */
    TR_SUPERJSON_NUMBER,    /* "number": "NaN", "Infinity", "-Infinity", "-0" as numbers */
    TR_SUPERJSON_MAP        /* "map": not a leaf (its entries need the general walk) */
} tr_superjson_kind;

/* The kind of the annotation named by n bytes at name (a NUL byte is just a byte). */
tr_superjson_kind tr_superjson_kind_of(const char *name, size_t n);

/* A bigint's decimal text as an integer when it fits in 64 bits and is written the way Lua
 * prints one (digits, only '-' as a sign, no leading zero, not "-0"): returns 1 and sets *out;
 * else 0 (the text stays text). */
int tr_superjson_bigint(const char *s, size_t n, int64_t *out);

/* "NaN", "Infinity", "-Infinity" or "-0" (the whole n bytes): returns 1 and sets *out; else 0. */
int tr_superjson_special_number(const char *s, size_t n, double *out);

/* Can a field named by these n bytes be a leaf: no '.' (a path) and no '\\' (an escaped one)?
 * Returns 1 or 0. */
int tr_superjson_plain_field(const char *s, size_t n);

/* The leaves of one meta.values, as a packet is read: the field names (copied) and kinds. */
#define TR_SUPERJSON_LEAVES_MAX 32
#define TR_SUPERJSON_NAMES_MAX 1024 /* bytes of field names kept */

typedef struct tr_superjson_leaf {
    unsigned short at, len; /* the field name in names[] */
    unsigned char kind;     /* tr_superjson_kind */
} tr_superjson_leaf;

typedef struct tr_superjson_leaves {
    int count; /* leaves kept */
    tr_superjson_leaf leaf[TR_SUPERJSON_LEAVES_MAX];
    size_t names_len;
    char names[TR_SUPERJSON_NAMES_MAX];
} tr_superjson_leaves;

void tr_superjson_leaves_init(tr_superjson_leaves *l);

/* The next leaf's field name: returns 0 when it is kept (until tr_superjson_leaves_keep counts
 * it), or -1 when the packet is not of the common shape: a path or an escape in the name, a name
 * already there, more leaves or name bytes than are kept. */
int tr_superjson_leaves_name(tr_superjson_leaves *l, const char *s, size_t n);

/* The annotation of the name last given: counts the leaf. */
void tr_superjson_leaves_keep(tr_superjson_leaves *l, tr_superjson_kind kind);

/* Leaf i's field name (n bytes, not NUL-terminated). */
const char *tr_superjson_leaf_name(const tr_superjson_leaves *l, int i, size_t *n);

#endif
