// Rotary position embedding (HF "rotate_half" layout), the GPU twin of kernels/src/cpu/rope.rs.
// The cos/sin tables are built on the host by cpu::rope::rope_tables (angles in f64, attention
// factor folded in) and uploaded; this kernel only applies them. For one head vector x with
// rotary_dim R <= head_dim and half = R / 2:
//   y[i]        = x[i] * cos[i] - x[i + half] * sin[i]        i < half
//   y[i + half] = x[i + half] * cos[i] + x[i] * sin[i]
//   y[d]        = x[d]                                         d >= R (partial rotary tail)
// The backward is the same rotation with sin negated (dx = R^T dy), so one kernel serves both
// with sign = +1 / -1. Math in fp32 without fused multiply-adds, in the CPU twin's order, so
// f32 results equal cpu::rope's f32 results bit for bit. Each thread owns a whole pair
// (i, i + half) or one tail element, reading its inputs before writing, so y may alias x.
#include "lmf_common.cuh"

// x, y: [tokens, heads, head_dim]; cos, sin: [tokens, half].
// Work items per head row: half pairs + (head_dim - R) tail copies = head_dim - half.
// 1-D grid-stride over tokens * heads * (head_dim - half) items.
template <typename T>
__device__ void rope_rotate(const T* x, const T* cos_tab, const T* sin_tab, T* y, int tokens,
                            int heads, int head_dim, int rotary_dim, float sign) {
  const int half = rotary_dim / 2;
  const int per_row = head_dim - half;
  const size_t rows = (size_t)tokens * heads;
  const size_t items = rows * per_row;
  for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < items;
       k += (size_t)gridDim.x * blockDim.x) {
    const size_t row = k / per_row;  // (token, head)
    const int i = (int)(k - row * per_row);
    const size_t base = row * head_dim;
    if (i < half) {
      const size_t t = row / heads;
      const float c = lmf::to_f(cos_tab[t * half + i]);
      const float s = sign * lmf::to_f(sin_tab[t * half + i]);
      const float a = lmf::to_f(x[base + i]);
      const float b = lmf::to_f(x[base + i + half]);
      // No fused multiply-add: the CPU twin's f32 rounding, bit for bit.
      y[base + i] = lmf::from_f<T>(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));
      y[base + i + half] = lmf::from_f<T>(__fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)));
    } else {
      const size_t d = base + rotary_dim + (i - half);
      y[d] = x[d];
    }
  }
}

#define ROPE_ENTRY(S, T)                                                                       \
  extern "C" __global__ void rope_fwd_##S(const T* x, const T* cos_tab, const T* sin_tab,     \
                                          T* y, int tokens, int heads, int head_dim,           \
                                          int rotary_dim) {                                    \
    rope_rotate<T>(x, cos_tab, sin_tab, y, tokens, heads, head_dim, rotary_dim, 1.f);          \
  }                                                                                            \
  extern "C" __global__ void rope_bwd_##S(const T* dy, const T* cos_tab, const T* sin_tab,    \
                                          T* dx, int tokens, int heads, int head_dim,          \
                                          int rotary_dim) {                                    \
    rope_rotate<T>(dy, cos_tab, sin_tab, dx, tokens, heads, head_dim, rotary_dim, -1.f);       \
  }
LMF_FOR_FLOATS(ROPE_ENTRY)
