// Fused AdamW step, the GPU twin of kernels/src/cpu/adamw.rs (torch.optim.AdamW): decoupled
// weight decay, then the bias-corrected Adam update with eps outside the sqrt:
//   p *= decay;  m += w1 (g - m);  v = v beta2 + w2 g g;
//   p -= step_size * (m / (sqrt(v) / bc2_sqrt + eps))
// The scalars (decay = 1 - lr wd, step_size = lr / (1 - b1^t), bc2_sqrt = sqrt(1 - b2^t),
// w1 = 1 - b1, w2 = 1 - b2) come from AdamWParams::scalars on the host, exactly as the CPU
// computes them. The element update uses __f*_rn (no fused multiply-add, IEEE sqrt and
// division) in the CPU's operation order, so param, m and v are bit-identical to the CPU's.
// param, m, v are fp32; grad is f32/bf16/f16 storage; the _copy variant also writes
// copy = round(param) in bf16/f16 (the model's compute copy of fp32 master weights; f32 is
// instantiated too, a plain copy).
#include "lmf_common.cuh"

struct AdamWScalars {
  float decay, step_size, bc2_sqrt, w1, w2, beta2, eps;
};

__device__ __forceinline__ float adamw_update(float& p, float& m, float& v, float g,
                                              const AdamWScalars& s) {
  p = __fmul_rn(p, s.decay);
  m = __fadd_rn(m, __fmul_rn(s.w1, __fsub_rn(g, m)));
  v = __fadd_rn(__fmul_rn(v, s.beta2), __fmul_rn(__fmul_rn(s.w2, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bc2_sqrt), s.eps);
  p = __fsub_rn(p, __fmul_rn(s.step_size, __fdiv_rn(m, denom)));
  return p;
}

// param, m, v: [n] fp32 (updated in place); grad: [n]; copy: [n] or null. 1-D grid-stride.
template <typename G, typename C>
__device__ void adamw_step(float* param, const G* grad, float* m, float* v, C* copy,
                           unsigned long long n, AdamWScalars s) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float p = param[i], mi = m[i], vi = v[i];
    adamw_update(p, mi, vi, lmf::to_f(grad[i]), s);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
    if (copy != nullptr) copy[i] = lmf::from_f<C>(p);
  }
}

#define ADAMW_ARGS                                                                              \
  unsigned long long n, float decay, float step_size, float bc2_sqrt, float w1, float w2,      \
      float beta2, float eps
#define ADAMW_SCALARS AdamWScalars{decay, step_size, bc2_sqrt, w1, w2, beta2, eps}

// adamw_step_<grad>: no copy. adamw_step_copy_<grad>_<copy>: also writes the copy.
#define ADAMW_COPY(GS, G, CS, C)                                                               \
  extern "C" __global__ void adamw_step_copy_##GS##_##CS(float* param, const G* grad,         \
                                                         float* m, float* v, C* copy,          \
                                                         ADAMW_ARGS) {                         \
    adamw_step<G, C>(param, grad, m, v, copy, n, ADAMW_SCALARS);                               \
  }
#define ADAMW_ENTRY(GS, G)                                                                     \
  extern "C" __global__ void adamw_step_##GS(float* param, const G* grad, float* m, float* v, \
                                             ADAMW_ARGS) {                                     \
    adamw_step<G, float>(param, grad, m, v, (float*)nullptr, n, ADAMW_SCALARS);                \
  }                                                                                            \
  ADAMW_COPY(GS, G, bf16, __nv_bfloat16)                                                       \
  ADAMW_COPY(GS, G, f16, __half)                                                               \
  ADAMW_COPY(GS, G, f32, float)
LMF_FOR_FLOATS(ADAMW_ENTRY)
