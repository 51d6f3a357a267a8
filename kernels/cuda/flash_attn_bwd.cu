// Flash attention backward, the GPU twin of kernels/src/cpu/attention/backward.rs
// (FlashAttention-2): the probabilities are recomputed tile by tile from q, k and the saved
// lse, with
//   D_i = rowsum(dO_i ∘ O_i)                 (flash_attn_bwd_dot, fp32 [num_heads, total_q])
//   P = exp(S - lse), dP = dO Vᵀ, dS = P ∘ (dP - D)   (dS taken through the softcap)
//   dV = Σ Pᵀ dO, dK = scale · Σ dSᵀ Q, dQ = scale · Σ dS K.
// One block per (key tile, kv head, sequence) walks every query head of its GQA group and
// every query tile that may see its keys: it owns its rows of dK and dV (summed over the
// group in registers, written once, so dK and dV are overwritten like the CPU twin's).
// dQ is shared between key tiles, so each block adds its share into an fp32 accumulator
// dq_acc: [total_q, num_heads, head_dim] with atomicAdd (as FlashAttention-2 does; the sum
// order, hence the last bits of dQ, may vary run to run), and flash_attn_bwd_dq_convert
// writes dq = dq_acc in the storage type. The launcher zeroes dq_acc first.
//
// bf16/f16 (flash_attn_bwd_d{D}_{bf16,f16}): tensor cores (mma.sync m16n8k16, fp32
// accumulate), 8 warps. Warp w owns key rows 16·(w / WN).. and, of dK/dV, the head-dim
// columns (w % WN)·D/WN.. . Per query tile:
//   1. Sᵀ and dPᵀ for its 16 keys × BQ/WN queries → Pᵀ, dSᵀ (·scale) into shared memory (T);
//   2. dV += Pᵀ dO, dK += dSᵀ Q on its own columns (A operands from shared memory);
//   3. dQ [BQ, D] += dS K, split over the 8 warps, atomically added to dq_acc.
// Shared memory (dynamic): Q, dO [BQ][D+8], K, V [BK][D+8], Pᵀ, dSᵀ [BK][BQ+8] (T),
// lse, D [BQ] (fp32). The next query tile's Q and dO are fetched with cp.async during step 3.
// f32 (flash_attn_bwd_f32): the same algorithm on CUDA cores, 16x16 tiles, any head_dim.
#include "lmf_attention.cuh"

using lmf::attn::Mask;

// P and dS (·scale) of one score: s the raw q·k, dp = dO·v, lse and dd = D of the query row.
// Masked entries and rows without any visible key (lse = -inf) give P = dS = 0 exactly.
__device__ __forceinline__ void prob_grad(float qk, float dp, float lse, float dd, bool vis,
                                          float scale, float softcap, float& p, float& ds) {
  p = 0.f;
  ds = 0.f;
  if (!vis || lse == lmf::neg_inf()) return;
  const float s = lmf::attn::score(qk, scale, softcap);
  p = expf(s - lse);
  if (p == 0.f) return;
  float g = p * (dp - dd);
  // d(cap·tanh(x/cap))/dx = 1 - tanh² = 1 - (s / cap)²
  if (softcap > 0.f) g *= 1.f - (s / softcap) * (s / softcap);
  ds = g * scale;
}

// delta[h, row] = Σ_d dout[row, h, d] · out[row, h, d]; one warp per (row, head).
template <typename T>
__device__ void bwd_dot(const T* dout, const T* out, float* delta, int total_q, int hq, int D) {
  const int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
  if (w >= total_q * hq) return;
  const int row = w / hq, h = w % hq;
  const size_t base = (size_t)w * D;
  float acc = 0.f;
  for (int d = lane; d < D; d += 32) acc += lmf::to_f(dout[base + d]) * lmf::to_f(out[base + d]);
  acc = lmf::warp_sum(acc);
  if (lane == 0) delta[(size_t)h * total_q + row] = acc;
}

// dq[i] = dq_acc[i] in the storage type.
template <typename T>
__device__ void bwd_dq_convert(const float* dq_acc, T* dq, long long n) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dq[i] = lmf::from_f<T>(dq_acc[i]);
}

// ---- bf16 / f16: tensor cores ----

