// Attention sinks (GPT-OSS), the GPU twin of kernels/src/cpu/attention/sinks.rs: one logit
// sink_h per head joins every row's softmax denominator as a zero-valued key, applied to the
// finished rows of the flash forward (whose lse is fp32 [heads, tokens]):
//   fold:     lse' = logaddexp(lse, sink_h),  out' = out * exp(lse - lse')       (in place)
//   backward: dsink_h = -sum_t exp(sink_h - lse'[h, t]) * rowsum(dout * out')[t, h]
// out, dout: [tokens, heads, d]; sinks, dsink: [heads] in the storage type. Math in fp32.
#include "lmf_common.cuh"

namespace {

constexpr int THREADS = 256;

// One warp per (token, head) row: rows r = t * heads + h, 8 rows per block.
template <typename T>
__device__ void sinks_fold(T* out, float* lse, const T* sinks, int heads, long long tokens,
                           int d) {
  const long long row = (long long)blockIdx.x * (THREADS / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= tokens * heads) return;
  const long long t = row / heads;
  const int h = (int)(row % heads);
  const float sink = lmf::to_f(sinks[h]);
  const float l = lse[(long long)h * tokens + t];
  const float m = fmaxf(l, sink);
  const float neu = m + logf(expf(l - m) + expf(sink - m));
  const float f = expf(l - neu);
  T* o = out + row * d;
  for (int i = lane; i < d; i += 32) o[i] = lmf::from_f<T>(lmf::to_f(o[i]) * f);
  __syncwarp();
  if (lane == 0) lse[(long long)h * tokens + t] = neu;
}

// One block per head; warps take tokens in turn, lanes split the row's d elements.
template <typename T>
__device__ void sinks_bwd(const T* dout, const T* out, const float* lse, const T* sinks,
                          T* dsink, int heads, long long tokens, int d) {
  __shared__ float scratch[32];
  const int h = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = THREADS / 32;
  const float sink = lmf::to_f(sinks[h]);
  float acc = 0.f;  // lane 0 of each warp holds its warp's sum
  for (long long t = warp; t < tokens; t += nwarps) {
    const long long at = (t * heads + h) * d;
    float dd = 0.f;
    for (int i = lane; i < d; i += 32) dd += lmf::to_f(dout[at + i]) * lmf::to_f(out[at + i]);
    dd = lmf::warp_sum(dd);
    if (lane == 0) acc -= expf(sink - lse[(long long)h * tokens + t]) * dd;
  }
  const float total = lmf::block_sum(lane == 0 ? acc : 0.f, scratch);
  if (threadIdx.x == 0) dsink[h] = lmf::from_f<T>(total);
}

}  // namespace

#define SINKS_ENTRY(S, T)                                                                      \
  extern "C" __global__ void __launch_bounds__(THREADS)                                       \
      attn_sinks_fold_##S(T* out, float* lse, const T* sinks, int heads, long long tokens,     \
                          int d) {                                                             \
    sinks_fold<T>(out, lse, sinks, heads, tokens, d);                                          \
  }                                                                                            \
  extern "C" __global__ void __launch_bounds__(THREADS)                                       \
      attn_sinks_bwd_##S(const T* dout, const T* out, const float* lse, const T* sinks,        \
                         T* dsink, int heads, long long tokens, int d) {                       \
    sinks_bwd<T>(dout, out, lse, sinks, dsink, heads, tokens, d);                              \
  }
LMF_FOR_FLOATS(SINKS_ENTRY)
