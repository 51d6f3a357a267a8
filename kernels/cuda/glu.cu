// Gated linear unit of the MLP, the GPU twin of kernels/src/cpu/swiglu.rs, elementwise over
// flattened [n] buffers:
//   forward:  out = act(gate) * up
//   backward: dgate = dout * up * act'(gate),  dup = dout * act(gate)   (overwritten)
// act is SiLU (SwiGLU: Llama, Qwen, Mistral) or tanh-approximated GELU (GeGLU: Gemma, torch
// gelu_pytorch_tanh); one entry point per activation and storage type. Math in fp32.
#include "lmf_common.cuh"

enum GluAct { GLU_SILU = 0, GLU_GELU_TANH = 1 };

// (act(g), act'(g)) in fp32, the formulas of the CPU twin.
template <int A>
__device__ __forceinline__ void glu_act(float g, float& f, float& df) {
  if (A == GLU_SILU) {
    // 1 / (1 + e^-g) saturates cleanly: e^-g = inf gives s = 0, never NaN.
    const float s = 1.f / (1.f + expf(-g));
    f = g * s;
    df = s * (1.f + g * (1.f - s));
  } else {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    const float c = 0.044715f;
    const float g2 = g * g;
    const float t = tanhf(k * g * (1.f + c * g2));
    f = 0.5f * g * (1.f + t);
    // d/dg: 0.5 (1 + t) + 0.5 g (1 - t^2) k (1 + 3 c g^2)
    df = 0.5f * (1.f + t) + 0.5f * g * (1.f - t * t) * k * (1.f + 3.f * c * g2);
  }
}

// gate, up, out: [n]. 1-D grid-stride.
template <typename T, int A>
__device__ void glu_fwd(const T* gate, const T* up, T* out, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float f, df;
    glu_act<A>(lmf::to_f(gate[i]), f, df);
    out[i] = lmf::from_f<T>(f * lmf::to_f(up[i]));
  }
}

// dout, gate, up, dgate, dup: [n]. 1-D grid-stride.
template <typename T, int A>
__device__ void glu_bwd(const T* dout, const T* gate, const T* up, T* dgate, T* dup, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float f, df;
    glu_act<A>(lmf::to_f(gate[i]), f, df);
    const float d = lmf::to_f(dout[i]);
    dgate[i] = lmf::from_f<T>(d * lmf::to_f(up[i]) * df);
    dup[i] = lmf::from_f<T>(d * f);
  }
}

#define GLU_ENTRY_ACT(S, T, NAME, A)                                                           \
  extern "C" __global__ void glu_##NAME##_fwd_##S(const T* gate, const T* up, T* out,         \
                                                  unsigned long long n) {                      \
    glu_fwd<T, A>(gate, up, out, (size_t)n);                                                   \
  }                                                                                            \
  extern "C" __global__ void glu_##NAME##_bwd_##S(const T* dout, const T* gate, const T* up,  \
                                                  T* dgate, T* dup, unsigned long long n) {    \
    glu_bwd<T, A>(dout, gate, up, dgate, dup, (size_t)n);                                      \
  }
#define GLU_ENTRY(S, T) GLU_ENTRY_ACT(S, T, silu, GLU_SILU) GLU_ENTRY_ACT(S, T, gelu_tanh, GLU_GELU_TANH)
LMF_FOR_FLOATS(GLU_ENTRY)
