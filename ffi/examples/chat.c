/* Load a model as `lmf chat` does, encode a conversation with its template, and generate a
 * greedy reply with streaming. Usage: chat MODEL_DIR TEMPLATE "USER MESSAGE" REPLY_FILE.
 * Writes the reply's bytes to REPLY_FILE and the prompt ids to stdout (`prompt_ids: ...`);
 * checks that the streamed pieces add up to the reply, and that the forward pass's argmax at
 * the last prompt position is the reply's first token. */
#include <string.h>

#include "check.h"

typedef struct {
    char buf[1 << 16];
    size_t len;
    int pieces;
} Stream;

static void on_piece(const char *piece, void *user) {
    Stream *s = (Stream *)user;
    size_t n = strlen(piece);
    if (s->len + n < sizeof s->buf) {
        memcpy(s->buf + s->len, piece, n);
        s->len += n;
    }
    s->pieces++;
}

/* JSON string body of `text` (escapes quotes, backslashes and control characters). */
static void json_escape(const char *text, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = text; *p && o + 8 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL_DIR TEMPLATE MESSAGE REPLY_FILE\n", argv[0]);
        return 2;
    }
    char model_arg[4096], template_arg[256];
    snprintf(model_arg, sizeof model_arg, "model_name_or_path=%s", argv[1]);
    snprintf(template_arg, sizeof template_arg, "template=%s", argv[2]);
    const char *args[] = {model_arg, template_arg, "do_sample=false"};
    LmfModel *model = NULL;
    CHECK(lmf_model_load(args, 3, &model));

    char escaped[8192], messages[9000];
    json_escape(argv[3], escaped, sizeof escaped);
    snprintf(messages, sizeof messages, "[{\"role\": \"user\", \"content\": \"%s\"}]", escaped);

    LmfTensor *prompt = NULL;
    CHECK(lmf_model_encode_chat(model, messages, NULL, NULL, &prompt));
    size_t n = 0;
    CHECK(lmf_tensor_numel(prompt, &n));
    const void *data = NULL;
    CHECK(lmf_tensor_data_ptr(prompt, &data));
    const int64_t *ids = (const int64_t *)data;
    printf("prompt_ids:");
    for (size_t i = 0; i < n; i++) printf(" %lld", (long long)ids[i]);
    printf("\n");

    Stream stream = {{0}, 0, 0};
    LmfGenerateParams params = lmf_generate_params_default();
    params.do_sample = 0;
    char *reply = NULL;
    LmfChatInfo info;
    CHECK(lmf_model_chat(model, messages, NULL, NULL, &params, on_piece, &stream, &reply, &info));
    EXPECT(info.prompt_tokens == n && info.response_tokens > 0);
    EXPECT(stream.pieces > 0 && stream.len == strlen(reply) && memcmp(stream.buf, reply, stream.len) == 0);
    printf("response_tokens: %zu finish_reason: %d pieces: %d\n", info.response_tokens,
           (int)info.finish_reason, stream.pieces);

    /* the first generated token is the argmax of the last prompt row's logits */
    LmfTensor *logits = NULL, *first = NULL;
    CHECK(lmf_model_forward(model, ids, n, &logits));
    size_t shape[2];
    CHECK(lmf_tensor_shape(logits, shape, 2));
    EXPECT(shape[0] == n);
    const float *lg = NULL;
    CHECK(lmf_tensor_data_ptr(logits, (const void **)&lg));
    const float *last = lg + (n - 1) * shape[1];
    int64_t best = 0;
    for (size_t v = 1; v < shape[1]; v++)
        if (last[v] > last[best]) best = (int64_t)v;
    CHECK(lmf_model_tokenize(model, reply, false, &first));
    char *best_text = NULL;
    CHECK(lmf_model_detokenize(model, &best, 1, true, &best_text));
    EXPECT(strncmp(reply, best_text, strlen(best_text)) == 0);
    printf("first token %lld = \"%s\"\n", (long long)best, best_text);

    FILE *f = fopen(argv[4], "wb");
    EXPECT(f != NULL);
    fwrite(reply, 1, strlen(reply), f);
    fclose(f);

    lmf_string_free(reply);
    lmf_string_free(best_text);
    CHECK(lmf_tensor_free(prompt));
    CHECK(lmf_tensor_free(logits));
    CHECK(lmf_tensor_free(first));
    CHECK(lmf_model_free(model));
    EXPECT(lmf_live_handles() == 0);
    printf("chat: all checks passed\n");
    return 0;
}