template <typename T, int D, int BQ, int BK, int WN>
__device__ void flash_bwd_tc(const T* dout, const T* q, const T* k, const T* v, const float* lse,
                             const float* delta, const int* cu_q, const int* cu_k, float* dq_acc,
                             T* dk, T* dv, int total_q, int hq, int hkv, float scale,
                             float softcap, int causal, int window) {
  constexpr int LD = D + 8, LP = BQ + 8;
  constexpr int NW = (BK / 16) * WN;  // warps
  constexpr int QW = BQ / WN;         // queries per warp in step 1
  constexpr int DW = D / WN;          // dK/dV columns per warp in step 2
  constexpr int RQ = BQ / 16;         // 16-row query groups in step 3
  constexpr int DC = D / (NW / RQ);   // dQ columns per warp in step 3
  static_assert(QW % 8 == 0 && DW % 8 == 0 && NW % RQ == 0 && DC % 8 == 0, "tile shape");
  extern __shared__ __align__(16) unsigned char lmf_smem[];
  T* sQ = reinterpret_cast<T*>(lmf_smem);  // [BQ][LD]
  T* sdO = sQ + BQ * LD;                    // [BQ][LD]
  T* sK = sdO + BQ * LD;                    // [BK][LD]
  T* sV = sK + BK * LD;                     // [BK][LD]
  T* sP = sV + BK * LD;                     // Pᵀ: [BK][LP]
  T* sdS = sP + BK * LP;                    // dSᵀ·scale: [BK][LP]
  float* sL = reinterpret_cast<float*>(sdS + BK * LP);  // lse: [BQ]
  float* sD = sL + BQ;                                   // delta: [BQ]

  const int b = blockIdx.z, kvh = blockIdx.y, j0 = blockIdx.x * BK;
  const int q0 = cu_q[b], sq = cu_q[b + 1] - q0;
  const int k0 = cu_k[b], sk = cu_k[b + 1] - k0;
  if (j0 >= sk) return;
  const int cols = min(BK, sk - j0);
  const int group = hq / hkv;
  const Mask mask{causal, window, sk - sq};
  int qlo, qhi;
  mask.query_range(j0, j0 + cols, sq, qlo, qhi);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int kr = (warp / WN) * 16;  // this warp's first key row (steps 1 and 2)
  const int qc0 = (warp % WN) * QW;  // its first query column (step 1)
  const int dc0 = (warp % WN) * DW;  // its first dK/dV column (step 2)
  const int rq = (warp % RQ) * 16;   // its first query row (step 3)
  const int qd0 = (warp / RQ) * DC;  // its first dQ column (step 3)

  // The query tiles this block walks: (head, i0) for the `group` heads × `nt` tiles.
  const int nt = (qhi - qlo + BQ - 1) / BQ, tiles = group * nt;
  // Issues the loads of tile `it` (Q, dO by cp.async; lse, delta by plain loads).
  auto fetch = [&](int it) {
    const int h = kvh * group + it / nt, i0 = qlo + (it % nt) * BQ;
    const int rows = min(BQ, qhi - i0);
    lmf::attn::load_tile_async<T, D, LD>(sQ, q, BQ, q0 + i0, rows, hq, h);
    lmf::attn::load_tile_async<T, D, LD>(sdO, dout, BQ, q0 + i0, rows, hq, h);
    for (int r = threadIdx.x; r < BQ; r += blockDim.x) {
      const size_t at = (size_t)h * total_q + q0 + i0 + r;
      sL[r] = r < rows ? lse[at] : lmf::neg_inf();
      sD[r] = r < rows ? delta[at] : 0.f;
    }
  };

  lmf::attn::load_tile_async<T, D, LD>(sK, k, BK, k0 + j0, cols, hkv, kvh);
  lmf::attn::load_tile_async<T, D, LD>(sV, v, BK, k0 + j0, cols, hkv, kvh);
  if (tiles > 0) fetch(0);
  lmf::attn::cp_async_commit();

  float dk_acc[DW / 8][4], dv_acc[DW / 8][4];
#pragma unroll
  for (int n = 0; n < DW / 8; n++) {
#pragma unroll
    for (int e = 0; e < 4; e++) dk_acc[n][e] = dv_acc[n][e] = 0.f;
  }

  for (int it = 0; it < tiles; it++) {
    const int h = kvh * group + it / nt, i0 = qlo + (it % nt) * BQ;
    // Tile `it` has landed (each thread waits for its copies, the barrier publishes them),
    // and every warp is done with the previous tile's step 3 (sdS is free).
    lmf::attn::cp_async_wait();
    __syncthreads();
    {
      // 1. sT = K_w Qᵀ, dpT = V_w dOᵀ: [16 keys, QW queries]
      float sT[QW / 8][4], dpT[QW / 8][4];
#pragma unroll
      for (int n = 0; n < QW / 8; n++) {
#pragma unroll
        for (int e = 0; e < 4; e++) sT[n][e] = dpT[n][e] = 0.f;
      }
#pragma unroll
      for (int kk = 0; kk < D / 16; kk++) {
        unsigned ak[4], av[4];
        lmf::attn::load_a(ak, sK, LD, kr, kk * 16);
        lmf::attn::load_a(av, sV, LD, kr, kk * 16);
#pragma unroll
        for (int n = 0; n < QW / 8; n++) {
          unsigned bq[2], bo[2];
          lmf::attn::load_b(bq, sQ, LD, qc0 + n * 8, kk * 16);
          lmf::attn::load_b(bo, sdO, LD, qc0 + n * 8, kk * 16);
          lmf::attn::mma(sT[n], ak, bq, T());
          lmf::attn::mma(dpT[n], av, bo, T());
        }
      }
#pragma unroll
      for (int n = 0; n < QW / 8; n++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
          const int key = kr + g + half * 8, qc = qc0 + n * 8 + 2 * t;
          float p[2], ds[2];
#pragma unroll
          for (int e = 0; e < 2; e++) {
            const int i = i0 + qc + e, j = j0 + key;
            const bool vis = i < sq && j < sk && mask.visible(i, j);
            prob_grad(sT[n][half * 2 + e], dpT[n][half * 2 + e], sL[qc + e], sD[qc + e], vis,
                      scale, softcap, p[e], ds[e]);
          }
          lmf::attn::store2(sP + key * LP + qc, p[0], p[1]);
          lmf::attn::store2(sdS + key * LP + qc, ds[0], ds[1]);
        }
      }
      __syncthreads();

      // 2. dV_w [16, DW] += Pᵀ [16, BQ] · dO [BQ, DW]; dK_w += dSᵀ · Q
#pragma unroll
      for (int kk = 0; kk < BQ / 16; kk++) {
        unsigned ap[4], ads[4];
        lmf::attn::load_a(ap, sP, LP, kr, kk * 16);
        lmf::attn::load_a(ads, sdS, LP, kr, kk * 16);
#pragma unroll
        for (int n = 0; n < DW / 8; n++) {
          unsigned bo[2], bq[2];
          lmf::attn::load_b_trans(bo, sdO, LD, kk * 16, dc0 + n * 8);
          lmf::attn::load_b_trans(bq, sQ, LD, kk * 16, dc0 + n * 8);
          lmf::attn::mma(dv_acc[n], ap, bo, T());
          lmf::attn::mma(dk_acc[n], ads, bq, T());
        }
      }

      // Steps 1 and 2 are done with Q, dO, lse and delta: fetch the next tile while step 3
      // (which reads only dSᵀ and K) runs.
      __syncthreads();
      if (it + 1 < tiles) fetch(it + 1);
      lmf::attn::cp_async_commit();

      // 3. dQ [16 rows at rq, DC cols at qd0] += dS [16, BK] · K [BK, DC] (dS = (dSᵀ)ᵀ)
      unsigned adq[BK / 16][4];
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++) lmf::attn::load_a_trans(adq[kk], sdS, LP, rq, kk * 16);
#pragma unroll
      for (int n = 0; n < DC / 8; n++) {
        float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
          unsigned bk[2];
          lmf::attn::load_b_trans(bk, sK, LD, kk * 16, qd0 + n * 8);
          lmf::attn::mma(c, adq[kk], bk, T());
        }
#pragma unroll
        for (int half = 0; half < 2; half++) {
          const int i = i0 + rq + g + half * 8;
          if (i < sq) {
            float* dst = dq_acc + ((size_t)(q0 + i) * hq + h) * D + qd0 + n * 8 + 2 * t;
            atomicAdd(dst, c[half * 2]);  // atomics: dQ is shared with other key tiles
            atomicAdd(dst + 1, c[half * 2 + 1]);
          }
        }
      }
    }
  }

  lmf::attn::cp_async_wait();  // no query tile at all: K, V were fetched and never read

  // dK, dV rows of this block (zero for keys no query sees).
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int j = j0 + kr + g + half * 8;
    if (j < sk) {
      const size_t at = ((size_t)(k0 + j) * hkv + kvh) * D + dc0 + 2 * t;
#pragma unroll
      for (int n = 0; n < DW / 8; n++) {
        lmf::attn::store2(dk + at + n * 8, dk_acc[n][half * 2], dk_acc[n][half * 2 + 1]);
        lmf::attn::store2(dv + at + n * 8, dv_acc[n][half * 2], dv_acc[n][half * 2 + 1]);
      }
    }
  }
}

