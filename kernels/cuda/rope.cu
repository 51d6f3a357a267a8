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
// One block per head row (token, head); its threads take the row's head_dim - half work
// items: half pairs, then the (head_dim - R) tail copies.
// grid = tokens * heads, block = min(256, head_dim - half rounded up to 32).
template <typename T>
__device__ void rope_rotate(const T* x, const T* cos_tab, const T* sin_tab, T* y, int tokens,
                            int heads, int head_dim, int rotary_dim, float sign) {
  const int half = rotary_dim / 2;
  const int per_row = head_dim - half;
  const unsigned row = blockIdx.x;  // token * heads + head
  const size_t t = row / (unsigned)heads;
  const size_t base = (size_t)row * head_dim;
  for (int i = threadIdx.x; i < per_row; i += blockDim.x) {
    if (i < half) {
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
