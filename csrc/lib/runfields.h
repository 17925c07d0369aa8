/* The run object's plain decisions, no Lua: the TaskRun columns of the realtime shape (each with
 * the kind of value it holds) and the fields of the public run object named after them, the
 * database status -> public status mapping, the status helpers (isQueued, isFailed...), and
 * Postgres booleans. Pure functions. */
#ifndef TR_RUNFIELDS_H
#define TR_RUNFIELDS_H

#include <stddef.h>

/* The C_ names are the TaskRun columns of the realtime shape, with their kind: the one list of
 * them (the Lua side reads it as core.run_columns). The F_ names are the run object's own
 * fields. X(id, text, kind). */
#define TR_RUN_NAMES(X)                                                                            \
    X(C_FRIENDLY_ID, "friendlyId", "text")                                                         \
    X(C_TASK, "taskIdentifier", "text")                                                            \
    X(C_STATUS, "status", "text")                                                                  \
    X(C_CREATED_AT, "createdAt", "timestamp")                                                      \
    X(C_UPDATED_AT, "updatedAt", "timestamp")                                                      \
    X(C_STARTED_AT, "startedAt", "timestamp")                                                      \
    X(C_QUEUED_AT, "queuedAt", "timestamp")                                                        \
    X(C_EXPIRED_AT, "expiredAt", "timestamp")                                                      \
    X(C_COMPLETED_AT, "completedAt", "timestamp")                                                  \
    X(C_DELAY_UNTIL, "delayUntil", "timestamp")                                                    \
    X(C_NUMBER, "number", "number")                                                                \
    X(C_USAGE, "usageDurationMs", "number")                                                        \
    X(C_COST, "costInCents", "number")                                                             \
    X(C_BASE_COST, "baseCostInCents", "number")                                                    \
    X(C_RUN_TAGS, "runTags", "array")                                                              \
    X(C_STREAMS, "realtimeStreams", "array")                                                       \
    X(C_IS_TEST, "isTest", "boolean")                                                              \
    X(C_TTL, "ttl", "text")                                                                        \
    X(C_IDEMPOTENCY, "idempotencyKey", "text")                                                     \
    X(C_ERROR, "error", "json")                                                                    \
    X(C_PAYLOAD, "payload", "packet")                                                              \
    X(C_PAYLOAD_TYPE, "payloadType", "text")                                                       \
    X(C_OUTPUT, "output", "packet")                                                                \
    X(C_OUTPUT_TYPE, "outputType", "text")                                                         \
    X(C_METADATA, "metadata", "packet")                                                            \
    X(C_METADATA_TYPE, "metadataType", "text")                                                     \
    X(F_ID, "id", NULL)                                                                            \
    X(F_FINISHED_AT, "finishedAt", NULL)                                                           \
    X(F_DELAYED_UNTIL, "delayedUntil", NULL)                                                       \
    X(F_DURATION, "durationMs", NULL)                                                              \
    X(F_TAGS, "tags", NULL)                                                                        \
    X(F_IS_QUEUED, "isQueued", NULL)                                                               \
    X(F_IS_EXECUTING, "isExecuting", NULL)                                                         \
    X(F_IS_WAITING, "isWaiting", NULL)                                                             \
    X(F_IS_SUCCESS, "isSuccess", NULL)                                                             \
    X(F_IS_FAILED, "isFailed", NULL)                                                               \
    X(F_IS_COMPLETED, "isCompleted", NULL)                                                         \
    X(F_IS_CANCELLED, "isCancelled", NULL)

#define TR_RUN_NAME_ENUM(id, text, kind) TR_RUN_##id,
enum { TR_RUN_NAMES(TR_RUN_NAME_ENUM) TR_RUN_N_NAMES };
/* The columns are the names before the first F_ one. */
enum { TR_RUN_N_COLUMNS = TR_RUN_C_METADATA_TYPE + 1 };

/* Name k's text, its length, and (columns only; NULL for the run's own fields) its kind:
 * "text", "timestamp", "number", "array", "boolean", "json" or "packet". */
const char *tr_run_name(int k);
size_t tr_run_name_len(int k);
const char *tr_run_column_kind(int k);
/* The column called name[0..len) (TR_RUN_N_COLUMNS: none of them). */
int tr_run_column_of(const char *name, size_t len);

/* The public status of a database status (the SDK's mapping): "QUEUED" for NULL or any status
 * it does not know. */
const char *tr_run_public_status(const char *db_status);

/* What a public status says: the run object's helper flags. */
enum {
    TR_RUN_QUEUED = 1,
    TR_RUN_EXECUTING = 2,
    TR_RUN_WAITING = 4,
    TR_RUN_SUCCESS = 8,
    TR_RUN_FAILED = 16,
    TR_RUN_COMPLETED = 32, /* finished: a success or a failure */
    TR_RUN_CANCELLED = 64
};
unsigned tr_run_status_flags(const char *public_status);

/* A Postgres boolean's text ("t", "true", "f", "false"): 1, 0, or -1 when it is none. */
int tr_pg_bool(const char *text);

#endif
