// lmf_strided.cuh: what the generic tensor kernels (elementwise, cast, reduce, index, ..)
// share: the strided-view descriptor passed by value (shape + strides of up to rank 8), the
// row-major index -> storage offset map, and the element conversions of the runtime's
// compute rule: f32/bf16/f16 compute in float, f64 and the integer types in double
// (conversions to integers truncate towards zero and saturate, NaN -> 0, like Rust `as`).
#pragma once
#include "lmf_common.cuh"

typedef unsigned char lmf_u8;
typedef long long lmf_i64;

#define LMF_MAX_RANK 8

// A strided view: element (i0, .., i_{r-1}) lives at sum_d i_d * strides[d] from the view's
// first element (the pointer handed to the kernel). Dims past `rank` are unused.
struct Strided {
  long long shape[LMF_MAX_RANK];
  long long strides[LMF_MAX_RANK];
  int rank;
  int pad_;
};

namespace lmf {

// Storage offset of row-major element i of the view (unrolled: no local memory).
__device__ __forceinline__ long long strided_offset(const Strided& s, long long i) {
  if (s.rank == 1) return i * s.strides[0];
  long long off = 0;
#pragma unroll
  for (int k = 0; k < LMF_MAX_RANK; k++) {
    const int d = LMF_MAX_RANK - 1 - k;
    if (d < s.rank) {
      const long long n = s.shape[d];
      off += (i % n) * s.strides[d];
      i /= n;
    }
  }
  return off;
}

// ---- element <-> double (the compute type of f64 and the integer types) ----
__device__ __forceinline__ double to_d(float x) { return (double)x; }
__device__ __forceinline__ double to_d(double x) { return x; }
__device__ __forceinline__ double to_d(__nv_bfloat16 x) { return (double)__bfloat162float(x); }
__device__ __forceinline__ double to_d(__half x) { return (double)__half2float(x); }
__device__ __forceinline__ double to_d(int x) { return (double)x; }
__device__ __forceinline__ double to_d(long long x) { return (double)x; }
__device__ __forceinline__ double to_d(unsigned char x) { return (double)x; }

template <typename T> __device__ __forceinline__ T from_d(double v);
template <> __device__ __forceinline__ float from_d<float>(double v) { return (float)v; }
template <> __device__ __forceinline__ double from_d<double>(double v) { return v; }
// bf16/f16 from double go through float, as the CPU twin (half's from_f32(v as f32)).
template <> __device__ __forceinline__ __nv_bfloat16 from_d<__nv_bfloat16>(double v) {
  return __float2bfloat16_rn((float)v);
}
template <> __device__ __forceinline__ __half from_d<__half>(double v) {
  return __float2half_rn((float)v);
}
template <> __device__ __forceinline__ int from_d<int>(double v) {
  if (v != v) return 0;
  if (v >= 2147483647.0) return 2147483647;
  if (v <= -2147483648.0) return -2147483647 - 1;
  return (int)v;
}
template <> __device__ __forceinline__ long long from_d<long long>(double v) {
  if (v != v) return 0;
  if (v >= 9223372036854775807.0) return 9223372036854775807LL;
  if (v <= -9223372036854775808.0) return -9223372036854775807LL - 1;
  return (long long)v;
}
template <> __device__ __forceinline__ unsigned char from_d<unsigned char>(double v) {
  if (v != v || v <= 0.0) return 0;
  if (v >= 255.0) return 255;
  return (unsigned char)(int)v;
}

// ---- the compute type of each storage type: Compute<T>::type, load, store ----
template <typename T> struct Compute {
  typedef double type;
  static __device__ __forceinline__ double load(T x) { return to_d(x); }
  static __device__ __forceinline__ T store(double v) { return from_d<T>(v); }
};
template <> struct Compute<float> {
  typedef float type;
  static __device__ __forceinline__ float load(float x) { return x; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
template <> struct Compute<__nv_bfloat16> {
  typedef float type;
  static __device__ __forceinline__ float load(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};
template <> struct Compute<__half> {
  typedef float type;
  static __device__ __forceinline__ float load(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};

// One element converted S -> D: through float when both compute in float (one rounding),
// else through double (the CPU twin's `cast`).
template <typename S, typename D> struct Cast {
  static __device__ __forceinline__ D run(S x) { return from_d<D>(to_d(x)); }
};
#define LMF_CAST_F32(S, D)                                                 \
  template <> struct Cast<S, D> {                                          \
    static __device__ __forceinline__ D run(S x) {                         \
      return Compute<D>::store(Compute<S>::load(x));                       \
    }                                                                      \
  };
LMF_CAST_F32(float, __nv_bfloat16)
LMF_CAST_F32(float, __half)
LMF_CAST_F32(__nv_bfloat16, float)
LMF_CAST_F32(__nv_bfloat16, __half)
LMF_CAST_F32(__half, float)
LMF_CAST_F32(__half, __nv_bfloat16)
// Same type: a plain copy (exact for every i64, which double is not).
template <typename T> struct Cast<T, T> {
  static __device__ __forceinline__ T run(T x) { return x; }
};

// ---- math overloads on the compute type ----
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
// sin / cos without the library's Payne-Hanek path (it uses local memory): Cody-Waite
// reduction by pi/2 in three parts (fdlibm's constants; accurate while |x| < ~1e9), then
// sinpi/cospi of the remainder over pi, in double. Float inputs go through the same path.
__device__ __forceinline__ double m_sincos(double x, bool want_cos) {
  const double k = rint(x * 0.63661977236758134308);
  const double r = ((x - k * 1.57079632673412561417e+00) - k * 6.07710050630396597660e-11) -
                   k * 2.02226624871116645580e-21;
  const double t = r * 0.31830988618379067154;
  int q = (int)(k - 4.0 * floor(k * 0.25));
  if (want_cos) q += 1;
  const double s = sinpi(t), c = cospi(t);
  switch (q & 3) {
    case 0: return s;
    case 1: return c;
    case 2: return -s;
    default: return -c;
  }
}
__device__ __forceinline__ float m_sin(float x) { return (float)m_sincos((double)x, false); }
__device__ __forceinline__ double m_sin(double x) { return m_sincos(x, false); }
__device__ __forceinline__ float m_cos(float x) { return (float)m_sincos((double)x, true); }
__device__ __forceinline__ double m_cos(double x) { return m_sincos(x, true); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }
__device__ __forceinline__ float m_pow(float x, float e) { return powf(x, e); }
__device__ __forceinline__ double m_pow(double x, double e) { return pow(x, e); }

// Warp / block reductions on any arithmetic type (the float ones in lmf_common.cuh are
// float-only). `scratch` is 32 elements of shared memory; ends with a barrier.
template <typename C> __device__ __forceinline__ C warp_sum_t(C v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename C> __device__ __forceinline__ C block_sum_t(C v, C* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum_t(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : (C)0;
  v = warp_sum_t(v);
  __syncthreads();
  return v;
}

}  // namespace lmf

// M(suffix, type) once per runtime dtype.
#define LMF_FOR_ALL(M) \
  M(f32, float) M(f64, double) M(bf16, __nv_bfloat16) M(f16, __half) M(i32, int) M(i64, long long) M(u8, unsigned char)
