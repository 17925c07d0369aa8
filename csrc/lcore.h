/* The bindings of trigger.core, one file per module of the plain-C core (see the Makefile):
 * each tr_open_<name> adds its functions to the module table on top of the stack (and makes
 * the metatables it needs). lcore.c's luaopen_trigger_core calls them all. */
#ifndef TR_LCORE_H
#define TR_LCORE_H

#include <stddef.h>

#include "compat.h"
#include "lib/buf.h"
#include "lib/rowblob.h"
#include "lvalue.h"

void tr_open_shape(lua_State *L);  /* lshape.c: shape, shape_reader, shape_messages, url_encode */
void tr_open_pgtext(lua_State *L); /* lpgtext.c: pg_array, pg_timestamp */
void tr_open_runfields(lua_State *L); /* lrunfields.c: run_fields */
void tr_open_rowblob(lua_State *L);   /* lrowblob.c: row_table, row_column, row_merge */
void tr_open_jwt(lua_State *L);       /* ljwt.c: hs256, sha256, random_bytes, b64url_* */
void tr_open_clock(lua_State *L);     /* lclock.c: monotonic */
void tr_open_json(lua_State *L);      /* ljson.c: json_decode */
void tr_open_superjson(lua_State *L); /* lsuperjson.c: superjson_leaves */
void tr_open_http1(lua_State *L);     /* lhttp1.c: http1_* */
void tr_open_sse(lua_State *L);       /* lsse.c: sse_parser */
/* (tr_open_scratch, below, makes the scratch box class: called by the others that need it) */

/* lvalue.c (for lpgtext.c, lrunfields.c): push the array literal s as a nested table (NULL elements
 * as the value at null_index; each table, the empty ones too, gets the metatable at mt_index unless
 * it is 0); returns 0, or the tr_pg_array_parse code with the stack as it was. */
int tr_push_pg_array(lua_State *L, const char *s, size_t n, int null_index, int mt_index,
                     size_t *at);
/* Push the message for a failed tr_push_pg_array (its code and byte). */
void tr_pg_array_problem(lua_State *L, int rc, size_t at);

/* lvalue.c (for lrowblob.c, lrunfields.c): push a member of a row blob as the JSON builder pushes
 * the value (a string through the short-string cache c, its table at cache_index; c NULL: as
 * lua_pushlstring; null as the value at null_index); nil for a member with tag 0 (none). */
void tr_push_rowblob_member(lua_State *L, const tr_rowblob_member *m, int null_index,
                            tr_ljson_intern *c, int cache_index);

/* laux.c, for the parser bindings: the size option `name` of the table at t, >= 1 (absent:
 * 0, the default; numbers past size_t saturate); raises an argument error otherwise. */
size_t tr_size_option(lua_State *L, int t, const char *name);

/* laux.c: the one rule for C temporaries under a Lua error. Heap memory a binding holds
 * while it calls a Lua API function that may raise (anything that allocates) lives in a scratch
 * box, a userdata that frees it when collected; never in a C local.
 *   tr_scratch_take: push a box (one value), return its empty buffer;
 *   tr_scratch_give: done with the box at index `box` (it stays on the stack; its buffer must
 *                    no longer be used);
 *   tr_scratch_push: the box on top holds a result: push its bytes (rc == 0) or nil, what
 *                    (rc != 0), give the box back; returns 1 or 2 (the results on top);
 *   tr_scratch_take_from, tr_scratch_give_to: the same with the box kept between calls at
 *                    `home`, an upvalue of the calling closure that starts as false (the
 *                    box is pushed all the same: the upvalue holds false meanwhile). */
void tr_open_scratch(lua_State *L);
tr_buf *tr_scratch_take(lua_State *L);
void tr_scratch_give(lua_State *L, int box);
int tr_scratch_push(lua_State *L, int rc, const char *what);
tr_buf *tr_scratch_take_from(lua_State *L, int home);
void tr_scratch_give_to(lua_State *L, int box, int home);

#endif
