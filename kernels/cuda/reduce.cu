// Reductions along one axis of a row-major x: [outer, r, inner] -> [outer, inner], the GPU
// twin of runtime/src/reduce.rs: sum (accumulated in double, as the CPU's f64 sum, times
// `scale` for a mean), max / min (in the compute type, NaN propagates) and argmax (index of
// the first maximum; a NaN counts as the maximum). r >= 1 for max/min/argmax.
// Two shapes of launch: inner == 1 ("rows"): one block per output, a block reduction;
// inner > 1 ("cols"): one thread per output, a serial loop over r (reads coalesced over inner).
// No atomics: results are deterministic.
#include "lmf_strided.cuh"

enum { R_SUM = 0, R_MAX = 1, R_MIN = 2 };

// max/min with NaN propagation (a NaN on either side wins).
template <typename C> __device__ __forceinline__ C pick(int op, C a, C b) {
  if (a != a) return a;
  if (b != b) return b;
  if (op == R_MAX) return b > a ? b : a;
  return b < a ? b : a;
}

// argmax pair combine: NaN first, then the larger value, then the lower index.
template <typename C>
__device__ __forceinline__ void arg_pick(C& v, long long& i, C v2, long long i2) {
  const bool n1 = v != v, n2 = v2 != v2;
  bool take;
  if (n1 || n2) {
    take = n2 && (!n1 || i2 < i);
  } else {
    take = v2 > v || (v2 == v && i2 < i);
  }
  if (take) {
    v = v2;
    i = i2;
  }
}

// y[row] = reduce(x[row, 0..r]); grid = rows, block = 256.
template <typename T>
__device__ void reduce_rows(const T* x, T* y, long long r, int op, double scale) {
  typedef typename lmf::Compute<T>::type C;
  const T* xr = x + (long long)blockIdx.x * r;
  if (op == R_SUM) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long j = threadIdx.x; j < r; j += blockDim.x) acc += lmf::to_d(xr[j]);
    acc = lmf::block_sum_t(acc, scratch);
    if (threadIdx.x == 0) y[blockIdx.x] = lmf::from_d<T>(acc * scale);
    return;
  }
  __shared__ C part[32];
  C acc = lmf::Compute<T>::load(xr[0]);
  for (long long j = threadIdx.x; j < r; j += blockDim.x) {
    acc = pick<C>(op, acc, lmf::Compute<T>::load(xr[j]));
  }
  for (int o = 16; o > 0; o >>= 1) acc = pick<C>(op, acc, __shfl_xor_sync(0xffffffffu, acc, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) part[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    C v = part[0];
    for (int w = 1; w < nwarps; w++) v = pick<C>(op, v, part[w]);
    y[blockIdx.x] = lmf::Compute<T>::store(v);
  }
}

// y[o, i] = reduce_j x[o, j, i]; one thread per (o, i).
template <typename T>
__device__ void reduce_cols(const T* x, T* y, long long outer, long long r, long long inner,
                            int op, double scale) {
  typedef typename lmf::Compute<T>::type C;
  const long long total = outer * inner;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const long long o = e / inner, i = e - o * inner;
    const T* xc = x + o * r * inner + i;
    if (op == R_SUM) {
      double acc = 0.0;
      for (long long j = 0; j < r; j++) acc += lmf::to_d(xc[j * inner]);
      y[e] = lmf::from_d<T>(acc * scale);
    } else {
      C acc = lmf::Compute<T>::load(xc[0]);
      for (long long j = 1; j < r; j++) acc = pick<C>(op, acc, lmf::Compute<T>::load(xc[j * inner]));
      y[e] = lmf::Compute<T>::store(acc);
    }
  }
}

// y[row] = first argmax of x[row, 0..r]; grid = rows, block = 256.
template <typename T> __device__ void argmax_rows(const T* x, lmf_i64* y, long long r) {
  typedef typename lmf::Compute<T>::type C;
  __shared__ C pv[32];
  __shared__ long long pi[32];
  const T* xr = x + (long long)blockIdx.x * r;
  C v = lmf::Compute<T>::load(xr[0]);
  long long idx = 0;
  // Each thread scans its elements in increasing order: replacing only on a strict
  // improvement keeps the first maximum.
  for (long long j = threadIdx.x; j < r; j += blockDim.x) {
    const C u = lmf::Compute<T>::load(xr[j]);
    if (u > v || (u != u && v == v)) {
      v = u;
      idx = j;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const C v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const long long i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    arg_pick<C>(v, idx, v2, i2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) {
    pv[warp] = v;
    pi[warp] = idx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    C bv = pv[0];
    long long bi = pi[0];
    for (int w = 1; w < nwarps; w++) arg_pick<C>(bv, bi, pv[w], pi[w]);
    y[blockIdx.x] = bi;
  }
}

// y[o, i] = first argmax over j of x[o, j, i]; one thread per (o, i).
template <typename T>
__device__ void argmax_cols(const T* x, lmf_i64* y, long long outer, long long r, long long inner) {
  typedef typename lmf::Compute<T>::type C;
  const long long total = outer * inner;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const long long o = e / inner, i = e - o * inner;
    const T* xc = x + o * r * inner + i;
    C v = lmf::Compute<T>::load(xc[0]);
    long long idx = 0;
    for (long long j = 1; j < r; j++) {
      const C u = lmf::Compute<T>::load(xc[j * inner]);
      if (u > v || (u != u && v == v)) {
        v = u;
        idx = j;
      }
    }
    y[e] = idx;
  }
}

#define REDUCE_ENTRY(S, T)                                                                     \
  extern "C" __global__ void reduce_rows_##S(const T* x, T* y, long long r, int op,            \
                                             double scale) {                                   \
    reduce_rows<T>(x, y, r, op, scale);                                                        \
  }                                                                                            \
  extern "C" __global__ void reduce_cols_##S(const T* x, T* y, long long outer, long long r,   \
                                             long long inner, int op, double scale) {          \
    reduce_cols<T>(x, y, outer, r, inner, op, scale);                                          \
  }                                                                                            \
  extern "C" __global__ void argmax_rows_##S(const T* x, lmf_i64* y, long long r) {            \
    argmax_rows<T>(x, y, r);                                                                   \
  }                                                                                            \
  extern "C" __global__ void argmax_cols_##S(const T* x, lmf_i64* y, long long outer,          \
                                             long long r, long long inner) {                   \
    argmax_cols<T>(x, y, outer, r, inner);                                                     \
  }
LMF_FOR_ALL(REDUCE_ENTRY)
