// Elementwise tensor ops, the GPU twin of runtime/src/elementwise.rs (whose math is the CPU
// reference): unary maps, binary ops with numpy broadcasting, comparisons -> u8 masks,
// where(mask, a, b), and fill. Inputs are strided views (broadcast dims have stride 0), the
// output is contiguous row-major [n]. Math runs in the compute type C (float for f32/bf16/
// f16, double for f64 and the integer types); one rounding to the storage type at the end.
// One thread per output element, grid-stride loop.
#include "lmf_strided.cuh"

// Unary op codes (kernels/src/cuda/elementwise.rs `Unary` has the same numbering).
enum {
  U_NEG = 0, U_EXP, U_LOG, U_SQRT, U_SQR, U_RECIP, U_TANH, U_SIN, U_COS, U_ABS, U_RELU,
  U_SILU, U_GELU_TANH, U_SIGMOID, U_POWF, U_AFFINE, U_SCALE, U_CLAMP
};

template <typename C> __device__ __forceinline__ C sigmoid(C x) {
  return (C)1 / ((C)1 + lmf::m_exp(-x));
}

// `a`, `b`: the op's scalars (powf: a = exponent; affine: x*a + b; scale: x*a; clamp: [a, b]).
template <typename C> __device__ __forceinline__ C unary_op(int op, C x, C a, C b) {
  switch (op) {
    case U_NEG: return -x;
    case U_EXP: return lmf::m_exp(x);
    case U_LOG: return lmf::m_log(x);
    case U_SQRT: return lmf::m_sqrt(x);
    case U_SQR: return x * x;
    case U_RECIP: return (C)1 / x;
    case U_TANH: return lmf::m_tanh(x);
    case U_SIN: return lmf::m_sin(x);
    case U_COS: return lmf::m_cos(x);
    case U_ABS: return lmf::m_abs(x);
    case U_RELU: return x < (C)0 ? (C)0 : x;
    case U_SILU: return x * sigmoid(x);
    case U_GELU_TANH: {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), constants rounded to C like the CPU.
      const C c = (C)0.7978845608028654, k = (C)0.044715;
      const C inner = c * (x + k * x * x * x);
      return (C)0.5 * x * ((C)1 + lmf::m_tanh(inner));
    }
    case U_SIGMOID: return sigmoid(x);
    case U_POWF: return lmf::m_pow(x, a);
    case U_AFFINE: return x * a + b;
    case U_SCALE: return x * a;
    case U_CLAMP: return x < a ? a : (x > b ? b : x);
    default: return x;
  }
}

// y[i] = op(x[i]); x: strided view of n elements, y: [n].
template <typename T>
__device__ void unary(const T* x, Strided xs, T* y, long long n, int op, double a, double b) {
  typedef typename lmf::Compute<T>::type C;
  const C ca = (C)a, cb = (C)b;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const C v = lmf::Compute<T>::load(x[lmf::strided_offset(xs, i)]);
    y[i] = lmf::Compute<T>::store(unary_op<C>(op, v, ca, cb));
  }
}

// Binary op codes: add sub mul div maximum minimum (NaN wins in maximum/minimum).
template <typename C> __device__ __forceinline__ C binary_op(int op, C a, C b) {
  switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    case 4: return (a > b || a != a) ? a : b;
    case 5: return (a < b || a != a) ? a : b;
    default: return a;
  }
}

// Comparison op codes: eq ne lt le gt ge.
template <typename C> __device__ __forceinline__ bool compare_op(int op, C a, C b) {
  switch (op) {
    case 0: return a == b;
    case 1: return a != b;
    case 2: return a < b;
    case 3: return a <= b;
    case 4: return a > b;
    case 5: return a >= b;
    default: return false;
  }
}

// y[i] = op(a[i], b[i]); a, b: strided views broadcast to the output's n elements.
template <typename T>
__device__ void binary(const T* a, Strided as, const T* b, Strided bs, T* y, long long n, int op) {
  typedef typename lmf::Compute<T>::type C;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const C va = lmf::Compute<T>::load(a[lmf::strided_offset(as, i)]);
    const C vb = lmf::Compute<T>::load(b[lmf::strided_offset(bs, i)]);
    y[i] = lmf::Compute<T>::store(binary_op<C>(op, va, vb));
  }
}

// mask[i] = op(a[i], b[i]) as 0/1.
template <typename T>
__device__ void compare(const T* a, Strided as, const T* b, Strided bs, lmf_u8* y, long long n,
                        int op) {
  typedef typename lmf::Compute<T>::type C;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const C va = lmf::Compute<T>::load(a[lmf::strided_offset(as, i)]);
    const C vb = lmf::Compute<T>::load(b[lmf::strided_offset(bs, i)]);
    y[i] = compare_op<C>(op, va, vb) ? 1 : 0;
  }
}

// y[i] = m[i] != 0 ? t[i] : f[i] (plain copies, no conversion).
template <typename T>
__device__ void where_cond(const lmf_u8* m, Strided ms, const T* t, Strided ts, const T* f,
                           Strided fs, T* y, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    y[i] = m[lmf::strided_offset(ms, i)] != 0 ? t[lmf::strided_offset(ts, i)]
                                              : f[lmf::strided_offset(fs, i)];
  }
}

// y[i] = v converted to T (from double, like the CPU's T::from_f64).
template <typename T> __device__ void fill(T* y, long long n, double v) {
  const T x = lmf::from_d<T>(v);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    y[i] = x;
  }
}

#define ELEMENTWISE_ENTRY(S, T)                                                                \
  extern "C" __global__ void unary_##S(const T* x, Strided xs, T* y, long long n, int op,      \
                                       double a, double b) {                                   \
    unary<T>(x, xs, y, n, op, a, b);                                                           \
  }                                                                                            \
  extern "C" __global__ void binary_##S(const T* a, Strided as, const T* b, Strided bs, T* y,  \
                                        long long n, int op) {                                 \
    binary<T>(a, as, b, bs, y, n, op);                                                         \
  }                                                                                            \
  extern "C" __global__ void compare_##S(const T* a, Strided as, const T* b, Strided bs,       \
                                         lmf_u8* y, long long n, int op) {                     \
    compare<T>(a, as, b, bs, y, n, op);                                                        \
  }                                                                                            \
  extern "C" __global__ void where_##S(const lmf_u8* m, Strided ms, const T* t, Strided ts,    \
                                       const T* f, Strided fs, T* y, long long n) {            \
    where_cond<T>(m, ms, t, ts, f, fs, y, n);                                                  \
  }                                                                                            \
  extern "C" __global__ void fill_##S(T* y, long long n, double v) { fill<T>(y, n, v); }
LMF_FOR_ALL(ELEMENTWISE_ENTRY)
