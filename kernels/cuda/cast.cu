// Strided copy with dtype conversion, the GPU twin of the runtime's gather + `cast`
// (runtime/src/storage.rs, runtime/src/dtype.rs): y (a strided view, e.g. a slab of a cat
// output or a plain contiguous buffer) gets x (any strided view of the same shape),
// element by element, converted S -> D through float when both compute in float, else
// through double. contiguous() is the S == D case into a contiguous y.
#include "lmf_strided.cuh"

// x: strided view of n elements; y: strided view of the same shape.
template <typename S, typename D>
__device__ void cast_strided(const S* x, Strided xs, D* y, Strided ys, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    y[lmf::strided_offset(ys, i)] = lmf::Cast<S, D>::run(x[lmf::strided_offset(xs, i)]);
  }
}

#define CAST_ENTRY(SS, S, DS, D)                                                      \
  extern "C" __global__ void cast_##SS##_##DS(const S* x, Strided xs, D* y, Strided ys, \
                                              long long n) {                          \
    cast_strided<S, D>(x, xs, y, ys, n);                                              \
  }
#define CAST_FROM(SS, S)                                                              \
  CAST_ENTRY(SS, S, f32, float) CAST_ENTRY(SS, S, f64, double)                        \
  CAST_ENTRY(SS, S, bf16, __nv_bfloat16) CAST_ENTRY(SS, S, f16, __half)               \
  CAST_ENTRY(SS, S, i32, int) CAST_ENTRY(SS, S, i64, long long)                       \
  CAST_ENTRY(SS, S, u8, unsigned char)
LMF_FOR_ALL(CAST_FROM)
