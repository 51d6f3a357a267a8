// lmf_philox.cuh: Philox-4x32-10, bit-identical to kernels/src/cpu/philox.rs. Element e of the
// stream keyed by seed depends on (seed, e) alone, so a GPU dropout mask or random init equals
// the CPU one. uniform() is in (0, 1] (24 bits, never 0); keep() is uniform > p.
#pragma once

namespace lmf {

struct Words4 { unsigned int w[4]; };

__device__ __forceinline__ Words4 philox_words(unsigned long long seed, unsigned long long e) {
  unsigned int c0 = (unsigned int)e, c1 = (unsigned int)(e >> 32), c2 = 0u, c3 = 0u;
  unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
#pragma unroll
  for (int r = 0; r < 10; r++) {
    const unsigned int lo0 = 0xD2511F53u * c0, hi0 = __umulhi(0xD2511F53u, c0);
    const unsigned int lo1 = 0xCD9E8D57u * c2, hi1 = __umulhi(0xCD9E8D57u, c2);
    const unsigned int n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
  }
  Words4 out;
  out.w[0] = c0; out.w[1] = c1; out.w[2] = c2; out.w[3] = c3;
  return out;
}

__device__ __forceinline__ float philox_unit(unsigned int w) {
  return ((float)(w >> 8) + 1.0f) * (1.0f / 16777216.0f);
}

// Uniform in (0, 1] for element e.
__device__ __forceinline__ float philox_uniform(unsigned long long seed, unsigned long long e) {
  return philox_unit(philox_words(seed, e).w[0]);
}

// Standard normal for element e (Box-Muller on its first two words, as the CPU twin).
// logf/cosf are the accurate (non-fast-math) versions; results match the CPU to ~1 ulp.
__device__ __forceinline__ float philox_normal(unsigned long long seed, unsigned long long e) {
  const Words4 w = philox_words(seed, e);
  const float u1 = philox_unit(w.w[0]), u2 = philox_unit(w.w[1]);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

// Dropout keep decision for element e: kept with probability 1 - p.
__device__ __forceinline__ bool philox_keep(unsigned long long seed, unsigned long long e, float p) {
  return philox_uniform(seed, e) > p;
}

}  // namespace lmf
