// Flash attention forward, the GPU twin of kernels/src/cpu/attention/forward.rs
// (FlashAttention-2): per query tile, walk the visible key tiles with an online softmax
// (running max m, running sum l, rescaled accumulator), then out = acc / l and
// lse = m + ln l (fp32, saved for the backward). A row that sees no key gets out = 0 and
// lse = -inf. Varlen: sequence b owns query rows cu_q[b]..cu_q[b+1] and key rows
// cu_k[b]..cu_k[b+1] and never attends across sequences. GQA: query head h reads kv head
// h / (num_heads / num_kv_heads).
//
// Grid: (query tiles of the longest sequence, num_heads, batch); blocks past the end of their
// sequence exit at once.
//
// bf16/f16 (flash_attn_fwd_d{D}_{bf16,f16}): tensor cores (mma.sync m16n8k16, fp32
// accumulate); 4 warps, each owns 16 of the 64 query rows. Shared memory (dynamic):
// Q [64][D+8], K, V [2][BK][D+8] (+8 pads rows so ldmatrix is bank-conflict free). K and V
// are double-buffered: the next tile is fetched with cp.async while this one is used.
// f32 (flash_attn_fwd_f32): the same algorithm on CUDA cores, 16x16 tiles, any head_dim.
#include "lmf_attention.cuh"

using lmf::attn::Mask;

// ---- bf16 / f16: tensor cores ----

// q: [total_q, hq, D]; k, v: [total_k, hkv, D]; out: [total_q, hq, D]; lse: [hq, total_q].
template <typename T, int D, int BK>
__device__ void flash_fwd_tc(const T* q, const T* k, const T* v, T* out, float* lse,
                             const int* cu_q, const int* cu_k, int total_q, int hq, int hkv,
                             float scale, float softcap, int causal, int window) {
  constexpr int BQ = 64, LD = D + 8;
  extern __shared__ __align__(16) unsigned char lmf_smem[];
  T* sQ = reinterpret_cast<T*>(lmf_smem);  // [BQ][LD]
  T* sK0 = sQ + BQ * LD;                    // [2][BK][LD]
  T* sV0 = sK0 + 2 * BK * LD;               // [2][BK][LD]

  const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * BQ;
  const int q0 = cu_q[b], sq = cu_q[b + 1] - q0;
  const int k0 = cu_k[b], sk = cu_k[b + 1] - k0;
  if (i0 >= sq) return;
  const int rows = min(BQ, sq - i0);
  const int kvh = h / (hq / hkv);
  const Mask mask{causal, window, sk - sq};
  int lo, hi;
  mask.key_range(i0, i0 + rows, sk, lo, hi);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wr = warp * 16;  // this warp's first row in the tile

  // Q and the first K, V tile in one cp.async group.
  lmf::attn::load_tile_async<T, D, LD>(sQ, q, BQ, q0 + i0, rows, hq, h);
  if (lo < hi) {
    lmf::attn::load_tile_async<T, D, LD>(sK0, k, BK, k0 + lo, min(BK, sk - lo), hkv, kvh);
    lmf::attn::load_tile_async<T, D, LD>(sV0, v, BK, k0 + lo, min(BK, sk - lo), hkv, kvh);
  }
  lmf::attn::cp_async_commit();

  // acc: this warp's [16, D] output, as D/8 mma C fragments; rows g and g+8 per thread.
  float acc[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  float m[2] = {lmf::neg_inf(), lmf::neg_inf()};
  float l[2] = {0.f, 0.f};  // this thread's partial row sums (its columns only)

  for (int j0 = lo, it = 0; j0 < hi; j0 += BK, it++) {
    // This tile has landed (every thread waits for its own copies, the barrier publishes
    // them), and everyone is done with the previous tile, whose buffer is refilled next.
    lmf::attn::cp_async_wait();
    __syncthreads();
    const T* sK = sK0 + (it & 1) * BK * LD;
    const T* sV = sV0 + (it & 1) * BK * LD;
    if (j0 + BK < hi) {
      const int jn = j0 + BK, nb = ((it + 1) & 1) * BK * LD;
      lmf::attn::load_tile_async<T, D, LD>(sK0 + nb, k, BK, k0 + jn, min(BK, sk - jn), hkv, kvh);
      lmf::attn::load_tile_async<T, D, LD>(sV0 + nb, v, BK, k0 + jn, min(BK, sk - jn), hkv, kvh);
      lmf::attn::cp_async_commit();
    }

    // s: [16, BK] = Q_w · Kᵀ
    float s[BK / 8][4];
#pragma unroll
    for (int n = 0; n < BK / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      unsigned a[4];
      lmf::attn::load_a(a, sQ, LD, wr, kk * 16);
#pragma unroll
      for (int n = 0; n < BK / 8; n++) {
        unsigned bf[2];
        lmf::attn::load_b(bf, sK, LD, n * 8, kk * 16);
        lmf::attn::mma(s[n], a, bf, T());
      }
    }

    // Scale, softcap, mask; the row max over the quad (the 4 lanes sharing a row). The
    // visible set is a band in j - i, so when the tile lies inside the sequence and both
    // extreme corners are visible, every entry is (no per-entry test).
    const bool full = i0 + BQ <= sq && j0 + BK <= sk && mask.visible(i0, j0 + BK - 1) &&
                      mask.visible(i0 + BQ - 1, j0);
    float mx[2] = {lmf::neg_inf(), lmf::neg_inf()};
#pragma unroll
    for (int n = 0; n < BK / 8; n++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int i = i0 + wr + g + (e >> 1) * 8, j = j0 + n * 8 + 2 * t + (e & 1);
        const bool vis = full || (i < sq && j < sk && mask.visible(i, j));
        const float x = vis ? lmf::attn::score(s[n][e], scale, softcap) : lmf::neg_inf();
        s[n][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m[r], mx[r]);
      // Nothing visible in this row yet: p = 0 and acc, l stay 0 (alpha = 1 keeps them).
      alpha[r] = m_new == lmf::neg_inf() ? 1.f : expf(m[r] - m_new);
      m[r] = m_new;
    }
    // p = exp(s - m) (0 where masked), l = l·alpha + rowsum(p)
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < BK / 8; n++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = e >> 1;
        const float p = m[r] == lmf::neg_inf() ? 0.f : expf(s[n][e] - m[r]);
        s[n][e] = p;
        sum[r] += p;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) l[r] = l[r] * alpha[r] + sum[r];
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
      acc[n][0] *= alpha[0];
      acc[n][1] *= alpha[0];
      acc[n][2] *= alpha[1];
      acc[n][3] *= alpha[1];
    }

    // acc [16, D] += p [16, BK] · V [BK, D]; the s C fragments of key columns kk*16..+15
    // are exactly the A fragment of p (rounded to T).
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
      unsigned a[4];
      a[0] = lmf::attn::pack2(s[2 * kk][0], s[2 * kk][1], T());
      a[1] = lmf::attn::pack2(s[2 * kk][2], s[2 * kk][3], T());
      a[2] = lmf::attn::pack2(s[2 * kk + 1][0], s[2 * kk + 1][1], T());
      a[3] = lmf::attn::pack2(s[2 * kk + 1][2], s[2 * kk + 1][3], T());
#pragma unroll
      for (int n = 0; n < D / 8; n++) {
        unsigned bf[2];
        lmf::attn::load_b_trans(bf, sV, LD, kk * 16, n * 8);
        lmf::attn::mma(acc[n], a, bf, T());
      }
    }
  }

  // No key tile at all: Q was still fetched (and is not read), drain it before exiting.
  lmf::attn::cp_async_wait();

  // out = acc / l, lse = m + ln l; no visible key: out = 0, lse = -inf.
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float lt = l[r];
    lt += __shfl_xor_sync(0xffffffffu, lt, 1);
    lt += __shfl_xor_sync(0xffffffffu, lt, 2);
    const int i = i0 + wr + g + r * 8;
    const float inv = lt > 0.f ? 1.f / lt : 0.f;
    if (i < sq) {
      T* o = out + ((size_t)(q0 + i) * hq + h) * D + 2 * t;
#pragma unroll
      for (int n = 0; n < D / 8; n++) {
        lmf::attn::store2(o + n * 8, acc[n][2 * r] * inv, acc[n][2 * r + 1] * inv);
      }
      if (t == 0) lse[(size_t)h * total_q + q0 + i] = lt > 0.f ? m[r] + logf(lt) : lmf::neg_inf();
    }
  }
}

