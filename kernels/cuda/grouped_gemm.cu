// Grouped GEMM of mixture-of-experts layers, the GPU twin of kernels/src/cpu/grouped_gemm.rs.
// Rows of x are sorted by expert; rows off[e] .. off[e+1] belong to expert e, whose weight is
// W[e]: [N, K] (a stack of nn.Linear weights, W: [E, N, K]).
//
//   fwd: y[M, N]     = x[M, K] . W[e]^T   per group   (A = x,      B(p, j) = W[e][j][p])
//   dx:  dx[M, K]    = dy[M, N] . W[e]    per group   (A = dy,     B(p, j) = W[e][p][j])
//   dw:  dW[E, N, K] = dy_e^T . x_e       per expert  (A(i, p) = dy[p][i], B(p, j) = x[p][j],
//                                                      p over the expert's rows; 0 if none)
//
// One kernel, C(i, j) = sum_p A(i, p) . B(p, j), fp32 accumulation, run over a list of output
// tiles built on the host: tile t covers output rows [m0, m1) (at most BM) and reduces over
// p in [k0, k1), reading B from b + b_off and writing C at c + c_off:
//   tiles: [T][6] int64  (m0, m1, k0, k1, b_off, c_off)
//   grid:  (T, ceil(ncols / BN)), block: 128 threads (4 warps).
// A(i, p) = a[i*lda + p] (A_KM = 0) or a[p*lda + i] (A_KM = 1);
// B(p, j) = b[b_off + j*ldb + p] (B_KN = 0) or b[b_off + p*ldb + j] (B_KN = 1);
// C(i, j) = c[c_off + i*ldc + j], fully overwritten for i in [m0, m1), j < ncols.
//
// 16-bit storage (bf16/f16): tensor cores (ldmatrix + mma.sync.m16n8k16), the 64x64 tile split
// into four 32x32 warp tiles. f32 storage: CUDA cores, each thread a 4x8 block of the tile.
// Tiles are staged through shared memory in the layout the global memory already has, so
// every global read runs along a contiguous dimension.
#include "lmf_attention.cuh"

namespace {

constexpr int BM = 64, BN = 64, BK = 32, THREADS = 128;

// Copies a [R][C] block of a row-major global matrix g (row stride ld) into shared s (row
// stride lds): element (r, c) = g[r*ld + c] when r < rv and c < cv, else 0. 16-byte vector
// reads where the chunk is whole and aligned, element reads elsewhere.
template <typename T, int R, int C>
__device__ __forceinline__ void stage(T* s, int lds, const T* g, long long ld, int rv, int cv) {
  constexpr int PER = 16 / (int)sizeof(T);
  constexpr int CH = C / PER;
  for (int idx = threadIdx.x; idx < R * CH; idx += blockDim.x) {
    const int r = idx / CH, c = (idx % CH) * PER;
    T* dst = s + r * lds + c;
    if (r >= rv || c >= cv) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
      continue;
    }
    const T* src = g + (long long)r * ld + c;
    if (c + PER <= cv && (reinterpret_cast<size_t>(src) & 15) == 0) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
    } else {
      for (int u = 0; u < PER; ++u) dst[u] = (c + u < cv) ? src[u] : lmf::from_f<T>(0.f);
    }
  }
}

// The tile of descriptor `tile`: its A block (rows i in [m0, m1), p in [p0, p0 + BK)) and B
// block (p in [p0, p0 + BK), j in [n0, n0 + BN)) into shared memory.
//   A_KM = 0: sa[i][p] (lda_s = BK + 8); A_KM = 1: sa[p][i] (lda_s = BM + 8)
//   B_KN = 0: sb[j][p] (ldb_s = BK + 8); B_KN = 1: sb[p][j] (ldb_s = BN + 8)
template <typename T, int A_KM, int B_KN>
__device__ __forceinline__ void stage_tiles(T* sa, T* sb, const T* a, long long lda, const T* b,
                                            long long ldb, int m0, int mv, int p0, int pv,
                                            int n0, int nv) {
  if (A_KM) {
    stage<T, BK, BM>(sa, BM + 8, a + (long long)p0 * lda + m0, lda, pv, mv);
  } else {
    stage<T, BM, BK>(sa, BK + 8, a + (long long)m0 * lda + p0, lda, mv, pv);
  }
  if (B_KN) {
    stage<T, BK, BN>(sb, BN + 8, b + (long long)p0 * ldb + n0, ldb, pv, nv);
  } else {
    stage<T, BN, BK>(sb, BK + 8, b + (long long)n0 * ldb + p0, ldb, nv, pv);
  }
}

// Shared elements of one staged operand: the larger of its two layouts.
constexpr int SA_ELEMS = (BM * (BK + 8) > BK * (BM + 8)) ? BM * (BK + 8) : BK * (BM + 8);
constexpr int SB_ELEMS = (BN * (BK + 8) > BK * (BN + 8)) ? BN * (BK + 8) : BK * (BN + 8);

