/* A stored row as one byte string: the columns of a shape-log value object ({"name": "text" or
 * null, ...}) as its JSON parser saw them, strings already unescaped, written while the page
 * is decoded and read by run_fields when the run object is built. An initial sync keeps every
 * row until its last page is in; as a Lua table of strings each row was ~30 objects (a table,
 * its columns' strings) that the collector walks and the builder hashes, as a blob it is one
 * string nobody walks (issue 16).
 *
 * Format (made and read in one process only: lengths in native byte order):
 *   "\033R" then, per member in the order it came,
 *   name length (1 byte), name, tag (1 byte), and by tag:
 *     's' string: length (4 bytes), bytes, a NUL (so that a reader can use the bytes as a C
 *         string where they hold no NUL themselves);  'n' null;  't' true;  'f' false;
 *     'i' integer (8 bytes, int64_t);  'd' number (8 bytes, double).
 * Nested containers are not kept: a value holding one stays a table (lshape.c). A name that
 * comes twice is there twice; as for a table, the last one counts. */
#ifndef TR_ROWBLOB_H
#define TR_ROWBLOB_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "json.h"

#define TR_ROWBLOB_MAGIC "\033R"
#define TR_ROWBLOB_MAGIC_LEN 2
#define TR_ROWBLOB_NAME_MAX 255

/* Writing: start, then name + one value per member. Each returns 0, or -1 when memory runs
 * out or the name or string is too long for the format (the caller keeps a table instead). */
int tr_rowblob_start(tr_buf *b);
int tr_rowblob_name(tr_buf *b, const char *s, size_t n);
int tr_rowblob_string(tr_buf *b, const char *s, size_t n);
int tr_rowblob_null(tr_buf *b);
int tr_rowblob_boolean(tr_buf *b, int v);
int tr_rowblob_integer(tr_buf *b, int64_t v);
int tr_rowblob_number(tr_buf *b, double v);

/* Reading. */
typedef struct tr_rowblob_member {
    const char *name;
    size_t name_len;
    char tag;      /* 's', 'n', 't', 'f', 'i', 'd' */
    const char *s; /* 's': the bytes (a NUL after them) */
    size_t len;
    int64_t i;
    double d;
} tr_rowblob_member;

/* Does s[0..n) start as a blob does? */
int tr_rowblob_is(const char *s, size_t n);
/* The member at *pos (start with *pos = 0): 1 and *pos moved past it, 0 at the end, -1 when
 * the bytes are not a well-formed blob (nothing read past n). */
int tr_rowblob_next(const char *s, size_t n, size_t *pos, tr_rowblob_member *m);
/* A partial update merged into the row before it: into `out`, the members of `old` whose name
 * `changes` has not, then those of `changes` (as copying the old table and setting the changed
 * columns over it gives). 0, -1 for a malformed blob, -2 when memory runs out. */
int tr_rowblob_merge(const char *old, size_t old_n, const char *changes, size_t changes_n,
                     tr_buf *out);
/* The same, adding to *compares the names it compared (a test checks the merge stays linear:
 * each name is looked up in a table of the changes' names, not in the changes themselves). */
int tr_rowblob_merge_counted(const char *old, size_t old_n, const char *changes, size_t changes_n,
                             tr_buf *out, size_t *compares);
/* Give the members to a JSON sink as the parser gave them: begin_object (when `open`), then a
 * key and a value per member; end_object when `close`. 0, -1 for a malformed blob, or what
 * a callback returned when it stopped. */
int tr_rowblob_replay(const char *s, size_t n, const tr_json_sink *sink, int open, int close);

#endif
