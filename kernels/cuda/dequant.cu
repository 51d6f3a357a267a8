// Quantized weights (bitsandbytes layouts), the GPU twin of kernels/src/cpu/quant/:
//   - dequant4:  NF4/FP4 blockwise 4-bit -> f32/bf16/f16 (cpu Quant4::dequantize_range)
//   - dequant8:  8-bit blockwise against a 256-value code (cpu dequantize_blockwise_8bit)
//   - dequant_int8_rows: LLM.int8 row-wise int8 (cpu Int8Rows::dequantize_row)
//   - gemv4 / gemv_int8: y = x . W^T for a few input rows (decode), W read once from memory.
//
// 4-bit layout: the flattened tensor, two codes per byte, the first element in the HIGH nibble;
// one absmax per block of `bs` elements. With double quantization the absmax of block b is
//   nested_code[qa[b]] * nested_absmax[b / nbs] + offset
// (qa: 8-bit codes, nested_code: 256 values). Kernels take `qa == nullptr` to mean a plain f32
// absmax, in which case `absmax` is the per-block vector, else the nested absmax.
//
// Exactness: every dequantized value is computed with the CPU's f32 operations in the CPU's
// order, with __fmul_rn/__fadd_rn so nvcc cannot contract them into an FMA: the dequantized
// weights equal the CPU's bit for bit in f32 (and, rounded once, in bf16/f16).
#include "lmf_common.cuh"

typedef unsigned char u8;

