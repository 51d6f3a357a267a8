// lmf_attention.cuh: what the flash-attention forward and backward kernels share: the masking
// rule of kernels/src/cpu/attention/mod.rs (AttnParams::visible, key_range, query_range), the
// tile loader, and the tensor-core building blocks (ldmatrix + mma.sync.m16n8k16, fp32
// accumulate) for bf16/f16 on sm_80+.
//
// Layouts (row-major, packed over the batch), as the CPU twin:
//   q, out, dout, dq: [total_q, num_heads, head_dim]
//   k, v, dk, dv:     [total_k, num_kv_heads, head_dim]
//   lse, delta:       [num_heads, total_q] fp32
//   cu_q, cu_k:       [batch + 1] int32 prefix offsets of the packed sequences
// Masking for query i and key j counted within their sequence, off = sk - sq:
//   causal (bottom-right): j <= i + off;  window W (> 0): (i + off) - j < W.
#pragma once
#include "lmf_common.cuh"

namespace lmf {
namespace attn {

// The masking parameters of one call (window 0 = no window, softcap 0 = no softcap).
struct Mask {
  int causal, window, off;
  __device__ __forceinline__ bool visible(int i, int j) const {
    const int diag = i + off;
    return (!causal || j <= diag) && (window <= 0 || diag - j < window);
  }
  // Keys [lo, hi) any query of [i0, i1) may see (a superset: tiles still mask).
  __device__ __forceinline__ void key_range(int i0, int i1, int sk, int& lo, int& hi) const {
    hi = causal ? min(max(i1 + off, 0), sk) : sk;
    lo = window > 0 ? min(max(i0 + off - window + 1, 0), sk) : 0;
    hi = max(hi, lo);
  }
  // Queries [lo, hi) of sq that may see any key of [j0, j1) (a superset).
  __device__ __forceinline__ void query_range(int j0, int j1, int sq, int& lo, int& hi) const {
    lo = causal ? min(max(j0 - off, 0), sq) : 0;
    hi = window > 0 ? min(max(j1 - 1 - off + window, 0), sq) : sq;
    hi = max(hi, lo);
  }
};

// scale · q·k, then the softcap cap·tanh(s/cap) when cap > 0 (Gemma 2).
__device__ __forceinline__ float score(float qk, float scale, float cap) {
  const float s = qk * scale;
  return cap > 0.f ? cap * tanhf(s / cap) : s;
}

// Copies rows [0, tile) of one head of a [_, heads, D] tensor into shared s: [tile][LD],
// starting at packed row `row0`; rows >= valid are zero. 16-byte vector copies (D % 8 == 0 for
// 16-bit types). All threads of the block take part.
template <typename T, int D, int LD>
__device__ __forceinline__ void load_tile(T* s, const T* g, int tile, int row0, int valid,
                                          int heads, int h) {
  constexpr int PER = 16 / (int)sizeof(T);  // elements per 16-byte chunk
  constexpr int CH = D / PER;                // chunks per row
  for (int idx = threadIdx.x; idx < tile * CH; idx += blockDim.x) {
    const int r = idx / CH, c = (idx % CH) * PER;
    uint4 val = make_uint4(0u, 0u, 0u, 0u);
    if (r < valid) {
      val = *reinterpret_cast<const uint4*>(g + ((size_t)(row0 + r) * heads + h) * D + c);
    }
    *reinterpret_cast<uint4*>(s + r * LD + c) = val;
  }
}


__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return (unsigned)__cvta_generic_to_shared(p);
}

// load_tile with cp.async (sm_80+): the copies run in the background until cp_async_wait();
// rows >= valid are zeroed with plain stores. Call cp_async_commit() after issuing a tile,
// then cp_async_wait() and __syncthreads() before reading it.
template <typename T, int D, int LD>
__device__ __forceinline__ void load_tile_async(T* s, const T* g, int tile, int row0, int valid,
                                                int heads, int h) {
  constexpr int PER = 16 / (int)sizeof(T);
  constexpr int CH = D / PER;
  for (int idx = threadIdx.x; idx < tile * CH; idx += blockDim.x) {
    const int r = idx / CH, c = (idx % CH) * PER;
    T* dst = s + r * LD + c;
    if (r < valid) {
      const T* src = g + ((size_t)(row0 + r) * heads + h) * D + c;
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src)
                   : "memory");
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
  }
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits for all of this thread's cp.async copies.
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// ---- tensor-core building blocks (16-bit storage types only) ----

// Two floats as one register of two 16-bit values (the lower index in the low half).
__device__ __forceinline__ unsigned pack2(float lo, float hi, __nv_bfloat16) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<unsigned*>(&v);
}
__device__ __forceinline__ unsigned pack2(float lo, float hi, __half) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<unsigned*>(&v);
}

