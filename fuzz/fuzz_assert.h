/* The checks of every fuzz target beyond the sanitizers fail through FUZZ_ASSERT: it names the
 * file and line (so the target) and what went wrong, then aborts, so libFuzzer keeps the input
 * as a crash artifact. */
#ifndef FUZZ_ASSERT_H
#define FUZZ_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(c, msg)                                                                        \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: %s (%s)\n", __FILE__, __LINE__, msg, #c);                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
