// MXFP4 expert weights (GPT-OSS checkpoints), the GPU twin of kernels/src/cpu/quant/mxfp4.rs:
// dequantization of whole rows of one expert, for the tiled dequant-matmul of
// kernels/src/cuda/mxfp4.rs.
//
// Layout of one expert W: [rows, cols] (cols % 32 == 0), flattened row-major:
//   blocks: [rows * cols / 32][16] u8, element 2j of a block in the LOW nibble of byte j,
//           element 2j + 1 in the high nibble;
//   scales: [rows * cols / 32] u8, the block's power of two 2^(s - 127).
//   W[i] = FP4[code(i)] * 2^(scales[i / 32] - 127)
// Exactness: FP4 values times a power of two are exact in fp32 (2^(s-127) built from its bit
// pattern for normal s, 2^-127 for s = 0, inf for s = 255: the CPU's powi), so the values equal
// the CPU's bit for bit in f32 and, rounded once, in bf16/f16.
#include "lmf_common.cuh"

namespace {

__device__ __constant__ float FP4[16] = {0.f,  0.5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                         -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

__device__ __forceinline__ float mx_unit(unsigned s) {
  if (s == 0u) return ldexpf(1.f, -127);
  if (s == 255u) return lmf::pos_inf();
  return __int_as_float((int)(s << 23));
}

// out[i] = W[start + i] for i < count (start a multiple of 32: whole blocks). Grid-stride over
// elements, two per thread (one byte).
template <typename T>
__device__ void dequant_mxfp4(const unsigned char* blocks, const unsigned char* scales,
                              unsigned long long start, unsigned long long count, T* out) {
  const unsigned long long pairs = count / 2;
  for (unsigned long long p = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
       p < pairs; p += (unsigned long long)gridDim.x * blockDim.x) {
    const unsigned long long i = start + 2 * p;  // even element
    const unsigned char byte = blocks[i / 2];
    const float u = mx_unit(scales[i / 32]);
    out[2 * p] = lmf::from_f<T>(__fmul_rn(FP4[byte & 0x0f], u));
    out[2 * p + 1] = lmf::from_f<T>(__fmul_rn(FP4[byte >> 4], u));
  }
}

}  // namespace

#define MXFP4_ENTRY(S, T)                                                                      \
  extern "C" __global__ void dequant_mxfp4_##S(const unsigned char* blocks,                    \
                                               const unsigned char* scales,                    \
                                               unsigned long long start,                       \
                                               unsigned long long count, T* out) {             \
    dequant_mxfp4<T>(blocks, scales, start, count, out);                                       \
  }
LMF_FOR_FLOATS(MXFP4_ENTRY)