// ---- f32: CUDA cores, 16 keys x 16 queries per step, 256 threads, any head_dim <= 256 ----

// Thread (r, c) = (tid / 16, tid % 16): in the score step it handles query r against key c;
// in the dK/dV step it owns key row r, columns c, c + 16, ... (registers, D <= 256); in the
// dQ step query row r, columns c, c + 16, ... .
// Shared memory: K, V, Q, dO: [16][D+1]; P, dS: [16][17]; lse, D: [16] floats.
__device__ void flash_bwd_f32(const float* dout, const float* q, const float* k, const float* v,
                              const float* lse, const float* delta, const int* cu_q,
                              const int* cu_k, float* dq_acc, float* dk, float* dv, int total_q,
                              int hq, int hkv, int D, float scale, float softcap, int causal,
                              int window) {
  constexpr int BQ = 16, BK = 16, MAXC = 256 / 16;
  const int LD = D + 1;
  extern __shared__ __align__(16) unsigned char lmf_smem[];
  float* sK = reinterpret_cast<float*>(lmf_smem);
  float* sV = sK + BK * LD;
  float* sQ = sV + BK * LD;
  float* sdO = sQ + BQ * LD;
  float* sP = sdO + BQ * LD;      // [BQ][BK + 1]
  float* sdS = sP + BQ * (BK + 1);  // [BQ][BK + 1], times scale
  float* sL = sdS + BQ * (BK + 1);
  float* sD = sL + BQ;

  const int b = blockIdx.z, kvh = blockIdx.y, j0 = blockIdx.x * BK;
  const int q0 = cu_q[b], sq = cu_q[b + 1] - q0;
  const int k0 = cu_k[b], sk = cu_k[b + 1] - k0;
  if (j0 >= sk) return;
  const int cols = min(BK, sk - j0);
  const int group = hq / hkv;
  const Mask mask{causal, window, sk - sq};
  int qlo, qhi;
  mask.query_range(j0, j0 + cols, sq, qlo, qhi);
  const int r = threadIdx.x / 16, c = threadIdx.x % 16;

  for (int idx = threadIdx.x; idx < BK * D; idx += blockDim.x) {
    const int rr = idx / D, d = idx % D;
    const size_t at = ((size_t)(k0 + j0 + rr) * hkv + kvh) * D + d;
    sK[rr * LD + d] = rr < cols ? k[at] : 0.f;
    sV[rr * LD + d] = rr < cols ? v[at] : 0.f;
  }
  float dk_acc[MAXC], dv_acc[MAXC];
#pragma unroll
  for (int m = 0; m < MAXC; m++) dk_acc[m] = dv_acc[m] = 0.f;

  for (int h = kvh * group; h < (kvh + 1) * group; h++) {
    for (int i0 = qlo; i0 < qhi; i0 += BQ) {
      __syncthreads();
      const int rows = min(BQ, qhi - i0);
      for (int idx = threadIdx.x; idx < BQ * D; idx += blockDim.x) {
        const int rr = idx / D, d = idx % D;
        const size_t at = ((size_t)(q0 + i0 + rr) * hq + h) * D + d;
        sQ[rr * LD + d] = rr < rows ? q[at] : 0.f;
        sdO[rr * LD + d] = rr < rows ? dout[at] : 0.f;
      }
      if (threadIdx.x < BQ) {
        const size_t at = (size_t)h * total_q + q0 + i0 + threadIdx.x;
        sL[threadIdx.x] = (int)threadIdx.x < rows ? lse[at] : lmf::neg_inf();
        sD[threadIdx.x] = (int)threadIdx.x < rows ? delta[at] : 0.f;
      }
      __syncthreads();
      {
        float qk = 0.f, dp = 0.f;
        for (int d = 0; d < D; d++) {
          qk += sQ[r * LD + d] * sK[c * LD + d];
          dp += sdO[r * LD + d] * sV[c * LD + d];
        }
        const int i = i0 + r, j = j0 + c;
        const bool vis = i < sq && j < sk && mask.visible(i, j);
        float p, ds;
        prob_grad(qk, dp, sL[r], sD[r], vis, scale, softcap, p, ds);
        sP[r * (BK + 1) + c] = p;
        sdS[r * (BK + 1) + c] = ds;
      }
      __syncthreads();
      // dV[key r, d] += Σ_i P[i, r] dO[i, d]; dK[key r, d] += Σ_i dS[i, r] Q[i, d]
#pragma unroll
      for (int m = 0; m < MAXC; m++) {
        const int d = c + 16 * m;
        if (d < D) {
          float a = 0.f, bb = 0.f;
          for (int i = 0; i < BQ; i++) {
            a += sP[i * (BK + 1) + r] * sdO[i * LD + d];
            bb += sdS[i * (BK + 1) + r] * sQ[i * LD + d];
          }
          dv_acc[m] += a;
          dk_acc[m] += bb;
        }
      }
      // dQ[query r, d] += Σ_j dS[r, j] K[j, d] (atomics: shared with other key tiles)
      if (i0 + r < sq) {
        float* dst = dq_acc + ((size_t)(q0 + i0 + r) * hq + h) * D;
        for (int d = c; d < D; d += 16) {
          float a = 0.f;
          for (int j = 0; j < BK; j++) a += sdS[r * (BK + 1) + j] * sK[j * LD + d];
          atomicAdd(dst + d, a);
        }
      }
    }
  }
  const int j = j0 + r;
  if (j < sk) {
    const size_t at = ((size_t)(k0 + j) * hkv + kvh) * D;
#pragma unroll
    for (int m = 0; m < MAXC; m++) {
      const int d = c + 16 * m;
      if (d < D) {
        dk[at + d] = dk_acc[m];
        dv[at + d] = dv_acc[m];
      }
    }
  }
}