namespace {

// The absmax of 4-bit block b (ncode: the nested code, in shared memory).
__device__ __forceinline__ float block_absmax(const float* absmax, const u8* qa,
                                              const float* ncode, float offset, unsigned nbs,
                                              unsigned long long b) {
  if (qa == nullptr) return absmax[b];
  return __fadd_rn(__fmul_rn(ncode[qa[b]], absmax[b / nbs]), offset);
}

// Copies the 16-value 4-bit code and (double quant only) the 256-value nested code into shared
// memory. Ends with a barrier.
__device__ __forceinline__ void load_codes(const float* code, const u8* qa, const float* ncode,
                                           float* code_s, float* ncode_s) {
  for (int i = threadIdx.x; i < 16; i += blockDim.x) code_s[i] = code[i];
  if (qa != nullptr)
    for (int i = threadIdx.x; i < 256; i += blockDim.x) ncode_s[i] = ncode[i];
  __syncthreads();
}

// The 4-bit code of flattened element k.
__device__ __forceinline__ int nibble_at(const u8* packed, unsigned long long k) {
  const int byte = packed[k >> 1];
  return (k & 1) ? (byte & 15) : (byte >> 4);
}

// ---------------------------------------------------------------------------------------------
// Dequantization. One warp per absmax block (the absmax is computed once per block, no
// per-element division); the grid strides over blocks.

// out: [count] = elements start .. start + count of the flattened 4-bit tensor.
// grid: any (grid-stride), block: a multiple of 32.
template <typename T>
__device__ void dequant4(const u8* packed, const float* code, const float* absmax, const u8* qa,
                         const float* ncode, float offset, unsigned nbs, unsigned bs,
                         unsigned long long start, unsigned long long count, T* out) {
  __shared__ float code_s[16];
  __shared__ float ncode_s[256];
  load_codes(code, qa, ncode, code_s, ncode_s);
  const int lane = threadIdx.x & 31;
  const unsigned long long warp = (blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x) >> 5;
  const unsigned long long nwarps = (gridDim.x * (unsigned long long)blockDim.x) >> 5;
  const unsigned long long end = start + count;
  const unsigned long long b0 = start / bs, b1 = (end + bs - 1) / bs;
  for (unsigned long long b = b0 + warp; b < b1; b += nwarps) {
    const float am = block_absmax(absmax, qa, ncode_s, offset, nbs, b);
    const unsigned long long lo = b * bs > start ? b * bs : start;
    const unsigned long long hi = b * bs + bs < end ? b * bs + bs : end;
    for (unsigned long long k = lo + lane; k < hi; k += 32) {
      out[k - start] = lmf::from_f<T>(__fmul_rn(code_s[nibble_at(packed, k)], am));
    }
  }
}

// out[k] = code[q[k]] * absmax[k / bs], k < n. grid: any, block: a multiple of 32.
template <typename T>
__device__ void dequant8(const u8* q, const float* absmax, const float* code, unsigned bs,
                         unsigned long long n, T* out) {
  __shared__ float code_s[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) code_s[i] = code[i];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const unsigned long long warp = (blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x) >> 5;
  const unsigned long long nwarps = (gridDim.x * (unsigned long long)blockDim.x) >> 5;
  const unsigned long long blocks = (n + bs - 1) / bs;
  for (unsigned long long b = warp; b < blocks; b += nwarps) {
    const float am = absmax[b];
    const unsigned long long hi = b * bs + bs < n ? b * bs + bs : n;
    for (unsigned long long k = b * bs + lane; k < hi; k += 32) {
      out[k] = lmf::from_f<T>(__fmul_rn(code_s[q[k]], am));
    }
  }
}

// 1/127 in f32 (bnb: 7.874015718698502e-3, the same f32).
__device__ __forceinline__ float inv127() { return 1.0f / 127.0f; }

// q: [rows_total, cols] int8, absmax: [rows_total]; out: [rows, cols] = rows r0 .. r0 + rows,
// out = q * absmax * (1/127) in that order (the CPU's). One warp per row, grid-stride.
template <typename T>
__device__ void dequant_int8_rows(const signed char* q, const float* absmax, int r0, int rows,
                                  int cols, T* out) {
  const int lane = threadIdx.x & 31;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int nwarps = (gridDim.x * blockDim.x) >> 5;
  for (int r = warp; r < rows; r += nwarps) {
    const float am = absmax[r0 + r];
    const signed char* qr = q + (size_t)(r0 + r) * cols;
    T* orow = out + (size_t)r * cols;
    for (int c = lane; c < cols; c += 32) {
      orow[c] = lmf::from_f<T>(__fmul_rn(__fmul_rn((float)qr[c], am), inv127()));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GEMV for decoding: y[j, r] = sum_k x[j, k] * W[r, k] for j < m <= MAXM input rows.
// x: [m, K], W: [N, K] quantized, y: [m, N]. Memory bound: W is read exactly once, with 16-byte
// loads (__ldcs: streaming, so W does not evict x from L1/L2); x is re-read from L1/L2 by every
// warp. Each warp owns ROWS consecutive output rows (sharing each x load between them) and
// reduces them with warp shuffles; all math is fp32.
//
// Throughput note (not yet measured): each 4-bit element costs one shared-memory lookup of its
// f32 code (conflict-free: 16 entries in 16 banks), one shared-memory wavefront per 32
// elements. On an H200 (~18 B/clk/SM of HBM, 1 wavefront/clk/SM) that alone caps the m = 1 NF4
// GEMV near 85% of HBM peak, and x loads and W loads share the same L1 pipe. If the bench shows
// it short of 80% of copy bandwidth, the next step is a per-lane replicated byte -> code-pair
// table in 16-bit (one lookup per two elements) for bf16/f16 activations.

// Eight consecutive values of x as floats (p 16-byte aligned for 16-bit types, 32 for f32).
__device__ __forceinline__ void load8(const float* p, float* v) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
  v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float* v) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {  // bf16 -> f32 is a shift: element 2i in the low half
    v[2 * i] = __uint_as_float(w[i] << 16);
    v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void load8(const __half* p, float* v) {
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    v[2 * i] = __half2float(__ushort_as_half((unsigned short)(w[i] & 0xffffu)));
    v[2 * i + 1] = __half2float(__ushort_as_half((unsigned short)(w[i] >> 16)));
  }
}

__device__ __forceinline__ unsigned word_of(const uint4& u, int i) {
  return i == 0 ? u.x : i == 1 ? u.y : i == 2 ? u.z : u.w;
}

template <int MAXM> struct GemvShape {
  // Output rows per warp: more rows share each x load, fewer leave registers for x.
  static constexpr int ROWS = MAXM == 1 ? 4 : 2;
};

// The fast 4-bit path. Needs K % 32 == 0, bs = 2^bs_log2 >= 32, nbs = 2^nbs_log2, and 16-byte
// aligned packed/x (the launcher checks and otherwise uses gemv4_any). A chunk is 32
// consecutive elements of a row = 16 bytes of W, inside one absmax block. Lane l takes chunks
// l, l + 32, ... of its warp's rows; per chunk it sums x*code in fp32, then multiplies the sum
// by the block's absmax once (as the CPU's dot_range does per block).
// grid: ceil(N / (warps per block * ROWS)), block: 128.
template <typename T, int MAXM>
__device__ void gemv4(const u8* packed, const float* code, const float* absmax, const u8* qa,
                      const float* ncode, float offset, int nbs_log2, int bs_log2, const T* x,
                      T* y, int m, int N, int K) {
  constexpr int ROWS = GemvShape<MAXM>::ROWS;
  __shared__ float code_s[16];
  __shared__ float ncode_s[256];
  load_codes(code, qa, ncode, code_s, ncode_s);
  const int lane = threadIdx.x & 31;
  const int r0 = ((blockIdx.x * blockDim.x + threadIdx.x) >> 5) * ROWS;
  if (r0 >= N) return;
  const int kc = K >> 5;                  // chunks per row
  const int chunk_log2 = bs_log2 - 5;     // chunks per absmax block = 2^chunk_log2
  float acc[ROWS][MAXM];
#pragma unroll
  for (int r = 0; r < ROWS; r++)
#pragma unroll
    for (int j = 0; j < MAXM; j++) acc[r][j] = 0.f;

  for (int c = lane; c < kc; c += 32) {
    // W chunks and their absmax for all rows first: ROWS 16-byte loads in flight per lane.
    uint4 w[ROWS];
    float am[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
      const unsigned long long chunk = (unsigned long long)(r0 + r) * kc + c;
      if (r0 + r < N) {
        w[r] = __ldcs(reinterpret_cast<const uint4*>(packed) + chunk);
        const unsigned long long b = chunk >> chunk_log2;
        am[r] = qa == nullptr
                    ? absmax[b]
                    : __fadd_rn(__fmul_rn(ncode_s[qa[b]], absmax[b >> nbs_log2]), offset);
      } else {
        w[r] = make_uint4(0u, 0u, 0u, 0u);
        am[r] = 0.f;
      }
    }
    float s[ROWS][MAXM];
#pragma unroll
    for (int r = 0; r < ROWS; r++)
#pragma unroll
      for (int j = 0; j < MAXM; j++) s[r][j] = 0.f;
#pragma unroll
    for (int q = 0; q < 4; q++) {  // 8 elements (one 32-bit word of W) at a time
      float xv[MAXM][8];
#pragma unroll
      for (int j = 0; j < MAXM; j++) {
        if (j < m) load8(x + (size_t)j * K + c * 32 + q * 8, xv[j]);
      }
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        const unsigned wd = word_of(w[r], q);
        float cv[8];
#pragma unroll
        for (int i = 0; i < 4; i++) {  // byte i: element 2i in the high nibble
          cv[2 * i] = code_s[(wd >> (8 * i + 4)) & 15];
          cv[2 * i + 1] = code_s[(wd >> (8 * i)) & 15];
        }
#pragma unroll
        for (int j = 0; j < MAXM; j++) {
          if (j < m) {
#pragma unroll
            for (int i = 0; i < 8; i++) s[r][j] = fmaf(xv[j][i], cv[i], s[r][j]);
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++)
#pragma unroll
      for (int j = 0; j < MAXM; j++) acc[r][j] = fmaf(s[r][j], am[r], acc[r][j]);
  }
#pragma unroll
  for (int r = 0; r < ROWS; r++) {
#pragma unroll
    for (int j = 0; j < MAXM; j++) {
      const float v = lmf::warp_sum(acc[r][j]);
      if (lane == 0 && j < m && r0 + r < N) y[(size_t)j * N + r0 + r] = lmf::from_f<T>(v);
    }
  }
}

// The general 4-bit path (any K, bs, nbs, alignment): one warp per output row, one element per
// lane step. grid: ceil(N / warps per block), block: 128.
template <typename T>
__device__ void gemv4_any(const u8* packed, const float* code, const float* absmax, const u8* qa,
                          const float* ncode, float offset, int nbs, int bs, const T* x, T* y,
                          int m, int N, int K) {
  constexpr int MAXM = 8;
  __shared__ float code_s[16];
  __shared__ float ncode_s[256];
  load_codes(code, qa, ncode, code_s, ncode_s);
  const int lane = threadIdx.x & 31;
  const int r = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (r >= N) return;
  float acc[MAXM];
#pragma unroll
  for (int j = 0; j < MAXM; j++) acc[j] = 0.f;
  for (int k = lane; k < K; k += 32) {
    const unsigned long long e = (unsigned long long)r * K + k;
    const float am = block_absmax(absmax, qa, ncode_s, offset, (unsigned)nbs, e / (unsigned)bs);
    const float wv = __fmul_rn(code_s[nibble_at(packed, e)], am);
#pragma unroll
    for (int j = 0; j < MAXM; j++)
      if (j < m) acc[j] = fmaf(lmf::to_f(x[(size_t)j * K + k]), wv, acc[j]);
  }
#pragma unroll
  for (int j = 0; j < MAXM; j++) {
    const float v = lmf::warp_sum(acc[j]);
    if (lane == 0 && j < m) y[(size_t)j * N + r] = lmf::from_f<T>(v);
  }
}

// Four signed bytes of `w` as floats, exactly: 0x4B000000 | (b ^ 0x80) is the float
// 2^23 + b + 128, so subtracting 2^23 + 128 leaves b (cheaper than four int->float converts).
__device__ __forceinline__ void int8x4_to_f(unsigned w, float* v) {
  const unsigned u = w ^ 0x80808080u;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    v[i] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440 + i)) - 8388736.f;
  }
}

// The fast int8 path: K % 16 == 0, 16-byte aligned q and x. A chunk is 16 int8 elements.
// y = (sum x*q) * (absmax * (1/127)) per row (the CPU's dot_row). grid/block as gemv4.
template <typename T, int MAXM>
__device__ void gemv_int8(const signed char* q, const float* absmax, const T* x, T* y, int m,
                          int N, int K) {
  constexpr int ROWS = GemvShape<MAXM>::ROWS;
  const int lane = threadIdx.x & 31;
  const int r0 = ((blockIdx.x * blockDim.x + threadIdx.x) >> 5) * ROWS;
  if (r0 >= N) return;
  const int kc = K >> 4;
  float acc[ROWS][MAXM];
#pragma unroll
  for (int r = 0; r < ROWS; r++)
#pragma unroll
    for (int j = 0; j < MAXM; j++) acc[r][j] = 0.f;
  for (int c = lane; c < kc; c += 32) {
    uint4 w[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
      w[r] = r0 + r < N ? __ldcs(reinterpret_cast<const uint4*>(q) + (size_t)(r0 + r) * kc + c)
                        : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {  // 8 elements (two 32-bit words of W) at a time
      float xv[MAXM][8];
#pragma unroll
      for (int j = 0; j < MAXM; j++) {
        if (j < m) load8(x + (size_t)j * K + c * 16 + h * 8, xv[j]);
      }
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        float wv[8];
        int8x4_to_f(word_of(w[r], 2 * h), wv);
        int8x4_to_f(word_of(w[r], 2 * h + 1), wv + 4);
#pragma unroll
        for (int j = 0; j < MAXM; j++) {
          if (j < m) {
#pragma unroll
            for (int i = 0; i < 8; i++) acc[r][j] = fmaf(xv[j][i], wv[i], acc[r][j]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; r++) {
    const float scale = r0 + r < N ? __fmul_rn(absmax[r0 + r], inv127()) : 0.f;
#pragma unroll
    for (int j = 0; j < MAXM; j++) {
      const float v = lmf::warp_sum(acc[r][j]);
      if (lane == 0 && j < m && r0 + r < N) y[(size_t)j * N + r0 + r] = lmf::from_f<T>(v * scale);
    }
  }
}

// The general int8 path (any K, any alignment): one warp per row. grid/block as gemv4_any.
template <typename T>
__device__ void gemv_int8_any(const signed char* q, const float* absmax, const T* x, T* y, int m,
                              int N, int K) {
  constexpr int MAXM = 8;
  const int lane = threadIdx.x & 31;
  const int r = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (r >= N) return;
  float acc[MAXM];
#pragma unroll
  for (int j = 0; j < MAXM; j++) acc[j] = 0.f;
  const signed char* qr = q + (size_t)r * K;
  for (int k = lane; k < K; k += 32) {
    const float wv = (float)qr[k];
#pragma unroll
    for (int j = 0; j < MAXM; j++)
      if (j < m) acc[j] = fmaf(lmf::to_f(x[(size_t)j * K + k]), wv, acc[j]);
  }
  const float scale = __fmul_rn(absmax[r], inv127());
#pragma unroll
  for (int j = 0; j < MAXM; j++) {
    const float v = lmf::warp_sum(acc[j]);
    if (lane == 0 && j < m) y[(size_t)j * N + r] = lmf::from_f<T>(v * scale);
  }
}

}  // namespace

#define DEQUANT_ENTRY(S, T)                                                                      \
  extern "C" __global__ void dequant4_##S(const u8* packed, const float* code,                   \
                                          const float* absmax, const u8* qa, const float* ncode,  \
                                          float offset, unsigned nbs, unsigned bs,               \
                                          unsigned long long start, unsigned long long count,    \
                                          T* out) {                                              \
    dequant4<T>(packed, code, absmax, qa, ncode, offset, nbs, bs, start, count, out);            \
  }                                                                                              \
  extern "C" __global__ void dequant8_##S(const u8* q, const float* absmax, const float* code,   \
                                          unsigned bs, unsigned long long n, T* out) {           \
    dequant8<T>(q, absmax, code, bs, n, out);                                                    \
  }                                                                                              \
  extern "C" __global__ void dequant_int8_rows_##S(const signed char* q, const float* absmax,    \
                                                   int r0, int rows, int cols, T* out) {         \
    dequant_int8_rows<T>(q, absmax, r0, rows, cols, out);                                        \
  }                                                                                              \
  extern "C" __global__ void gemv4_any_##S(const u8* packed, const float* code,                  \
                                           const float* absmax, const u8* qa,                    \
                                           const float* ncode, float offset, int nbs, int bs,    \
                                           const T* x, T* y, int m, int N, int K) {              \
    gemv4_any<T>(packed, code, absmax, qa, ncode, offset, nbs, bs, x, y, m, N, K);               \
  }                                                                                              \
  extern "C" __global__ void gemv_int8_any_##S(const signed char* q, const float* absmax,        \
                                               const T* x, T* y, int m, int N, int K) {          \
    gemv_int8_any<T>(q, absmax, x, y, m, N, K);                                                  \
  }                                                                                              \
  GEMV_ENTRY(S, T, 1) GEMV_ENTRY(S, T, 4) GEMV_ENTRY(S, T, 8)

// The fast GEMVs, one entry per (dtype, MAXM): gemv4_m{1,4,8}_<dtype>, gemv_int8_m{..}_<dtype>.
#define GEMV_ENTRY(S, T, M)                                                                      \
  extern "C" __global__ void gemv4_m##M##_##S(const u8* packed, const float* code,               \
                                              const float* absmax, const u8* qa,                 \
                                              const float* ncode, float offset, int nbs_log2,    \
                                              int bs_log2, const T* x, T* y, int m, int N,       \
                                              int K) {                                           \
    gemv4<T, M>(packed, code, absmax, qa, ncode, offset, nbs_log2, bs_log2, x, y, m, N, K);      \
  }                                                                                              \
  extern "C" __global__ void gemv_int8_m##M##_##S(const signed char* q, const float* absmax,     \
                                                  const T* x, T* y, int m, int N, int K) {       \
    gemv_int8<T, M>(q, absmax, x, y, m, N, K);                                                   \
  }

LMF_FOR_FLOATS(DEQUANT_ENTRY)
