// Fused LoRA linear, the elementwise part of the GPU twin of kernels/src/cpu/lora.rs:
//   y = x·Wᵀ + bias + s·(drop(x)·Aᵀ)·Bᵀ,   drop(x)[k] = x[k]·keep(seed, offset + k, p)/(1 − p)
// with k = t·in + i the flat element index (the CPU's Philox indexing). The GEMMs run in
// cuBLASLt (launcher kernels/src/cuda/lora.rs); these kernels broadcast the bias, apply the
// dropout mask, add the masked low-rank part of dx, and reduce dbias.
//
// The mask kernel writes x·keep (0 or x, exact in every storage type); the 1/(1 − p) factor
// is the alpha of the GEMM that consumes it, so the masked input is never rounded.
#include "lmf_common.cuh"
#include "lmf_philox.cuh"

// y[t, o] = bias[o]. y: [n, out]; bias: [out]. 1-D grid-stride over n·out.
template <typename T>
__device__ void lora_bias_rows(T* y, const T* bias, long long total, int out) {
  for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
       k += (long long)gridDim.x * blockDim.x) {
    y[k] = bias[k % out];
  }
}

// xm[k] = keep(seed, offset + k, p) ? x[k] : 0. x, xm: [n, in] (total = n·in).
template <typename T>
__device__ void lora_dropout_mask(const T* x, T* xm, long long total, unsigned long long seed,
                                  unsigned long long offset, float p) {
  for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
       k += (long long)gridDim.x * blockDim.x) {
    xm[k] = lmf::philox_keep(seed, offset + (unsigned long long)k, p) ? x[k] : lmf::from_f<T>(0.f);
  }
}

// dx[k] += prod[k]·keep(seed, offset + k, p)/(1 − p), prod = d_xa·A. dx, prod: [n, in].
template <typename T>
__device__ void lora_dx_dropout_add(T* dx, const T* prod, long long total, unsigned long long seed,
                                    unsigned long long offset, float p, float inv_keep) {
  for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
       k += (long long)gridDim.x * blockDim.x) {
    const float m = lmf::philox_keep(seed, offset + (unsigned long long)k, p) ? inv_keep : 0.f;
    dx[k] = lmf::from_f<T>(lmf::to_f(dx[k]) + lmf::to_f(prod[k]) * m);
  }
}

// dbias = Σ_t dy[t, :], deterministic in two passes (no atomics):
// partial[g, o] = Σ over rows t = g, g + G, .. of dy[t, o] (fp32). grid = (G, ceil(out / block)).
template <typename T>
__device__ void lora_dbias_partial(const T* dy, float* partial, int n, int out) {
  const int o = blockIdx.y * blockDim.x + threadIdx.x;
  if (o >= out) return;
  float acc = 0.f;
  for (int t = blockIdx.x; t < n; t += gridDim.x) acc += lmf::to_f(dy[(size_t)t * out + o]);
  partial[(size_t)blockIdx.x * out + o] = acc;
}

// dbias[o] += Σ_{g < G} partial[g, o], in order of g. grid = ceil(out / block).
template <typename T>
__device__ void lora_dbias_reduce(const float* partial, T* dbias, int groups, int out) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= out) return;
  float acc = 0.f;
  for (int g = 0; g < groups; g++) acc += partial[(size_t)g * out + o];
  dbias[o] = lmf::from_f<T>(lmf::to_f(dbias[o]) + acc);
}

#define LORA_ENTRY(S, T)                                                                          \
  extern "C" __global__ void lora_bias_rows_##S(T* y, const T* bias, long long total, int out) {   \
    lora_bias_rows<T>(y, bias, total, out);                                                       \
  }                                                                                               \
  extern "C" __global__ void lora_dropout_mask_##S(const T* x, T* xm, long long total,            \
                                                   unsigned long long seed,                       \
                                                   unsigned long long offset, float p) {          \
    lora_dropout_mask<T>(x, xm, total, seed, offset, p);                                          \
  }                                                                                               \
  extern "C" __global__ void lora_dx_dropout_add_##S(T* dx, const T* prod, long long total,       \
                                                     unsigned long long seed,                     \
                                                     unsigned long long offset, float p,          \
                                                     float inv_keep) {                            \
    lora_dx_dropout_add<T>(dx, prod, total, seed, offset, p, inv_keep);                           \
  }                                                                                               \
  extern "C" __global__ void lora_dbias_partial_##S(const T* dy, float* partial, int n, int out) { \
    lora_dbias_partial<T>(dy, partial, n, out);                                                   \
  }                                                                                               \
  extern "C" __global__ void lora_dbias_reduce_##S(const float* partial, T* dbias, int groups,    \
                                                   int out) {                                     \
    lora_dbias_reduce<T>(partial, dbias, groups, out);                                            \
  }
LMF_FOR_FLOATS(LORA_ENTRY)