// ---- 16-bit storage: tensor cores ----
template <typename T, int A_KM, int B_KN>
__device__ void grouped_mma(const T* a, long long lda, const T* b, long long ldb, T* c,
                            long long ldc, const long long* tiles, int ncols) {
  __shared__ __align__(16) T sa[SA_ELEMS];
  __shared__ __align__(16) T sb[SB_ELEMS];
  const long long* d = tiles + 6 * (long long)blockIdx.x;
  const int m0 = (int)d[0], m1 = (int)d[1];
  const long long k0 = d[2], k1 = d[3];
  const T* bb = b + d[4];
  T* cc = c + d[5];
  const int n0 = blockIdx.y * BN;
  const int mv = m1 - m0, nv = min(BN, ncols - n0);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;  // the warp's 32x32 of the tile
  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

  // a and bb walk along p, starting at k0; staging reads at p offset 0 of them
  if (A_KM) a += k0 * lda; else a += k0;
  if (B_KN) bb += k0 * ldb; else bb += k0;
  for (long long p0 = k0; p0 < k1; p0 += BK) {
    const int pv = (int)min((long long)BK, k1 - p0);
    stage_tiles<T, A_KM, B_KN>(sa, sb, a, lda, bb, ldb, m0, mv, 0, pv, n0, nv);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      unsigned af[2][4], bf[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        if (A_KM) {
          lmf::attn::load_a_trans(af[i], sa, BM + 8, wm + i * 16, kk);
        } else {
          lmf::attn::load_a(af[i], sa, BK + 8, wm + i * 16, kk);
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (B_KN) {
          lmf::attn::load_b_trans(bf[j], sb, BN + 8, kk, wn + j * 8);
        } else {
          lmf::attn::load_b(bf[j], sb, BK + 8, wn + j * 8, kk);
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) lmf::attn::mma(acc[i][j], af[i], bf[j], T());
    }
    __syncthreads();
    // advance the operands along p
    if (A_KM) a += (long long)BK * lda; else a += BK;
    if (B_KN) bb += (long long)BK * ldb; else bb += BK;
  }
  // c0,c1: row g, cols 2t, 2t+1; c2,c3: row g + 8
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = wm + i * 16 + g + (r >> 1) * 8;
        const int col = wn + j * 8 + 2 * t + (r & 1);
        if (row < mv && col < nv) {
          cc[(long long)(m0 + row) * ldc + n0 + col] = lmf::from_f<T>(acc[i][j][r]);
        }
      }
}

// ---- f32 storage: CUDA cores ----
template <int A_KM, int B_KN>
__device__ void grouped_simt(const float* a, long long lda, const float* b, long long ldb,
                             float* c, long long ldc, const long long* tiles, int ncols) {
  __shared__ __align__(16) float sa[SA_ELEMS];
  __shared__ __align__(16) float sb[SB_ELEMS];
  const long long* d = tiles + 6 * (long long)blockIdx.x;
  const int m0 = (int)d[0], m1 = (int)d[1];
  const long long k0 = d[2], k1 = d[3];
  const float* bb = b + d[4];
  float* cc = c + d[5];
  const int n0 = blockIdx.y * BN;
  const int mv = m1 - m0, nv = min(BN, ncols - n0);
  const int ty = threadIdx.x >> 3, tx = threadIdx.x & 7;  // rows 4ty.., cols 8tx..
  float acc[4][8];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
  if (A_KM) a += k0 * lda; else a += k0;
  if (B_KN) bb += k0 * ldb; else bb += k0;
  for (long long p0 = k0; p0 < k1; p0 += BK) {
    const int pv = (int)min((long long)BK, k1 - p0);
    stage_tiles<float, A_KM, B_KN>(sa, sb, a, lda, bb, ldb, m0, mv, 0, pv, n0, nv);
    __syncthreads();
    for (int p = 0; p < BK; ++p) {
      float av[4], bv[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = 4 * ty + i;
        av[i] = A_KM ? sa[p * (BM + 8) + r] : sa[r * (BK + 8) + p];
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int q = 8 * tx + j;
        bv[j] = B_KN ? sb[p * (BN + 8) + q] : sb[q * (BK + 8) + p];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
    if (A_KM) a += (long long)BK * lda; else a += BK;
    if (B_KN) bb += (long long)BK * ldb; else bb += BK;
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int row = 4 * ty + i, col = 8 * tx + j;
      if (row < mv && col < nv) cc[(long long)(m0 + row) * ldc + n0 + col] = acc[i][j];
    }
}

}  // namespace

// Entry points grouped_gemm_{fwd,dx,dw}_{f32,bf16,f16}, all with the same arguments.
#define GG_ARGS(T)                                                                            \
  const T *a, long long lda, const T *b, long long ldb, T *c, long long ldc,                 \
      const long long *tiles, int ncols
#define GG_CALL a, lda, b, ldb, c, ldc, tiles, ncols
#define GG_HALF(S, T)                                                                         \
  extern "C" __global__ void __launch_bounds__(THREADS, 1) grouped_gemm_fwd_##S(GG_ARGS(T)) {   \
    grouped_mma<T, 0, 0>(GG_CALL);                                                            \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(THREADS, 1) grouped_gemm_dx_##S(GG_ARGS(T)) {    \
    grouped_mma<T, 0, 1>(GG_CALL);                                                            \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(THREADS, 1) grouped_gemm_dw_##S(GG_ARGS(T)) {    \
    grouped_mma<T, 1, 1>(GG_CALL);                                                            \
  }
LMF_FOR_HALFS(GG_HALF)

extern "C" __global__ void __launch_bounds__(THREADS) grouped_gemm_fwd_f32(GG_ARGS(float)) {
  grouped_simt<0, 0>(GG_CALL);
}
extern "C" __global__ void __launch_bounds__(THREADS) grouped_gemm_dx_f32(GG_ARGS(float)) {
  grouped_simt<0, 1>(GG_CALL);
}
extern "C" __global__ void __launch_bounds__(THREADS) grouped_gemm_dw_f32(GG_ARGS(float)) {
  grouped_simt<1, 1>(GG_CALL);
}