// ---- entry points ----

#define BWD_ARGS(T)                                                                         \
  const T *dout, const T *q, const T *k, const T *v, const float *lse, const float *delta,   \
      const int *cu_q, const int *cu_k, float *dq_acc, T *dk, T *dv, int total_q, int hq,    \
      int hkv, float scale, float softcap, int causal, int window
#define BWD_PASS                                                                            \
  dout, q, k, v, lse, delta, cu_q, cu_k, dq_acc, dk, dv, total_q, hq, hkv, scale, softcap,   \
      causal, window

// flash_attn_bwd_d{D}_{bf16,f16}: 256 threads (8 warps); tiles BQ x BK = 64 x 64
// (32 x 32 for D = 256, to fit the shared memory and the dK/dV registers).
#define BWD_TC(S, T)                                                                     \
  extern "C" __global__ void __launch_bounds__(256, 2) flash_attn_bwd_d64_##S(BWD_ARGS(T)) {  \
    flash_bwd_tc<T, 64, 64, 64, 2>(BWD_PASS);                                            \
  }                                                                                      \
  extern "C" __global__ void __launch_bounds__(256, 2) flash_attn_bwd_d80_##S(BWD_ARGS(T)) {  \
    flash_bwd_tc<T, 80, 64, 64, 2>(BWD_PASS);                                            \
  }                                                                                      \
  extern "C" __global__ void __launch_bounds__(256, 2) flash_attn_bwd_d96_##S(BWD_ARGS(T)) {  \
    flash_bwd_tc<T, 96, 64, 64, 2>(BWD_PASS);                                            \
  }                                                                                      \
  extern "C" __global__ void __launch_bounds__(256, 2) flash_attn_bwd_d128_##S(BWD_ARGS(T)) { \
    flash_bwd_tc<T, 128, 64, 64, 2>(BWD_PASS);                                           \
  }                                                                                      \
  extern "C" __global__ void __launch_bounds__(256, 2) flash_attn_bwd_d256_##S(BWD_ARGS(T)) { \
    flash_bwd_tc<T, 256, 32, 32, 4>(BWD_PASS);                                           \
  }