// c[16x8] += a[16x16] · b[16x8], fp32 accumulate. Fragments (g = lane / 4, t = lane % 4):
//   a0 (row g, cols 2t..2t+1), a1 (row g+8, same), a2 (row g, cols 2t+8..), a3 (row g+8, ..)
//   b0 (rows 2t..2t+1, col g), b1 (rows 2t+8.., col g)
//   c0,c1 (row g, cols 2t..2t+1), c2,c3 (row g+8, cols 2t..2t+1)
__device__ __forceinline__ void mma(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                    __nv_bfloat16) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                    __half) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// A fragment of the 16x16 block at (row0, col0) of a row-major shared matrix s: [_][ld]
// (A[r][c] = s[row0 + r][col0 + c]). ldmatrix.x4: lanes 8m..8m+7 address the rows of matrix
// m = (rows +8·(m&1), cols +8·(m>>1)), which lands each register as the mma expects.
template <typename T>
__device__ __forceinline__ void load_a(unsigned (&a)[4], const T* s, int ld, int row0, int col0) {
  const int l = threadIdx.x & 31, m = l >> 3;
  const T* p = s + (row0 + (l & 7) + (m & 1) * 8) * ld + col0 + (m >> 1) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(smem_addr(p))
               : "memory");
}

// A fragment of the transpose: A[r][c] = s[col0 + c][row0 + r] (ldmatrix.x4.trans).
template <typename T>
__device__ __forceinline__ void load_a_trans(unsigned (&a)[4], const T* s, int ld, int row0,
                                             int col0) {
  const int l = threadIdx.x & 31, m = l >> 3;
  const T* p = s + (col0 + (l & 7) + (m >> 1) * 8) * ld + row0 + (m & 1) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(smem_addr(p))
               : "memory");
}

// B fragment (16 k x 8 n) when s is stored [n][k] (B[k][n] = s[n0 + n][k0 + k]): the K of
// Q·Kᵀ. ldmatrix.x2: lanes 0-7 address matrix 0 (k0..k0+7), lanes 8-15 matrix 1 (k0+8..).
template <typename T>
__device__ __forceinline__ void load_b(unsigned (&b)[2], const T* s, int ld, int n0, int k0) {
  const int l = threadIdx.x & 15;
  const T* p = s + (n0 + (l & 7)) * ld + k0 + (l >> 3) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(b[0]), "=r"(b[1])
               : "r"(smem_addr(p))
               : "memory");
}

// B fragment when s is stored [k][n] (B[k][n] = s[k0 + k][n0 + n]): the V of P·V
// (ldmatrix.x2.trans).
template <typename T>
__device__ __forceinline__ void load_b_trans(unsigned (&b)[2], const T* s, int ld, int k0,
                                             int n0) {
  const int l = threadIdx.x & 15;
  const T* p = s + (k0 + (l & 7) + (l >> 3) * 8) * ld + n0;
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(b[0]), "=r"(b[1])
               : "r"(smem_addr(p))
               : "memory");
}

// Stores two adjacent values (element index even, so 4-byte aligned for 16-bit types).
__device__ __forceinline__ void store2(__nv_bfloat16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}
__device__ __forceinline__ void store2(__half* p, float a, float b) {
  *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
}

}  // namespace attn
}  // namespace lmf

// The two 16-bit storage types (the tensor-core kernels), and the head dims they support.
#define LMF_FOR_HALFS(M) M(bf16, __nv_bfloat16) M(f16, __half)
