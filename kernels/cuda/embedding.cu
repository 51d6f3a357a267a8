// Token embedding lookup and its backward scatter-add, the GPU twin of
// kernels/src/cpu/embedding.rs. ids are int64 or int32 (one entry point per id type).
//
// Out-of-range ids: the CPU twin panics on them (the runtime checks ids before a kernel runs);
// the GPU cannot report cheaply, so it never reads or writes out of bounds instead: the
// forward fills the output row of a bad id with NaN (so the loss shows it), the backward
// skips the token (it contributes nothing to dtable).
//
// Backward, deterministic and atomic-free (bit-reproducible run to run, like the CPU twin's
// fixed per-column token order):
//   1. keys[p] = (id[p] << 32) | p for every valid token p, all-ones for bad ids and padding
//      up to a power of two npow2 >= 1024;
//   2. bitonic sort of the keys: tiles of 1024 in shared memory, then for each larger merge
//      size k the long strides in global memory and the short ones again in shared memory.
//      Keys are unique (the token index is in them), so the sorted order is the only one:
//      equal ids end up adjacent, in token order;
//   3. one block per (sorted position, column tile): the block at the head of a run of equal
//      ids sums the run's dout rows in token order in fp32 and adds the sum into dtable once.
// A very frequent id is summed by one block per column tile (its run is serial).
#include "lmf_common.cuh"

#define EMB_TILE 1024  // keys per shared-memory sort tile (512 threads, one pair each)

// table: [vocab, dim]; ids: [n]; out: [n, dim]. grid = n, block = 256.
template <typename T, typename I>
__device__ void embedding_fwd(const I* ids, const T* table, T* out, int n, long long vocab,
                              int dim) {
  const int r = blockIdx.x;
  const long long id = (long long)ids[r];
  T* o = out + (size_t)r * dim;
  if (id < 0 || id >= vocab) {
    const T nan = lmf::from_f<T>(__int_as_float(0x7fffffff));
    for (int j = threadIdx.x; j < dim; j += blockDim.x) o[j] = nan;
    return;
  }
  const T* row = table + (size_t)id * dim;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) o[j] = row[j];
}

// keys: [npow2]. 1-D grid over npow2.
template <typename I>
__device__ void embedding_bwd_keys(const I* ids, unsigned long long* keys, int n,
                                   long long vocab, int npow2) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= npow2) return;
  unsigned long long key = ~0ull;
  if (p < n) {
    const long long id = (long long)ids[p];
    if (id >= 0 && id < vocab) key = ((unsigned long long)id << 32) | (unsigned long long)p;
  }
  keys[p] = key;
}

// Compare-exchange of keys[i] and keys[i + j] for the bitonic network at merge size k:
// ascending where (i & k) == 0.
__device__ __forceinline__ void bitonic_cx(unsigned long long* s, int i, int j, int gi, int k) {
  const unsigned long long a = s[i], b = s[i + j];
  const bool asc = (gi & k) == 0;
  if ((a > b) == asc) {
    s[i] = b;
    s[i + j] = a;
  }
}

// Every stage with k <= EMB_TILE, one tile per block. grid = npow2 / EMB_TILE, block = 512.
extern "C" __global__ void embedding_bwd_sort_tile(unsigned long long* keys) {
  __shared__ unsigned long long s[EMB_TILE];
  const int base = blockIdx.x * EMB_TILE;
  for (int e = threadIdx.x; e < EMB_TILE; e += blockDim.x) s[e] = keys[base + e];
  __syncthreads();
  for (int k = 2; k <= EMB_TILE; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      const int t = threadIdx.x;
      const int i = 2 * t - (t & (j - 1));  // the pair's lower index: bit j clear
      bitonic_cx(s, i, j, base + i, k);
      __syncthreads();
    }
  }
  for (int e = threadIdx.x; e < EMB_TILE; e += blockDim.x) keys[base + e] = s[e];
}

// The stages j = EMB_TILE / 2 .. 1 of merge size k > EMB_TILE, in shared memory.
// grid = npow2 / EMB_TILE, block = 512.
extern "C" __global__ void embedding_bwd_sort_merge_tile(unsigned long long* keys, int k) {
  __shared__ unsigned long long s[EMB_TILE];
  const int base = blockIdx.x * EMB_TILE;
  for (int e = threadIdx.x; e < EMB_TILE; e += blockDim.x) s[e] = keys[base + e];
  __syncthreads();
  for (int j = EMB_TILE >> 1; j > 0; j >>= 1) {
    const int t = threadIdx.x;
    const int i = 2 * t - (t & (j - 1));
    bitonic_cx(s, i, j, base + i, k);
    __syncthreads();
  }
  for (int e = threadIdx.x; e < EMB_TILE; e += blockDim.x) keys[base + e] = s[e];
}

// One stage (k, j >= EMB_TILE) in global memory. 1-D grid over npow2 / 2 pairs.
extern "C" __global__ void embedding_bwd_sort_global(unsigned long long* keys, int npow2, int k,
                                                     int j) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= npow2 / 2) return;
  const int i = 2 * t - (t & (j - 1));
  bitonic_cx(keys, i, j, i, k);
}

// dtable[id, c] += sum of dout[p, c] over the run of sorted keys with this id, in token order.
// keys: [npow2] sorted; dout: [n, dim]; dtable: [vocab, dim].
// grid = (n, ceil(dim / blockDim.x)); only the block at a run's head works.
template <typename T>
__device__ void embedding_bwd_accumulate(const unsigned long long* keys, const T* dout,
                                         T* dtable, int n, int dim) {
  const int s = blockIdx.x;
  const unsigned long long key = keys[s];
  if (key == ~0ull) return;
  const unsigned long long id = key >> 32;
  if (s > 0 && (keys[s - 1] >> 32) == id) return;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  float acc = 0.f;
  for (int q = s; q < n; q++) {
    const unsigned long long kq = keys[q];
    if ((kq >> 32) != id) break;  // also stops at the all-ones tail
    const size_t p = (size_t)(kq & 0xffffffffull);
    acc += lmf::to_f(dout[p * dim + c]);
  }
  T* d = dtable + (size_t)id * dim + c;
  *d = lmf::from_f<T>(lmf::to_f(*d) + acc);
}

#define EMB_FWD(S, T, IS, I)                                                                   \
  extern "C" __global__ void embedding_fwd_##S##_##IS(const I* ids, const T* table, T* out,   \
                                                      int n, long long vocab, int dim) {       \
    embedding_fwd<T, I>(ids, table, out, n, vocab, dim);                                       \
  }
#define EMB_ENTRY(S, T)                                                                        \
  EMB_FWD(S, T, i64, long long)                                                                \
  EMB_FWD(S, T, i32, int)                                                                      \
  extern "C" __global__ void embedding_bwd_accumulate_##S(const unsigned long long* keys,     \
                                                          const T* dout, T* dtable, int n,     \
                                                          int dim) {                           \
    embedding_bwd_accumulate<T>(keys, dout, dtable, n, dim);                                   \
  }
LMF_FOR_FLOATS(EMB_ENTRY)

#define EMB_KEYS(IS, I)                                                                        \
  extern "C" __global__ void embedding_bwd_keys_##IS(const I* ids, unsigned long long* keys,  \
                                                     int n, long long vocab, int npow2) {      \
    embedding_bwd_keys<I>(ids, keys, n, vocab, npow2);                                         \
  }
EMB_KEYS(i64, long long)
EMB_KEYS(i32, int)
