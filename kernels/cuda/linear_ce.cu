// Fused linear + cross-entropy (Liger-style), the row part of the GPU twin of
// kernels/src/cpu/linear_ce.rs. The launcher (kernels/src/cuda/linear_ce.rs) walks the tokens in
// chunks: logits_c = x_c·wᵀ (cuBLASLt) into one [chunk, vocab] buffer, then this kernel, then
// dx_c = dlogits·w and dw += dlogitsᵀ·x_c (cuBLASLt), so full [tokens, vocab] logits never exist.
//
// Per row z (one block per row), with the options of cpu::linear_ce::CeOptions:
//   z      <- cap·tanh(z / cap)                       (Gemma-2 softcap, if has_cap)
//   lse    =  log Σ_j exp(z_j)                        (online max / sum-exp, fp32)
//   loss   =  (1−ε)(lse − z_y) + z_loss·lse² + ε(lse − mean_j z_j)
//   dz_j   =  scale·(p_j(1 + 2·z_loss·lse) − ε/V − (1−ε)[j = y])·(1 − (z_j/cap)²)
// and, when `grads`, dz overwrites the row in place (zeros for a row whose label is
// ignore_index). scale = grad_scale, times row_scale[row] when per_row (the per-token upstream
// gradient of the log-prob op, kernels/src/cuda/linear_logp.rs). The per-row loss goes to loss[row] (0 for an ignored row); the launcher sums
// the rows on the host in index order, so the total is deterministic.
#include "lmf_common.cuh"

namespace {

// Merges the online softmax state (m2, s2) into (m, s): s is Σ exp(z − m) over the elements
// seen. An empty state is (−inf, 0); merging two empty states stays empty (no NaN from
// exp(−inf − −inf)).
__device__ __forceinline__ void ms_merge(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  if (mm == lmf::neg_inf()) return;
  s = (m == lmf::neg_inf() ? 0.f : s * expf(m - mm)) + (m2 == lmf::neg_inf() ? 0.f : s2 * expf(m2 - mm));
  m = mm;
}

// The block-wide merge of every thread's (m, s); every thread gets the result. sm_m, sm_s:
// 32 floats of shared memory each. Ends with a barrier so the scratch can be reused.
__device__ __forceinline__ void block_ms(float& m, float& s, float* sm_m, float* sm_s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    ms_merge(m, s, m2, s2);
  }
  if (lane == 0) {
    sm_m[warp] = m;
    sm_s[warp] = s;
  }
  __syncthreads();
  m = lane < nwarps ? sm_m[lane] : lmf::neg_inf();
  s = lane < nwarps ? sm_s[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    ms_merge(m, s, m2, s2);
  }
  __syncthreads();
}

// Smallest normal float: gradients below it are flushed to zero, as the CPU twin does.
__device__ __forceinline__ float flt_min() { return __int_as_float(0x00800000); }

}  // namespace

// logits: [rows, vocab] (this chunk), overwritten by dlogits when grads != 0;
// labels: [rows] (int64); loss: [rows] fp32; row_scale: [rows] fp32, read only when per_row.
// grid = rows, block = 256 (a multiple of 32).
template <typename T>
__device__ void linear_ce_rows(T* logits, const long long* labels, float* loss, int vocab,
                               long long ignore_index, float eps, float z_loss, float cap,
                               int has_cap, float grad_scale, const float* row_scale, int per_row,
                               int grads) {
  __shared__ float sm_m[32], sm_s[32];
  const int r = blockIdx.x;
  T* z = logits + (size_t)r * vocab;
  const long long y = labels[r];
  if (y == ignore_index) {
    if (grads) {
      for (int j = threadIdx.x; j < vocab; j += blockDim.x) z[j] = lmf::from_f<T>(0.f);
    }
    if (threadIdx.x == 0) loss[r] = 0.f;
    return;
  }
  // The launcher checked 0 <= y < vocab. z[y] is read before the barriers of the reductions
  // below, so no thread can have overwritten it yet.
  const float inv_cap = has_cap ? 1.f / cap : 0.f;
  float zy = lmf::to_f(z[y]);
  if (has_cap) zy = cap * tanhf(zy * inv_cap);

  // Pass 1: online max / sum-exp (and Σ z for label smoothing), one strided sweep.
  float m = lmf::neg_inf(), s = 0.f, zsum = 0.f;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    float v = lmf::to_f(z[j]);
    if (has_cap) v = cap * tanhf(v * inv_cap);
    if (v > m) {
      s = s * expf(m - v) + 1.f;  // m = −inf the first time: expf(−inf) = 0
      m = v;
    } else {
      s += expf(v - m);
    }
    zsum += v;
  }
  block_ms(m, s, sm_m, sm_s);
  const float lse = m + logf(s);
  float row_loss = (1.f - eps) * (lse - zy) + z_loss * lse * lse;
  if (eps != 0.f) {
    zsum = lmf::block_sum(zsum, sm_m);
    row_loss += eps * (lse - zsum / (float)vocab);
  }
  if (threadIdx.x == 0) loss[r] = row_loss;
  if (!grads) return;

  // Pass 2: dz in place.
  const float scale = per_row ? grad_scale * row_scale[r] : grad_scale;
  const float a = (1.f + 2.f * z_loss * lse) * scale;
  const float b = eps / (float)vocab * scale;
  const float gy = (1.f - eps) * scale;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    float v = lmf::to_f(z[j]);
    if (has_cap) v = cap * tanhf(v * inv_cap);
    float g = a * expf(v - lse) - b;
    if (j == y) g -= gy;
    if (has_cap) {
      const float t = v * inv_cap;
      g *= 1.f - t * t;
    }
    if (fabsf(g) < flt_min()) g = 0.f;
    z[j] = lmf::from_f<T>(g);
  }
}

#define LINEAR_CE_ENTRY(S, T)                                                                     \
  extern "C" __global__ void linear_ce_rows_##S(T* logits, const long long* labels, float* loss,  \
                                                int vocab, long long ignore_index, float eps,      \
                                                float z_loss, float cap, int has_cap,              \
                                                float grad_scale, const float* row_scale,          \
                                                int per_row, int grads) {                          \
    linear_ce_rows<T>(logits, labels, loss, vocab, ignore_index, eps, z_loss, cap, has_cap,       \
                      grad_scale, row_scale, per_row, grads);                                     \
  }
LMF_FOR_FLOATS(LINEAR_CE_ENTRY)
