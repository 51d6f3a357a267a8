/* Every failure is a status code and a message, never a crash: NULL and freed handles,
 * double free, handles of the wrong type, wrong shapes and dtypes, bad enum values, bad
 * JSON, a model folder that does not exist, a bad training key. */
#include <string.h>

#include "check.h"

int main(void) {
    size_t shape23[2] = {2, 3}, shape2[1] = {2};
    float x[6] = {1, 2, 3, 4, 5, 6};
    LmfTensor *a = NULL, *b = NULL, *out = NULL;
    CHECK(lmf_tensor_from_data(x, LMF_DTYPE_F32, shape23, 2, &a));
    CHECK(lmf_tensor_from_data(x, LMF_DTYPE_F32, shape23, 2, &b));

    EXPECT_STATUS(LMF_STATUS_NULL_POINTER, lmf_matmul(NULL, b, &out));
    EXPECT_STATUS(LMF_STATUS_NULL_POINTER, lmf_matmul(a, b, NULL));
    EXPECT_STATUS(LMF_STATUS_NULL_POINTER, lmf_tensor_from_data(NULL, LMF_DTYPE_F32, shape23, 2, &out));
    EXPECT_STATUS(LMF_STATUS_SHAPE, lmf_matmul(a, b, &out)); /* [2,3] x [2,3] */
    EXPECT(strstr(lmf_last_error(), "matmul") != NULL);
    EXPECT_STATUS(LMF_STATUS_DTYPE, lmf_tensor_from_data(x, 42, shape23, 2, &out));
    EXPECT_STATUS(LMF_STATUS_INVALID_ARGUMENT, lmf_unary(a, 99, &out));
    EXPECT_STATUS(LMF_STATUS_INVALID_ARGUMENT, lmf_softmax(a, 2, &out));
    float small[2];
    EXPECT_STATUS(LMF_STATUS_DTYPE, lmf_tensor_copy_to(a, small, sizeof small));
    size_t dims[1];
    EXPECT_STATUS(LMF_STATUS_INVALID_ARGUMENT, lmf_tensor_shape(a, dims, 1));
    EXPECT(out == NULL); /* nothing is written on failure */

    /* backward of a non-scalar without grad_output; of a tensor that needs no grad */
    LmfGrads *g = NULL;
    LmfTensor *one = NULL;
    CHECK(lmf_tensor_full(1.0, LMF_DTYPE_F32, NULL, 0, LMF_DEVICE_KIND_CPU, 0, &one));
    EXPECT_STATUS(LMF_STATUS_INVALID_ARGUMENT, lmf_backward(one, NULL, &g));
    CHECK(lmf_tensor_free(one));
    LmfTensor *v = NULL;
    CHECK(lmf_tensor_from_data(x, LMF_DTYPE_F32, shape2, 1, &v));
    CHECK(lmf_tensor_set_requires_grad(v, true));
    LmfTensor *e = NULL;
    CHECK(lmf_unary(v, LMF_UNARY_OP_EXP, &e));
    EXPECT_STATUS(LMF_STATUS_INVALID_ARGUMENT, lmf_tensor_set_requires_grad(e, false));
    EXPECT_STATUS(LMF_STATUS_SHAPE, lmf_backward(e, NULL, &g));

    /* freed handles, double free, wrong handle type */
    CHECK(lmf_tensor_free(b));
    EXPECT_STATUS(LMF_STATUS_INVALID_HANDLE, lmf_tensor_free(b));
    EXPECT_STATUS(LMF_STATUS_INVALID_HANDLE, lmf_unary(b, LMF_UNARY_OP_EXP, &out));
    EXPECT_STATUS(LMF_STATUS_INVALID_HANDLE, lmf_tensor_free((LmfTensor *)0x12345670));
    LmfCancelToken *tok = NULL;
    CHECK(lmf_cancel_token_new(&tok));
    EXPECT_STATUS(LMF_STATUS_INVALID_HANDLE, lmf_tensor_free((LmfTensor *)tok));
    EXPECT_STATUS(LMF_STATUS_INVALID_HANDLE, lmf_grads_free((LmfGrads *)a));
    CHECK(lmf_cancel_token_free(tok));
    EXPECT_STATUS(LMF_STATUS_INVALID_HANDLE, lmf_cancel_token_cancel(tok));
    CHECK(lmf_tensor_free(NULL)); /* NULL is ignored, as free(NULL) */

    /* models and training */
    LmfModel *m = NULL;
    const char *bad_model[] = {"model_name_or_path=/nonexistent/lmf-model", "template=llama3"};
    LmfStatus st = lmf_model_load(bad_model, 2, &m);
    printf("ok: missing model -> %d: %s\n", (int)st, lmf_last_error());
    EXPECT(st != LMF_STATUS_OK && m == NULL && strstr(lmf_last_error(), "nonexistent") != NULL);
    const char *bad_key[] = {"model_name_or_path=/x", "no_such_key=1"};
    EXPECT_STATUS(LMF_STATUS_INVALID_ARGUMENT, lmf_train_from_yaml(bad_key, 2, NULL, NULL, NULL, NULL));
    EXPECT(strstr(lmf_last_error(), "no_such_key") != NULL);
    EXPECT_STATUS(LMF_STATUS_NULL_POINTER, lmf_model_chat(NULL, "[]", NULL, NULL, NULL, NULL, NULL, NULL, NULL));

    CHECK(lmf_tensor_free(a));
    CHECK(lmf_tensor_free(v));
    CHECK(lmf_tensor_free(e));
    EXPECT(lmf_live_handles() == 0);
    printf("errors: all checks passed\n");
    return 0;
}
