/* Unit tests of the run object's plain decisions (csrc/lib/runfields.c, no Lua): TAP output. */
#include <stdio.h>
#include <string.h>

#include "../../csrc/lib/runfields.h"

static int n_checks;

static void check(int ok, const char *what) {
    printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_checks, what);
}

static int same(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

int main(void) {
    /* The SDK's mapping, every database status of the enum. */
    static const char *const map[][2] = {
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
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "status %s is %s", map[i][0], map[i][1]);
        check(same(tr_run_public_status(map[i][0]), map[i][1]), what);
    }
    check(same(tr_run_public_status(NULL), "QUEUED"), "no status is QUEUED");
    check(same(tr_run_public_status("SOMETHING_NEW"), "QUEUED"), "an unknown status is QUEUED");
    check(same(tr_run_public_status("completed_successfully"), "QUEUED"),
          "statuses are compared exactly (case)");

    /* The helpers of each public status. */
    static const struct {
        const char *status;
        unsigned flags;
    } helpers[] = {
        {"QUEUED", TR_RUN_QUEUED},
        {"DELAYED", TR_RUN_QUEUED},
        {"PENDING_VERSION", TR_RUN_QUEUED},
        {"DEQUEUED", TR_RUN_EXECUTING},
        {"EXECUTING", TR_RUN_EXECUTING},
        {"WAITING", TR_RUN_WAITING},
        {"COMPLETED", TR_RUN_SUCCESS | TR_RUN_COMPLETED},
        {"FAILED", TR_RUN_FAILED | TR_RUN_COMPLETED},
        {"CRASHED", TR_RUN_FAILED | TR_RUN_COMPLETED},
        {"SYSTEM_FAILURE", TR_RUN_FAILED | TR_RUN_COMPLETED},
        {"EXPIRED", TR_RUN_FAILED | TR_RUN_COMPLETED},
        {"TIMED_OUT", TR_RUN_FAILED | TR_RUN_COMPLETED},
        {"CANCELED", TR_RUN_CANCELLED},
        {"UNHEARD_OF", 0},
    };
    for (size_t i = 0; i < sizeof helpers / sizeof helpers[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s: its helper flags (0x%x)", helpers[i].status,
                 helpers[i].flags);
        check(tr_run_status_flags(helpers[i].status) == helpers[i].flags, what);
    }
    check(tr_run_status_flags(NULL) == 0, "no status: no flag");
    /* Every status a database status maps to is finished exactly when it is a success or a
     * failure; a canceled run is neither (isCompleted false, as the SDK says). */
    int consistent = 1;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        unsigned f = tr_run_status_flags(map[i][1]);
        int done = (f & TR_RUN_COMPLETED) != 0,
            outcome = (f & (TR_RUN_SUCCESS | TR_RUN_FAILED)) != 0;
        if (done != outcome || ((f & TR_RUN_SUCCESS) && (f & TR_RUN_FAILED))) consistent = 0;
    }
    check(consistent, "completed = a success or a failure, never both, for every mapped status");

    /* Postgres booleans. */
    check(tr_pg_bool("t") == 1 && tr_pg_bool("true") == 1, "t and true are true");
    check(tr_pg_bool("f") == 0 && tr_pg_bool("false") == 0, "f and false are false");
    check(tr_pg_bool("yes") == -1 && tr_pg_bool("") == -1 && tr_pg_bool("T") == -1 &&
              tr_pg_bool("1") == -1,
          "anything else is no boolean");
    check(tr_pg_bool(NULL) == -1, "no text is no boolean");

    /* The column list. */
    check(TR_RUN_N_COLUMNS == 26, "26 columns of the realtime shape");
    check(same(tr_run_name(TR_RUN_C_FRIENDLY_ID), "friendlyId") &&
              same(tr_run_column_kind(TR_RUN_C_FRIENDLY_ID), "text"),
          "friendlyId is a text column");
    check(same(tr_run_column_kind(TR_RUN_C_UPDATED_AT), "timestamp") &&
              same(tr_run_column_kind(TR_RUN_C_RUN_TAGS), "array") &&
              same(tr_run_column_kind(TR_RUN_C_IS_TEST), "boolean") &&
              same(tr_run_column_kind(TR_RUN_C_ERROR), "json") &&
              same(tr_run_column_kind(TR_RUN_C_OUTPUT), "packet") &&
              same(tr_run_column_kind(TR_RUN_C_COST), "number"),
          "each kind of column");
    int kinds_ok = 1, lens_ok = 1, found_ok = 1;
    for (int k = 0; k < TR_RUN_N_NAMES; k++) {
        const char *name = tr_run_name(k);
        if (name == NULL || strlen(name) != tr_run_name_len(k)) lens_ok = 0;
        if ((k < TR_RUN_N_COLUMNS) != (tr_run_column_kind(k) != NULL)) kinds_ok = 0;
        int want = k < TR_RUN_N_COLUMNS ? k : TR_RUN_N_COLUMNS;
        if (name && tr_run_column_of(name, strlen(name)) != want) found_ok = 0;
    }
    check(lens_ok, "every name has its length");
    check(kinds_ok, "columns have a kind, the run's own fields none");
    check(found_ok, "a column is found by its name; a field of the run is no column");
    check(tr_run_column_of("status", 5) == TR_RUN_N_COLUMNS, "a prefix of a name is no column");
    check(tr_run_column_of("statusX", 7) == TR_RUN_N_COLUMNS, "a longer name is no column");
    check(tr_run_column_of("status\0", 7) == TR_RUN_N_COLUMNS, "a name with a NUL is no column");
    check(tr_run_name(-1) == NULL && tr_run_name(TR_RUN_N_NAMES) == NULL &&
              tr_run_name_len(TR_RUN_N_NAMES) == 0 && tr_run_column_kind(TR_RUN_N_COLUMNS) == NULL,
          "out of range: nothing");

    printf("1..%d\n", n_checks);
    return 0;
}
