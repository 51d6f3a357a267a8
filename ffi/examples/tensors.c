/* Tensors and autograd from C: loss = sum(softmax(A @ B, -1) * C) for A [2,3], B [3,4] and a
 * constant C [2,4] (all f64); backward gives dA and dB. Checks them against the analytic
 * gradient computed here, and prints them (`dA: ...`, `dB: ...`) so the test driver can
 * compare them with the gradient lmf's Rust API computes for the same inputs. */
#include <math.h>
#include <string.h>

#include "check.h"

#define M 2
#define K 3
#define N 4

static LmfTensor *make(const double *data, size_t rows, size_t cols) {
    size_t shape[2] = {rows, cols};
    LmfTensor *t = NULL;
    CHECK(lmf_tensor_from_data(data, LMF_DTYPE_F64, shape, 2, &t));
    return t;
}

static void print_tensor(const char *name, const LmfTensor *t, size_t n) {
    double buf[16];
    CHECK(lmf_tensor_copy_to(t, buf, n * sizeof(double)));
    printf("%s:", name);
    for (size_t i = 0; i < n; i++) printf(" %.17g", buf[i]);
    printf("\n");
}

int main(void) {
    printf("lmf %s, ABI %u\n", lmf_version(), lmf_abi_version());
    EXPECT(lmf_abi_version() == LMF_ABI_VERSION);
    double a[M * K], b[K * N], c[M * N];
    for (int i = 0; i < M * K; i++) a[i] = 0.3 * i - 0.7;
    for (int i = 0; i < K * N; i++) b[i] = 0.2 * ((i * 7) % 5) - 0.4;
    for (int i = 0; i < M * N; i++) c[i] = (double)((i * 3) % 4) - 1.5;

    LmfTensor *ta = make(a, M, K), *tb = make(b, K, N), *tc = make(c, M, N);
    CHECK(lmf_tensor_set_requires_grad(ta, true));
    CHECK(lmf_tensor_set_requires_grad(tb, true));

    LmfTensor *z = NULL, *s = NULL, *sc = NULL, *loss = NULL;
    CHECK(lmf_matmul(ta, tb, &z));
    CHECK(lmf_softmax(z, -1, &s));
    CHECK(lmf_binary(s, tc, LMF_BINARY_OP_MUL, &sc));
    CHECK(lmf_reduce(sc, LMF_REDUCE_OP_SUM, NULL, 0, false, &loss));
    size_t ndim = 99;
    CHECK(lmf_tensor_ndim(loss, &ndim));
    EXPECT(ndim == 0);
    bool rg = false;
    CHECK(lmf_tensor_requires_grad(loss, &rg));
    EXPECT(rg);

    LmfGrads *grads = NULL;
    CHECK(lmf_backward(loss, NULL, &grads));
    LmfTensor *da = NULL, *db = NULL, *dc = (LmfTensor *)1;
    CHECK(lmf_grads_get(grads, ta, &da));
    CHECK(lmf_grads_get(grads, tb, &db));
    CHECK(lmf_grads_get(grads, tc, &dc));
    EXPECT(da != NULL && db != NULL && dc == NULL); /* C is a constant: no gradient */

    /* analytic: dZ = S * (C - sum_j S*C), dA = dZ B^T, dB = A^T dZ */
    double zz[M * N], ss[M * N], dz[M * N], want_a[M * K], want_b[K * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            zz[i * N + j] = 0;
            for (int k = 0; k < K; k++) zz[i * N + j] += a[i * K + k] * b[k * N + j];
        }
    for (int i = 0; i < M; i++) {
        double mx = zz[i * N], sum = 0, dot = 0;
        for (int j = 1; j < N; j++) mx = fmax(mx, zz[i * N + j]);
        for (int j = 0; j < N; j++) sum += exp(zz[i * N + j] - mx);
        for (int j = 0; j < N; j++) ss[i * N + j] = exp(zz[i * N + j] - mx) / sum;
        for (int j = 0; j < N; j++) dot += ss[i * N + j] * c[i * N + j];
        for (int j = 0; j < N; j++) dz[i * N + j] = ss[i * N + j] * (c[i * N + j] - dot);
    }
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) {
            want_a[i * K + k] = 0;
            for (int j = 0; j < N; j++) want_a[i * K + k] += dz[i * N + j] * b[k * N + j];
        }
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) {
            want_b[k * N + j] = 0;
            for (int i = 0; i < M; i++) want_b[k * N + j] += a[i * K + k] * dz[i * N + j];
        }
    double got_a[M * K], got_b[K * N];
    CHECK(lmf_tensor_copy_to(da, got_a, sizeof got_a));
    CHECK(lmf_tensor_copy_to(db, got_b, sizeof got_b));
    for (int i = 0; i < M * K; i++) EXPECT(fabs(got_a[i] - want_a[i]) < 1e-12);
    for (int i = 0; i < K * N; i++) EXPECT(fabs(got_b[i] - want_b[i]) < 1e-12);
    print_tensor("dA", da, M * K);
    print_tensor("dB", db, K * N);

    /* zero-copy read of a contiguous CPU tensor; a transposed view must be copied */
    const void *p = NULL;
    CHECK(lmf_tensor_data_ptr(ta, &p));
    EXPECT(memcmp(p, a, sizeof a) == 0);
    LmfTensor *at = NULL;
    CHECK(lmf_transpose(ta, 0, 1, &at));
    EXPECT_STATUS(LMF_STATUS_INVALID_ARGUMENT, lmf_tensor_data_ptr(at, &p));
    double at_buf[K * M];
    CHECK(lmf_tensor_copy_to(at, at_buf, sizeof at_buf));
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) EXPECT(at_buf[k * M + i] == a[i * K + k]);
    size_t shape[4] = {0};
    CHECK(lmf_tensor_shape(at, shape, 4));
    EXPECT(shape[0] == K && shape[1] == M);

    /* no-grad scope: nothing is recorded */
    bool prev = false;
    CHECK(lmf_set_grad_enabled(false, &prev));
    EXPECT(prev && !lmf_is_grad_enabled());
    LmfTensor *z2 = NULL;
    CHECK(lmf_matmul(ta, tb, &z2));
    CHECK(lmf_tensor_requires_grad(z2, &rg));
    EXPECT(!rg);
    CHECK(lmf_set_grad_enabled(prev, NULL));

    LmfTensor *all[] = {ta, tb, tc, z, s, sc, loss, da, db, at, z2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) CHECK(lmf_tensor_free(all[i]));
    CHECK(lmf_grads_free(grads));
    EXPECT(lmf_live_handles() == 0);
    printf("tensors: all checks passed\n");
    return 0;
}
