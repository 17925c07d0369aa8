/* A strict JSON (RFC 8259) parser that reports values to a sink as it reads them: no Lua,
 * no allocation but one scratch buffer for unescaped strings. Integers that fit in 64 bits are
 * reported as integers, every other number as a double, so Lua 5.4 gets 1 rather than 1.0. */
#ifndef TR_JSON_H
#define TR_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct tr_json_sink {
    /* Each returns 0 to go on, non-zero to stop the parse. Strings are not NUL-terminated and
     * live only during the call. */
    int (*null)(void *ud);
    int (*boolean)(void *ud, int value);
    int (*integer)(void *ud, int64_t value);
    int (*number)(void *ud, double value);
    int (*string)(void *ud, const char *s, size_t n);
    int (*begin_object)(void *ud);
    int (*key)(void *ud, const char *s, size_t n);
    int (*end_object)(void *ud);
    int (*begin_array)(void *ud);
    int (*end_array)(void *ud);
    void *ud;
} tr_json_sink;

typedef enum tr_json_status {
    TR_JSON_OK = 0,
    TR_JSON_SYNTAX = -1,  /* not JSON */
    TR_JSON_DEPTH = -2,   /* nested deeper than max_depth */
    TR_JSON_STOPPED = -3, /* the sink stopped the parse */
    TR_JSON_MEMORY = -4
} tr_json_status;

/* Parse exactly one JSON text (surrounding white space allowed). On failure *error_at is the
 * byte offset where the problem was found and *what a static description. */
tr_json_status tr_json_parse(const char *s, size_t n, int max_depth, const tr_json_sink *sink,
                             size_t *error_at, const char **what);

/* The same, unescaping strings into the caller's scratch buffer (its bytes are overwritten, its
 * memory kept for the caller to free): for a sink that may never return (a Lua error), the one
 * heap block the parse holds is then the caller's to own (the bindings keep it in a Lua-owned
 * box, lcore.h). */
tr_json_status tr_json_parse_with(const char *s, size_t n, int max_depth, const tr_json_sink *sink,
                                  tr_buf *scratch, size_t *error_at, const char **what);

/* A decimal "-?digits.digits" of at most 15 significant digits (leading zeros count), as the
 * nearest double, without strtod: returns 1 and sets *out, or 0 when the text is not of that
 * form (then use strtod). Most numbers of real packets and cost columns are. */
int tr_decimal_fast(const char *s, size_t n, double *out);

#endif
