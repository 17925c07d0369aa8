/* Postgres text-format values as Electric sends them: array literals and timestamps.
 * Pure functions, no Lua. */
#ifndef TR_PGTEXT_H
#define TR_PGTEXT_H

#include <stddef.h>

#include "buf.h"

#define TR_PG_MAX_DEPTH 16

typedef struct tr_pg_array_sink {
    /* Each returns 0 to go on, non-zero to stop the parse. */
    int (*open)(void *ud);
    int (*close)(void *ud);
    int (*element)(void *ud, const char *s, size_t n, int is_null);
    void *ud;
} tr_pg_array_sink;

/* Parse an array literal such as {a,"b c","q\"d",NULL} or {{1,2},{3,4}}.
 * Returns 0, or -1 on a syntax error (*error_at is set to the byte offset), or -2 when the
 * sink stopped the parse or memory ran out. */
int tr_pg_array_parse(const char *s, size_t n, const tr_pg_array_sink *sink, size_t *error_at);
/* The same, unescaping elements into the caller's scratch buffer (see tr_json_parse_with). */
int tr_pg_array_parse_with(const char *s, size_t n, const tr_pg_array_sink *sink, tr_buf *scratch,
                           size_t *error_at);

/* Normalise a Postgres timestamp ("2025-01-10 12:00:00.123", "2025-01-10T12:00:00",
 * an optional zone "Z", "+00", "+05:30") to ISO-8601 UTC with milliseconds:
 * "2025-01-10T12:00:00.123Z". out must hold TR_PG_ISO_LEN + 1 bytes.
 * Returns 0, or -1 when the text is not such a timestamp. */
#define TR_PG_ISO_LEN 24
int tr_pg_timestamp_iso(const char *s, size_t n, char *out);

#endif