LMF_FOR_HALFS(BWD_TC)

// flash_attn_bwd_f32: 256 threads, head_dim D <= 256 at run time.
extern "C" __global__ void __launch_bounds__(256)
    flash_attn_bwd_f32(const float* dout, const float* q, const float* k, const float* v,
                       const float* lse, const float* delta, const int* cu_q, const int* cu_k,
                       float* dq_acc, float* dk, float* dv, int total_q, int hq, int hkv, int D,
                       float scale, float softcap, int causal, int window) {
  flash_bwd_f32(dout, q, k, v, lse, delta, cu_q, cu_k, dq_acc, dk, dv, total_q, hq, hkv, D,
                scale, softcap, causal, window);
}

// flash_attn_bwd_dot_{f32,bf16,f16}: delta = rowsum(dO ∘ O); blocks of 256 threads, one warp
// per (row, head).
#define BWD_AUX(S, T)                                                                         \
  extern "C" __global__ void flash_attn_bwd_dot_##S(const T* dout, const T* out, float* delta, \
                                                    int total_q, int hq, int D) {             \
    bwd_dot<T>(dout, out, delta, total_q, hq, D);                                             \
  }                                                                                           \
  extern "C" __global__ void flash_attn_bwd_dq_convert_##S(const float* dq_acc, T* dq,         \
                                                           long long n) {                     \
    bwd_dq_convert<T>(dq_acc, dq, n);                                                         \
  }
LMF_FOR_FLOATS(BWD_AUX)
