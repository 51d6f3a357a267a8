/* Helpers shared by the C examples: CHECK aborts with lmf's error message when a call fails,
 * EXPECT_STATUS checks that a call fails with the given status. */
#ifndef LMF_EXAMPLES_CHECK_H
#define LMF_EXAMPLES_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "lmf.h"

#define CHECK(call)                                                                    \
    do {                                                                               \
        LmfStatus s_ = (call);                                                         \
        if (s_ != LMF_STATUS_OK) {                                                     \
            fprintf(stderr, "%s:%d: %s failed with status %d: %s\n", __FILE__, __LINE__, \
                    #call, (int)s_, lmf_last_error());                                 \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

#define EXPECT_STATUS(want, call)                                                      \
    do {                                                                               \
        LmfStatus s_ = (call);                                                         \
        if (s_ != (want)) {                                                            \
            fprintf(stderr, "%s:%d: %s gave status %d, expected %d (%s)\n", __FILE__,    \
                    __LINE__, #call, (int)s_, (int)(want), lmf_last_error());          \
            exit(1);                                                                   \
        }                                                                              \
        printf("ok: %s -> %d: %s\n", #call, (int)s_, lmf_last_error());               \
    } while (0)

#define EXPECT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);         \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

#endif
