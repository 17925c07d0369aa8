/* The run object's plain decisions (runfields.h): column list, status mapping and helpers. */
#include "runfields.h"

#include <string.h>

#define NAME_TEXT(id, text, kind) text,
#define NAME_LEN(id, text, kind) (sizeof(text) - 1),
#define NAME_KIND(id, text, kind) kind,
static const char *const name_text[] = {TR_RUN_NAMES(NAME_TEXT)};
static const unsigned char name_len[] = {TR_RUN_NAMES(NAME_LEN)};
static const char *const name_kind[] = {TR_RUN_NAMES(NAME_KIND)};

const char *tr_run_name(int k) { return k >= 0 && k < TR_RUN_N_NAMES ? name_text[k] : NULL; }
size_t tr_run_name_len(int k) { return k >= 0 && k < TR_RUN_N_NAMES ? name_len[k] : 0; }
const char *tr_run_column_kind(int k) {
    return k >= 0 && k < TR_RUN_N_COLUMNS ? name_kind[k] : NULL;
}

int tr_run_column_of(const char *name, size_t len) {
    for (int k = 0; k < TR_RUN_N_COLUMNS; k++)
        if (name_len[k] == len && memcmp(name_text[k], name, len) == 0) return k;
    return TR_RUN_N_COLUMNS;
}

/* Database status -> public status (the SDK's mapping). */
static const char *const status_map[][2] = {
    {"PENDING", "QUEUED"},
    {"EXECUTING", "EXECUTING"},
    {"COMPLETED_SUCCESSFULLY", "COMPLETED"},
    {"DEQUEUED", "DEQUEUED"},
    {"DELAYED", "DELAYED"},
    {"WAITING_FOR_DEPLOY", "PENDING_VERSION"},
    {"PENDING_VERSION", "PENDING_VERSION"},
    {"PAUSED", "WAITING"},
    {"WAITING_TO_RESUME", "WAITING"},
    {"RETRYING_AFTER_FAILURE", "EXECUTING"},
    {"CANCELED", "CANCELED"},
    {"SYSTEM_FAILURE", "SYSTEM_FAILURE"},
    {"CRASHED", "CRASHED"},
    {"INTERRUPTED", "FAILED"},
    {"COMPLETED_WITH_ERRORS", "FAILED"},
    {"EXPIRED", "EXPIRED"},
    {"TIMED_OUT", "TIMED_OUT"},
};

const char *tr_run_public_status(const char *db) {
    if (db == NULL) return "QUEUED";
    for (size_t i = 0; i < sizeof status_map / sizeof status_map[0]; i++)
        if (strcmp(db, status_map[i][0]) == 0) return status_map[i][1];
    return "QUEUED";
}

static int one_of(const char *s, const char *const *set) {
    for (; *set; set++)
        if (strcmp(s, *set) == 0) return 1;
    return 0;
}

unsigned tr_run_status_flags(const char *status) {
    static const char *const queued[] = {"PENDING_VERSION", "QUEUED", "DELAYED", NULL};
    static const char *const executing[] = {"DEQUEUED", "EXECUTING", NULL};
    static const char *const failed[] = {"FAILED",  "CRASHED",   "SYSTEM_FAILURE",
                                         "EXPIRED", "TIMED_OUT", NULL};
    if (status == NULL) return 0;
    unsigned flags = 0;
    if (one_of(status, queued)) flags |= TR_RUN_QUEUED;
    if (one_of(status, executing)) flags |= TR_RUN_EXECUTING;
    if (strcmp(status, "WAITING") == 0) flags |= TR_RUN_WAITING;
    if (strcmp(status, "COMPLETED") == 0) flags |= TR_RUN_SUCCESS | TR_RUN_COMPLETED;
    if (one_of(status, failed)) flags |= TR_RUN_FAILED | TR_RUN_COMPLETED;
    if (strcmp(status, "CANCELED") == 0) flags |= TR_RUN_CANCELLED;
    return flags;
}

int tr_pg_bool(const char *t) {
    if (t == NULL) return -1;
    if (strcmp(t, "t") == 0 || strcmp(t, "true") == 0) return 1;
    if (strcmp(t, "f") == 0 || strcmp(t, "false") == 0) return 0;
    return -1;
}
