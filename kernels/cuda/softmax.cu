// Softmax / log-softmax over the last dim of a row-major x: [rows, n], the GPU twin of
// runtime/src/softmax.rs: max (NaNs ignored, as the CPU's `v > m` fold), then
// sum_j exp(x_j - max) in the compute type, then y = exp(x - max) / sum, or
// (x - max) - log(sum) for log-softmax. One block per row (block = 256).
#include "lmf_strided.cuh"

template <typename C> __device__ __forceinline__ C ignore_nan_max(C a, C b) { return b > a ? b : a; }

template <typename T>
__device__ void softmax_rows(const T* x, T* y, long long n, int log_softmax) {
  typedef typename lmf::Compute<T>::type C;
  __shared__ C scratch[32];
  const T* xr = x + (long long)blockIdx.x * n;
  T* yr = y + (long long)blockIdx.x * n;
  C m = -(C)lmf::pos_inf();
  for (long long j = threadIdx.x; j < n; j += blockDim.x) {
    m = ignore_nan_max<C>(m, lmf::Compute<T>::load(xr[j]));
  }
  for (int o = 16; o > 0; o >>= 1) m = ignore_nan_max<C>(m, __shfl_xor_sync(0xffffffffu, m, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) scratch[warp] = m;
  __syncthreads();
  m = lane < nwarps ? scratch[lane] : -(C)lmf::pos_inf();
  for (int o = 16; o > 0; o >>= 1) m = ignore_nan_max<C>(m, __shfl_xor_sync(0xffffffffu, m, o));
  __syncthreads();
  C s = (C)0;
  for (long long j = threadIdx.x; j < n; j += blockDim.x) {
    s += lmf::m_exp(lmf::Compute<T>::load(xr[j]) - m);
  }
  s = lmf::block_sum_t<C>(s, scratch);
  if (log_softmax) {
    const C ls = lmf::m_log(s);
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
      yr[j] = lmf::Compute<T>::store((lmf::Compute<T>::load(xr[j]) - m) - ls);
    }
  } else {
    const C inv = (C)1 / s;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
      yr[j] = lmf::Compute<T>::store(lmf::m_exp(lmf::Compute<T>::load(xr[j]) - m) * inv);
    }
  }
}

#define SOFTMAX_ENTRY(S, T)                                                                 \
  extern "C" __global__ void softmax_##S(const T* x, T* y, long long n, int log_softmax) { \
    softmax_rows<T>(x, y, n, log_softmax);                                                  \
  }
LMF_FOR_ALL(SOFTMAX_ENTRY)
