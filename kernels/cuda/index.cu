// Indexing, the GPU twin of runtime/src/index.rs. Both ops see a row-major tensor as
// [outer, size, inner] around the indexed dim; ids are i64, already checked to lie in
// 0..size by the caller.
// index_select: y[o, j, c] = x[o, ids[j], c]  (one thread per output element).
// index_add:    acc[o, ids[j], c] += src[o, j, c] for j = 0, 1, .. in order (one thread per
//               (o, c) column, a serial loop over j: repeated ids accumulate in the CPU's order,
//               no atomics). acc is in the compute type (f32 or f64); the runtime converts.
#include "lmf_strided.cuh"

template <typename T>
__device__ void index_select(const T* x, const lmf_i64* ids, T* y, long long outer,
                             long long size, long long nids, long long inner) {
  const long long total = outer * nids * inner;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const long long c = e % inner, oj = e / inner;
    const long long j = oj % nids, o = oj / nids;
    y[e] = x[(o * size + ids[j]) * inner + c];
  }
}

template <typename C>
__device__ void index_add(C* acc, const lmf_i64* ids, const C* src, long long outer,
                          long long size, long long nids, long long inner) {
  const long long total = outer * inner;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const long long o = e / inner, c = e - o * inner;
    C* dst = acc + o * size * inner + c;
    const C* s = src + o * nids * inner + c;
    for (long long j = 0; j < nids; j++) dst[ids[j] * inner] += s[j * inner];
  }
}

#define INDEX_SELECT_ENTRY(S, T)                                                             \
  extern "C" __global__ void index_select_##S(const T* x, const lmf_i64* ids, T* y,          \
                                              long long outer, long long size, long long nids, \
                                              long long inner) {                             \
    index_select<T>(x, ids, y, outer, size, nids, inner);                                    \
  }
LMF_FOR_ALL(INDEX_SELECT_ENTRY)

#define INDEX_ADD_ENTRY(S, C)                                                                 \
  extern "C" __global__ void index_add_##S(C* acc, const lmf_i64* ids, const C* src,         \
                                           long long outer, long long size, long long nids,  \
                                           long long inner) {                                \
    index_add<C>(acc, ids, src, outer, size, nids, inner);                                    \
  }
INDEX_ADD_ENTRY(f32, float)
INDEX_ADD_ENTRY(f64, double)
