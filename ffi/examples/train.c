/* Run a training YAML with a log callback. Usage: train CONFIG.yaml [key=value ...].
 * Prints each log record as `log: {json}` and the result as `result: {json}`. With the
 * override `cancel_after=N` (handled here, not passed to lmf) the callback cancels the run at
 * its N-th record. */
#include <string.h>

#include "check.h"

typedef struct {
    int records;
    int cancel_after;
    LmfCancelToken *token;
} Seen;

static void on_log(const char *json, void *user) {
    Seen *s = (Seen *)user;
    s->records++;
    printf("log: %s\n", json);
    fflush(stdout);
    if (s->cancel_after > 0 && s->records == s->cancel_after) CHECK(lmf_cancel_token_cancel(s->token));
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONFIG.yaml [key=value ...] [cancel_after=N]\n", argv[0]);
        return 2;
    }
    Seen seen = {0, 0, NULL};
    const char *args[64];
    size_t nargs = 0;
    for (int i = 1; i < argc && nargs < 64; i++) {
        if (strncmp(argv[i], "cancel_after=", 13) == 0)
            seen.cancel_after = atoi(argv[i] + 13);
        else
            args[nargs++] = argv[i];
    }
    CHECK(lmf_cancel_token_new(&seen.token));
    char *result = NULL;
    CHECK(lmf_train_from_yaml(args, nargs, on_log, &seen, seen.token, &result));
    printf("result: %s\n", result);
    EXPECT(seen.records > 0);
    lmf_string_free(result);
    CHECK(lmf_cancel_token_free(seen.token));
    EXPECT(lmf_live_handles() == 0);
    printf("train: all checks passed\n");
    return 0;
}
