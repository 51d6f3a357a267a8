// Random tensors from Philox, the GPU twin of runtime/src/random.rs: element e of the output
// is Philox element offset + e of stream `seed` (lmf_philox.cuh, bit-identical to the CPU),
// computed in float and rounded once to the storage type.
// kind 0: uniform (0, 1]; 1: standard normal; 2: dropout mask (keep_value where kept, else 0).
#include "lmf_strided.cuh"
#include "lmf_philox.cuh"

template <typename T>
__device__ void philox_fill(T* y, long long n, unsigned long long seed, unsigned long long offset,
                            int kind, float p, float keep_value) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const unsigned long long e = offset + (unsigned long long)i;
    float v;
    if (kind == 0) {
      v = lmf::philox_uniform(seed, e);
    } else if (kind == 1) {
      v = lmf::philox_normal(seed, e);
    } else {
      v = lmf::philox_keep(seed, e, p) ? keep_value : 0.0f;
    }
    y[i] = lmf::from_d<T>((double)v);
  }
}

#define RANDOM_ENTRY(S, T)                                                                    \
  extern "C" __global__ void philox_##S(T* y, long long n, unsigned long long seed,          \
                                        unsigned long long offset, int kind, float p,        \
                                        float keep_value) {                                  \
    philox_fill<T>(y, n, seed, offset, kind, p, keep_value);                                  \
  }
RANDOM_ENTRY(f32, float)
RANDOM_ENTRY(f64, double)
RANDOM_ENTRY(bf16, __nv_bfloat16)
RANDOM_ENTRY(f16, __half)
