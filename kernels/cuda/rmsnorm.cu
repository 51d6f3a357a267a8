// RMSNorm over the last dimension, the GPU twin of kernels/src/cpu/rmsnorm.rs:
//   y = x * rstd * (w + offset),  rstd[r] = 1 / sqrt(mean(x[r]^2) + eps)
// Forward: one block per row. rstd is saved in fp32 for the backward.
// Backward: dx per row (one block per row), and dw accumulated deterministically: block b of
// the dw pass sums rows b, b + G, b + 2G, .. into partial[b, :] (fp32), then a second kernel
// adds partial[0..G, j] in order into dw[j]. No atomics, so dw is bit-reproducible.
#include "lmf_common.cuh"

// x, y: [rows, dim]; w: [dim]; rstd: [rows] fp32. grid = rows, block = 256.
template <typename T>
__device__ void rmsnorm_fwd(const T* x, const T* w, T* y, float* rstd, int rows, int dim,
                            float eps, float offset) {
  __shared__ float scratch[32];
  const int r = blockIdx.x;
  const T* xr = x + (size_t)r * dim;
  T* yr = y + (size_t)r * dim;
  float ss = 0.f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    float v = lmf::to_f(xr[j]);
    ss += v * v;
  }
  ss = lmf::block_sum(ss, scratch);
  const float rs = rsqrtf(ss / (float)dim + eps);
  if (threadIdx.x == 0) rstd[r] = rs;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    yr[j] = lmf::from_f<T>(lmf::to_f(xr[j]) * rs * (lmf::to_f(w[j]) + offset));
  }
}

// dx_j = r * (dy_j g_j - x_j r^2 c / dim), c = sum_i dy_i g_i x_i, g = w + offset.
// grid = rows, block = 256.
template <typename T>
__device__ void rmsnorm_bwd_dx(const T* dy, const T* x, const T* w, const float* rstd, T* dx,
                               int rows, int dim, float offset) {
  __shared__ float scratch[32];
  const int r = blockIdx.x;
  const size_t base = (size_t)r * dim;
  const float rs = rstd[r];
  float c = 0.f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    c += lmf::to_f(dy[base + j]) * (lmf::to_f(w[j]) + offset) * lmf::to_f(x[base + j]);
  }
  c = lmf::block_sum(c, scratch);
  const float k = rs * rs * c / (float)dim;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    const float g = lmf::to_f(w[j]) + offset;
    dx[base + j] = lmf::from_f<T>(rs * (lmf::to_f(dy[base + j]) * g - lmf::to_f(x[base + j]) * k));
  }
}

// partial[b, j] = sum over rows r = b, b + G, .. of dy[r, j] x[r, j] rstd[r].
// grid = (G, ceil(dim / blockDim.x)).
template <typename T>
__device__ void rmsnorm_bwd_dw_partial(const T* dy, const T* x, const float* rstd,
                                       float* partial, int rows, int dim) {
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= dim) return;
  float acc = 0.f;
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const size_t i = (size_t)r * dim + j;
    acc += lmf::to_f(dy[i]) * lmf::to_f(x[i]) * rstd[r];
  }
  partial[(size_t)blockIdx.x * dim + j] = acc;
}

// dw[j] += sum_{b < G} partial[b, j], in order of b. grid = ceil(dim / blockDim.x).
template <typename T>
__device__ void rmsnorm_bwd_dw_reduce(const float* partial, T* dw, int groups, int dim) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= dim) return;
  float acc = 0.f;
  for (int b = 0; b < groups; b++) acc += partial[(size_t)b * dim + j];
  dw[j] = lmf::from_f<T>(lmf::to_f(dw[j]) + acc);
}

#define RMSNORM_ENTRY(S, T)                                                                      \
  extern "C" __global__ void rmsnorm_fwd_##S(const T* x, const T* w, T* y, float* rstd, int rows, \
                                             int dim, float eps, float offset) {                 \
    rmsnorm_fwd<T>(x, w, y, rstd, rows, dim, eps, offset);                                       \
  }                                                                                              \
  extern "C" __global__ void rmsnorm_bwd_dx_##S(const T* dy, const T* x, const T* w,            \
                                                const float* rstd, T* dx, int rows, int dim,     \
                                                float offset) {                                  \
    rmsnorm_bwd_dx<T>(dy, x, w, rstd, dx, rows, dim, offset);                                    \
  }                                                                                              \
  extern "C" __global__ void rmsnorm_bwd_dw_partial_##S(const T* dy, const T* x,                \
                                                        const float* rstd, float* partial,       \
                                                        int rows, int dim) {                     \
    rmsnorm_bwd_dw_partial<T>(dy, x, rstd, partial, rows, dim);                                  \
  }                                                                                              \
  extern "C" __global__ void rmsnorm_bwd_dw_reduce_##S(const float* partial, T* dw, int groups,  \
                                                       int dim) {                                \
    rmsnorm_bwd_dw_reduce<T>(partial, dw, groups, dim);                                          \
  }
LMF_FOR_FLOATS(RMSNORM_ENTRY)