// ---- f32: CUDA cores, 16 query rows x 16 keys per step, 256 threads, any head_dim ----

// Thread (r, c) = (tid / 16, tid % 16) scores query row r against key c of the tile; it owns
// the output entries (r, d) for d = c, c + 16, ... (kept in shared memory).
// Shared memory: Q, K, V, O: [16][D+1] each, P: [16][17] floats.
__device__ void flash_fwd_f32(const float* q, const float* k, const float* v, float* out,
                              float* lse, const int* cu_q, const int* cu_k, int total_q, int hq,
                              int hkv, int D, float scale, float softcap, int causal,
                              int window) {
  constexpr int BQ = 16, BK = 16;
  const int LD = D + 1;
  extern __shared__ __align__(16) unsigned char lmf_smem[];
  float* sQ = reinterpret_cast<float*>(lmf_smem);
  float* sK = sQ + BQ * LD;
  float* sV = sK + BK * LD;
  float* sO = sV + BK * LD;
  float* sP = sO + BQ * LD;  // [BQ][BK + 1]

  const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * BQ;
  const int q0 = cu_q[b], sq = cu_q[b + 1] - q0;
  const int k0 = cu_k[b], sk = cu_k[b + 1] - k0;
  if (i0 >= sq) return;
  const int rows = min(BQ, sq - i0);
  const int kvh = h / (hq / hkv);
  const Mask mask{causal, window, sk - sq};
  int lo, hi;
  mask.key_range(i0, i0 + rows, sk, lo, hi);
  const int r = threadIdx.x / 16, c = threadIdx.x % 16;

  for (int idx = threadIdx.x; idx < BQ * D; idx += blockDim.x) {
    const int rr = idx / D, d = idx % D;
    sQ[rr * LD + d] = rr < rows ? q[((size_t)(q0 + i0 + rr) * hq + h) * D + d] : 0.f;
  }
  for (int d = c; d < D; d += BK) sO[r * LD + d] = 0.f;  // owned by this thread
  float m = lmf::neg_inf(), l = 0.f;

  for (int j0 = lo; j0 < hi; j0 += BK) {
    __syncthreads();
    const int cols = min(BK, sk - j0);
    for (int idx = threadIdx.x; idx < BK * D; idx += blockDim.x) {
      const int rr = idx / D, d = idx % D;
      const size_t at = ((size_t)(k0 + j0 + rr) * hkv + kvh) * D + d;
      sK[rr * LD + d] = rr < cols ? k[at] : 0.f;
      sV[rr * LD + d] = rr < cols ? v[at] : 0.f;
    }
    __syncthreads();
    float qk = 0.f;
    for (int d = 0; d < D; d++) qk += sQ[r * LD + d] * sK[c * LD + d];
    const int i = i0 + r, j = j0 + c;
    const bool vis = i < sq && j < sk && mask.visible(i, j);
    const float s = vis ? lmf::attn::score(qk, scale, softcap) : lmf::neg_inf();
    // Row max / sum over the 16 lanes of this row (a half warp).
    float mx = s;
    for (int o = 8; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const float m_new = fmaxf(m, mx);
    const float alpha = m_new == lmf::neg_inf() ? 1.f : expf(m - m_new);
    const float p = m_new == lmf::neg_inf() ? 0.f : expf(s - m_new);
    float ps = p;
    for (int o = 8; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
    l = l * alpha + ps;
    m = m_new;
    sP[r * (BK + 1) + c] = p;
    __syncthreads();
    // O[r, d] = O[r, d]·alpha + Σ_c P[r, c] V[c, d]
    for (int d = c; d < D; d += BK) {
      float a = 0.f;
      for (int cc = 0; cc < BK; cc++) a += sP[r * (BK + 1) + cc] * sV[cc * LD + d];
      sO[r * LD + d] = sO[r * LD + d] * alpha + a;
    }
  }
  const int i = i0 + r;
  if (i < sq) {
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int d = c; d < D; d += BK) out[((size_t)(q0 + i) * hq + h) * D + d] = sO[r * LD + d] * inv;
    if (c == 0) lse[(size_t)h * total_q + q0 + i] = l > 0.f ? m + logf(l) : lmf::neg_inf();
  }
}

// ---- entry points ----

#define FWD_ARGS(T)                                                                          \
  const T *q, const T *k, const T *v, T *out, float *lse, const int *cu_q, const int *cu_k,   \
      int total_q, int hq, int hkv, float scale, float softcap, int causal, int window
#define FWD_PASS q, k, v, out, lse, cu_q, cu_k, total_q, hq, hkv, scale, softcap, causal, window

// flash_attn_fwd_d{D}_{bf16,f16}: 128 threads; BK keys per step (32 for D = 256 so the
// five tiles stay within 99 KB of shared memory).
#define FWD_TC(S, T)                                                                     \
  extern "C" __global__ void __launch_bounds__(128) flash_attn_fwd_d64_##S(FWD_ARGS(T)) {  \
    flash_fwd_tc<T, 64, 64>(FWD_PASS);                                                   \
  }                                                                                      \
  extern "C" __global__ void __launch_bounds__(128) flash_attn_fwd_d80_##S(FWD_ARGS(T)) {  \
    flash_fwd_tc<T, 80, 64>(FWD_PASS);                                                   \
  }                                                                                      \
  extern "C" __global__ void __launch_bounds__(128) flash_attn_fwd_d96_##S(FWD_ARGS(T)) {  \
    flash_fwd_tc<T, 96, 64>(FWD_PASS);                                                   \
  }                                                                                      \
  extern "C" __global__ void __launch_bounds__(128) flash_attn_fwd_d128_##S(FWD_ARGS(T)) { \
    flash_fwd_tc<T, 128, 64>(FWD_PASS);                                                  \
  }                                                                                      \
  extern "C" __global__ void __launch_bounds__(128) flash_attn_fwd_d256_##S(FWD_ARGS(T)) { \
    flash_fwd_tc<T, 256, 32>(FWD_PASS);                                                  \
  }
LMF_FOR_HALFS(FWD_TC)

// flash_attn_fwd_f32: 256 threads, head_dim D at run time.
extern "C" __global__ void __launch_bounds__(256)
    flash_attn_fwd_f32(const float* q, const float* k, const float* v, float* out, float* lse,
                       const int* cu_q, const int* cu_k, int total_q, int hq, int hkv, int D,
                       float scale, float softcap, int causal, int window) {
  flash_fwd_f32(q, k, v, out, lse, cu_q, cu_k, total_q, hq, hkv, D, scale, softcap, causal,
                window);
}
