//! `exp` of 16 f32 at once, and the softmax row operations built on it.
//!
//! The method (the classic one, as in Cephes and SLEEF):
//! - clamp `x` to [−104, 89]: below −103.97 the result rounds to 0, above 88.72 it is +inf,
//!   and the clamp keeps the reduction below in range (NaN passes through: `vmaxps`/`vminps`
//!   return their second operand when one is NaN, and `x` is put second);
//! - `n = round(x / ln 2)`, `r = x − n·ln 2 ∈ [−ln2/2, ln2/2]`, with ln 2 split Cody–Waite
//!   style into a 9-bit head (`n·head` is exact for |n| ≤ 150) and a tail, both by FMA;
//! - `e^r` by its Taylor polynomial of degree 7 (truncation < 7.3e-9 relative, ~0.12 ulp),
//!   Horner with FMA;
//! - `2^n · e^r` by `vscalefps`, which saturates to +inf, and rounds once into the
//!   subnormal range and to 0 below it.
//!
//! Error, measured over every 61st f32 bit pattern by the test below: ≤ 1 ulp where the
//! result is a normal float; ≤ 1 unit of the smallest subnormal (2⁻¹⁴⁹) below that; exact
//! results for ±0 (1), −inf (0), +inf (+inf) and NaN (NaN).
//!
//! The slice functions run the vector code when `T` is f32 on an AVX-512 machine
//! ([`super::avx512`]) and otherwise the scalar loop written beside them, which uses the
//! platform's `exp` (what the kernels used before).

use super::{fast_f32, fast_f32_mut, to_f32};
use crate::Real;

/// `x[i] = exp(x[i] − shift)` for every `i`; returns the sum of the new values.
///
/// The vector path sums in 16 lanes and folds them at the end; the scalar path sums in order.
pub fn exp_shift_sum<T: Real>(x: &mut [T], shift: T) -> T {
    if let Some(v) = fast_f32_mut(x) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast_f32_mut` only answers at a vector level the CPU has.
        return T::of(unsafe { by_level!(exp_shift_sum(v, to_f32(shift))) } as f64);
    }
    let mut sum = T::zero();
    for v in x.iter_mut() {
        *v = (*v - shift).exp();
        sum += *v;
    }
    sum
}

/// `Σ exp(x[i] − shift)`, each term widened to f64 and summed in f64; `x` is unchanged.
pub fn exp_shift_sum_f64<T: Real>(x: &[T], shift: T) -> f64 {
    if let Some(v) = fast_f32(x) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast_f32` only answers at a vector level the CPU has.
        return unsafe { by_level!(exp_shift_sum_f64(v, to_f32(shift))) };
    }
    x.iter().map(|&v| (v - shift).exp().f64()).sum()
}

/// `max(init, x[0], x[1], ...)`. A NaN element is skipped by the scalar path (`f32::max`'s
/// rule) and may or may not be by the vector paths; either way the `exp` that follows turns
/// it into NaN.
pub fn max_of<T: Real>(x: &[T], init: T) -> T {
    if let Some(v) = fast_f32(x) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast_f32` only answers at a vector level the CPU has.
        return T::of(unsafe { by_level!(max_of(v, to_f32(init))) } as f64);
    }
    x.iter().fold(init, |a, &b| a.max(b))
}

/// One row of the softmax backward, from saved statistics: `p = exp(s − lse)` overwrites `s`
/// and `ds = p · (ds − delta)` overwrites `ds` (`ds` holds `dP` on entry). Where `p` is 0
/// (masked scores, `s = −inf`) `ds` is exactly 0, whatever `dP` holds. `lse` must be finite.
pub fn softmax_grad_row<T: Real>(s: &mut [T], ds: &mut [T], lse: T, delta: T) {
    assert_eq!(s.len(), ds.len(), "softmax_grad_row: row lengths");
    if let Some(sv) = fast_f32_mut(s) {
        // SAFETY: T is f32 (`fast_f32_mut` answered): the same slice, retyped.
        let dv = unsafe { std::slice::from_raw_parts_mut(ds.as_mut_ptr() as *mut f32, ds.len()) };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast_f32_mut` only answers at a vector level the CPU has.
        return unsafe { by_level!(softmax_grad_row(sv, dv, to_f32(lse), to_f32(delta))) };
    }
    for (x, y) in s.iter_mut().zip(ds.iter_mut()) {
        let p = (*x - lse).exp();
        *y = if p == T::zero() {
            T::zero()
        } else {
            p * (*y - delta)
        };
        *x = p;
    }
}

/// `z[i] = a · exp(z[i] − shift) − b` for every `i`, with results smaller in magnitude than
/// the smallest normal float flushed to 0 (what the softmax gradients of the fused
/// cross-entropy want: subnormal operands slow the products that consume them).
pub fn scaled_exp_row<T: Real>(z: &mut [T], shift: T, a: T, b: T) {
    if let Some(v) = fast_f32_mut(z) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast_f32_mut` only answers at a vector level the CPU has.
        return unsafe { by_level!(scaled_exp_row(v, to_f32(shift), to_f32(a), to_f32(b))) };
    }
    for v in z.iter_mut() {
        let g = a * (*v - shift).exp() - b;
        *v = if g.abs() < T::min_positive_value() {
            T::zero()
        } else {
            g
        };
    }
}

/// `x[i] = exp(x[i])` for every `i` (the vector `exp` on f32 with AVX-512).
pub fn exp_in_place<T: Real>(x: &mut [T]) {
    exp_shift_sum(x, T::zero());
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO; LN2_HI = 355 / 512 has 9 significant bits.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1/k! for k = 7 down to 2.
const C: [f32; 6] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::{C, LN2_HI, LN2_LO, LOG2E};
    use std::arch::x86_64::*;

    /// `exp` of each lane (see the module doc for the method and its error).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn exp_ps(x: __m512) -> __m512 {
        let (n, r, q) = reduce(x);
        _mm512_scalef_ps(_mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0)), n)
    }

    /// `exp` of each lane as an unevaluated sum `hi + lo`: `hi` is [`exp_ps`], `lo` the
    /// rounding error of its last step `p = 1 + q·r` (one more FMA: `q·r + (1 − p)`, where
    /// `1 − p` is exact), so the pair carries only the reduction's and the polynomial's
    /// errors, not the final rounding (see [`super::super::sigmoid`]).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn exp_pair_ps(x: __m512) -> (__m512, __m512) {
        let (n, r, q) = reduce(x);
        let one = _mm512_set1_ps(1.0);
        let p = _mm512_fmadd_ps(q, r, one);
        let lo = _mm512_fmadd_ps(q, r, _mm512_sub_ps(one, p));
        (_mm512_scalef_ps(p, n), _mm512_scalef_ps(lo, n))
    }

    /// `e^x = 2ⁿ · (1 + q·r)`: the clamp, the reduction and the polynomial but its last
    /// step (see the module doc).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce(x: __m512) -> (__m512, __m512, __m512) {
        // second operands: a NaN x passes through both
        let x = _mm512_max_ps(_mm512_set1_ps(-104.0), x);
        let x = _mm512_min_ps(_mm512_set1_ps(89.0), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(C[0]);
        for c in &C[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
        }
        (n, r, _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0)))
    }

    /// Lanes `0..len` set (`len ≤ 16`).
    #[inline(always)]
    pub fn tail_mask(len: usize) -> __mmask16 {
        if len >= 16 {
            0xFFFF
        } else {
            ((1u32 << len) - 1) as __mmask16
        }
    }

    /// `x[i] = f(x[i])`, 16 lanes at a time, the tail through a masked load and store (the
    /// slice functions of the vector `exp`, `ln`, `tanh` and `sigmoid`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn map_in_place(x: &mut [f32], f: impl Fn(__m512) -> __m512) {
        for c in x.chunks_mut(16) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements.
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, c.as_ptr());
                _mm512_mask_storeu_ps(c.as_mut_ptr(), m, f(v));
            }
        }
    }

    /// See [`super::exp_shift_sum`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_shift_sum(x: &mut [f32], shift: f32) -> f32 {
        let sh = _mm512_set1_ps(shift);
        let mut acc = _mm512_setzero_ps();
        for c in x.chunks_mut(16) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements.
            let v = unsafe { _mm512_maskz_loadu_ps(m, c.as_ptr()) };
            let e = exp_ps(_mm512_sub_ps(v, sh));
            acc = _mm512_mask_add_ps(acc, m, acc, e);
            // SAFETY: as above.
            unsafe { _mm512_mask_storeu_ps(c.as_mut_ptr(), m, e) };
        }
        _mm512_reduce_add_ps(acc)
    }

    /// See [`super::exp_shift_sum_f64`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_shift_sum_f64(x: &[f32], shift: f32) -> f64 {
        let sh = _mm512_set1_ps(shift);
        let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for c in x.chunks(16) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements.
            let v = unsafe { _mm512_maskz_loadu_ps(m, c.as_ptr()) };
            // masked-off lanes become 0 before widening
            let e = _mm512_maskz_mov_ps(m, exp_ps(_mm512_sub_ps(v, sh)));
            lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
            let upper = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(e));
            hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(upper)));
        }
        _mm512_reduce_add_pd(_mm512_add_pd(lo, hi))
    }

    /// See [`super::max_of`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn max_of(x: &[f32], init: f32) -> f32 {
        let mut acc = _mm512_set1_ps(init);
        for c in x.chunks(16) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements; the rest keep `acc`.
            let v = unsafe { _mm512_mask_loadu_ps(acc, m, c.as_ptr()) };
            acc = _mm512_max_ps(acc, v);
        }
        // SAFETY: a vector of 16 f32 and an array of 16 f32 have the same size and bits.
        let a: [f32; 16] = unsafe { std::mem::transmute::<__m512, [f32; 16]>(acc) };
        a.iter().fold(f32::NEG_INFINITY, |m, &v| {
            if v.is_nan() || m.is_nan() {
                f32::NAN
            } else {
                m.max(v)
            }
        })
    }

    /// See [`super::scaled_exp_row`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scaled_exp_row(z: &mut [f32], shift: f32, a: f32, b: f32) {
        let (sh, av, bv) = (_mm512_set1_ps(shift), _mm512_set1_ps(a), _mm512_set1_ps(b));
        let tiny = _mm512_set1_ps(f32::MIN_POSITIVE);
        for c in z.chunks_mut(16) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements.
            let v = unsafe { _mm512_maskz_loadu_ps(m, c.as_ptr()) };
            let g = _mm512_fmsub_ps(av, exp_ps(_mm512_sub_ps(v, sh)), bv);
            let normal = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(g), tiny);
            // SAFETY: as above.
            unsafe { _mm512_mask_storeu_ps(c.as_mut_ptr(), m, _mm512_maskz_mov_ps(normal, g)) };
        }
    }

    /// See [`super::softmax_grad_row`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; `s` and `ds` have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_grad_row(s: &mut [f32], ds: &mut [f32], lse: f32, delta: f32) {
        let (l, d) = (_mm512_set1_ps(lse), _mm512_set1_ps(delta));
        for (c, dc) in s.chunks_mut(16).zip(ds.chunks_mut(16)) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunks' elements (same length).
            let (x, y) = unsafe {
                (
                    _mm512_maskz_loadu_ps(m, c.as_ptr()),
                    _mm512_maskz_loadu_ps(m, dc.as_ptr()),
                )
            };
            let p = exp_ps(_mm512_sub_ps(x, l));
            let nz = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(p, _mm512_setzero_ps());
            let g = _mm512_maskz_mul_ps(nz, p, _mm512_sub_ps(y, d));
            // SAFETY: as above.
            unsafe {
                _mm512_mask_storeu_ps(c.as_mut_ptr(), m, p);
                _mm512_mask_storeu_ps(dc.as_mut_ptr(), m, g);
            }
        }
    }
}

/// The AVX2 + FMA twins of [`avx512`]'s functions: 8 lanes, tails through `vmaskmovps`.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{C, LN2_HI, LN2_LO, LOG2E};
    use std::arch::x86_64::*;

    /// `exp` of each lane: [`super::avx512::exp_ps`]'s method, with `2^n` applied as two
    /// normal powers of two `2^(n>>1) · 2^(n − (n>>1))` (AVX2 has no `vscalefps`): the first
    /// product is exact, the second rounds once, into the subnormal range when it must.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn exp_ps(x: __m256) -> __m256 {
        let (n, r, q) = reduce(x);
        let (p1, p2) = pow2(n);
        let p = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0));
        _mm256_mul_ps(_mm256_mul_ps(p, p1), p2)
    }

    /// [`super::avx512::exp_pair_ps`]'s twin: `exp` of each lane as `hi + lo`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn exp_pair_ps(x: __m256) -> (__m256, __m256) {
        let (n, r, q) = reduce(x);
        let (p1, p2) = pow2(n);
        let one = _mm256_set1_ps(1.0);
        let p = _mm256_fmadd_ps(q, r, one);
        let lo = _mm256_fmadd_ps(q, r, _mm256_sub_ps(one, p));
        (
            _mm256_mul_ps(_mm256_mul_ps(p, p1), p2),
            _mm256_mul_ps(_mm256_mul_ps(lo, p1), p2),
        )
    }

    /// `e^x = 2ⁿ · (1 + q·r)`: [`super::avx512`]'s reduction.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn reduce(x: __m256) -> (__m256, __m256, __m256) {
        // second operands: a NaN x passes through both
        let x = _mm256_max_ps(_mm256_set1_ps(-104.0), x);
        let x = _mm256_min_ps(_mm256_set1_ps(89.0), x);
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(C[0]);
        for c in &C[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        (n, r, _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0)))
    }

    /// `2ⁿ` as two normal powers of two `2^(n>>1) · 2^(n − (n>>1))`, to be applied one after
    /// the other: n ∈ [−150, 128], so both halves are in [−75, 64].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn pow2(n: __m256) -> (__m256, __m256) {
        let ni = _mm256_cvtps_epi32(n);
        let n1 = _mm256_srai_epi32::<1>(ni);
        let n2 = _mm256_sub_epi32(ni, n1);
        let bias = _mm256_set1_epi32(127);
        let p1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
        let p2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
        (p1, p2)
    }

    /// All-ones in lanes `0..len` (`len ≤ 8`), the mask of `vmaskmovps`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn tail_mask(len: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(len.min(8) as i32), lanes)
    }

    /// The chunk's lanes (zeros past its end): `vmaskmovps` only for a short chunk, as it
    /// is slower than a plain load on some CPUs.
    ///
    /// # Safety
    /// `m` is [`tail_mask`] of `c.len() ≤ 8`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn load(c: &[f32], m: __m256i) -> __m256 {
        // SAFETY: 8 elements, or the mask covers exactly the chunk's elements.
        unsafe {
            if c.len() == 8 {
                _mm256_loadu_ps(c.as_ptr())
            } else {
                _mm256_maskload_ps(c.as_ptr(), m)
            }
        }
    }

    /// Writes the chunk's lanes of `v` (a masked store only for a short chunk).
    ///
    /// # Safety
    /// `m` is [`tail_mask`] of `c.len() ≤ 8`.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn store(c: &mut [f32], m: __m256i, v: __m256) {
        // SAFETY: 8 elements, or the mask covers exactly the chunk's elements.
        unsafe {
            if c.len() == 8 {
                _mm256_storeu_ps(c.as_mut_ptr(), v)
            } else {
                _mm256_maskstore_ps(c.as_mut_ptr(), m, v)
            }
        }
    }

    /// `x[i] = f(x[i])`, 8 lanes at a time (a masked tail).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn map_in_place(x: &mut [f32], f: impl Fn(__m256) -> __m256) {
        for c in x.chunks_mut(8) {
            let m = tail_mask(c.len());
            // SAFETY: `m` is the tail mask of this chunk.
            unsafe { store(c, m, f(load(c, m))) };
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn sum8(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// See [`super::exp_shift_sum`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shift_sum(x: &mut [f32], shift: f32) -> f32 {
        let sh = _mm256_set1_ps(shift);
        let mut acc = _mm256_setzero_ps();
        for c in x.chunks_mut(8) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements.
            let v = unsafe { load(c, m) };
            let e = _mm256_and_ps(exp_ps(_mm256_sub_ps(v, sh)), _mm256_castsi256_ps(m));
            acc = _mm256_add_ps(acc, e);
            // SAFETY: as above.
            unsafe { store(c, m, e) };
        }
        sum8(acc)
    }

    /// See [`super::exp_shift_sum_f64`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shift_sum_f64(x: &[f32], shift: f32) -> f64 {
        let sh = _mm256_set1_ps(shift);
        let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        for c in x.chunks(8) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements.
            let v = unsafe { load(c, m) };
            let e = _mm256_and_ps(exp_ps(_mm256_sub_ps(v, sh)), _mm256_castsi256_ps(m));
            lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e)));
        }
        let s = _mm256_add_pd(lo, hi);
        let s = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
        _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
    }

    /// See [`super::max_of`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn max_of(x: &[f32], init: f32) -> f32 {
        let mut acc = _mm256_set1_ps(init);
        for c in x.chunks(8) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements; the rest keep `acc`.
            let v = unsafe { load(c, m) };
            let v = _mm256_blendv_ps(acc, v, _mm256_castsi256_ps(m));
            acc = _mm256_max_ps(acc, v);
        }
        // SAFETY: a vector of 8 f32 and an array of 8 f32 have the same size and bits.
        let a: [f32; 8] = unsafe { std::mem::transmute::<__m256, [f32; 8]>(acc) };
        a.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
    }

    /// See [`super::softmax_grad_row`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `s` and `ds` have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softmax_grad_row(s: &mut [f32], ds: &mut [f32], lse: f32, delta: f32) {
        let (l, d) = (_mm256_set1_ps(lse), _mm256_set1_ps(delta));
        for (c, dc) in s.chunks_mut(8).zip(ds.chunks_mut(8)) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunks' elements (same length).
            let (x, y) = unsafe { (load(c, m), load(dc, m)) };
            let p = exp_ps(_mm256_sub_ps(x, l));
            let nz = _mm256_cmp_ps::<_CMP_NEQ_OQ>(p, _mm256_setzero_ps());
            let g = _mm256_and_ps(_mm256_mul_ps(p, _mm256_sub_ps(y, d)), nz);
            // SAFETY: as above.
            unsafe {
                store(c, m, p);
                store(dc, m, g);
            }
        }
    }

    /// See [`super::scaled_exp_row`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scaled_exp_row(z: &mut [f32], shift: f32, a: f32, b: f32) {
        let (sh, av, bv) = (_mm256_set1_ps(shift), _mm256_set1_ps(a), _mm256_set1_ps(b));
        let tiny = _mm256_set1_ps(f32::MIN_POSITIVE);
        let sign = _mm256_set1_ps(-0.0);
        for c in z.chunks_mut(8) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements.
            let v = unsafe { load(c, m) };
            let g = _mm256_fmsub_ps(av, exp_ps(_mm256_sub_ps(v, sh)), bv);
            let normal = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign, g), tiny);
            // SAFETY: as above.
            unsafe { store(c, m, _mm256_and_ps(g, normal)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::accuracy::ulps;
    use super::*;

    /// The vector ISAs this CPU has, each as its in-place `exp` (whatever `LMF_SIMD` says:
    /// the tests check every kernel the machine can run).
    #[allow(clippy::type_complexity)]
    fn vector_exps() -> Vec<(&'static str, fn(&mut [f32]))> {
        let mut out: Vec<(&'static str, fn(&mut [f32]))> = vec![];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512 F is present (checked just above).
                out.push(("avx512", |x| unsafe {
                    avx512::exp_shift_sum(x, 0.0);
                }));
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: AVX2 and FMA are present (checked just above).
                out.push(("avx2", |x| unsafe {
                    avx2::exp_shift_sum(x, 0.0);
                }));
            }
        }
        if out.is_empty() {
            eprintln!("no vector ISA here: the vector exp is not run");
        }
        out
    }

    #[test]
    fn exp_error_is_bounded_over_the_f32_range() {
        let xs: Vec<f32> = (0..u32::MAX / 61)
            .map(|i| f32::from_bits(i * 61))
            .filter(|x| x.is_finite() && (-110.0..=90.0).contains(x))
            .collect();
        let want: Vec<f64> = xs.iter().map(|&x| (x as f64).exp()).collect();
        for (isa, exp) in vector_exps() {
            let (mut worst_normal, mut worst_sub) = (0f64, 0f64);
            let mut got = xs.clone();
            exp(&mut got);
            for (&g, &w) in got.iter().zip(&want) {
                let e = ulps(g, w);
                if (w as f32).abs() < f32::MIN_POSITIVE {
                    worst_sub = worst_sub.max(e);
                } else {
                    worst_normal = worst_normal.max(e);
                }
            }
            eprintln!(
                "{isa} exp: worst {worst_normal:.3} ulp (normal), {worst_sub:.3} (subnormal)"
            );
            assert!(
                worst_normal <= 1.0,
                "{isa}: normal results {worst_normal} ulp"
            );
            assert!(
                worst_sub <= 1.0,
                "{isa}: subnormal results {worst_sub} units of 2^-149"
            );
        }
    }

    #[test]
    fn exp_special_values() {
        for (isa, exp) in vector_exps() {
            special_values(isa, exp);
        }
    }

    fn special_values(isa: &str, exp: fn(&mut [f32])) {
        eprintln!("{isa}");
        let mut x = [
            0.0f32,
            -0.0,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            88.72,
            88.73,
            -103.9,
            -104.0,
            -1e30,
            1e30,
            f32::from_bits(1),
            -f32::from_bits(1),
            f32::MIN_POSITIVE,
            1.0,
            -1.0,
        ];
        let want: Vec<f32> = x.iter().map(|v| v.exp()).collect();
        exp(&mut x);
        assert_eq!(x[0], 1.0);
        assert_eq!(x[1], 1.0);
        assert_eq!(x[2], 0.0);
        assert_eq!(x[3], f32::INFINITY);
        assert!(x[4].is_nan());
        assert!(x[5].is_finite() && ulps(x[5], (88.72f32 as f64).exp()) <= 1.0);
        assert_eq!(x[6], f32::INFINITY);
        assert!(x[7] > 0.0 && x[7] < f32::MIN_POSITIVE);
        assert_eq!(x[8], 0.0);
        assert_eq!(x[9], 0.0);
        assert_eq!(x[10], f32::INFINITY);
        for i in [11, 12, 13] {
            assert_eq!(x[i], 1.0, "exp of a tiny x is 1");
        }
        assert!((x[14] - want[14]).abs() <= f32::EPSILON * 3.0);
        assert!((x[15] - want[15]).abs() <= f32::EPSILON);
    }

    /// The vector row operations against the scalar loops in f64, on rows of every tail
    /// length (with masked scores, -inf).
    #[test]
    fn row_operations_match_f64() {
        for len in [1usize, 5, 16, 17, 31, 64, 100] {
            let x: Vec<f32> = (0..len)
                .map(|i| {
                    if i % 7 == 3 {
                        f32::NEG_INFINITY
                    } else {
                        ((i * 37 % 23) as f32 - 11.0) * 0.7
                    }
                })
                .collect();
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let m = max_of(&x, f32::NEG_INFINITY);
            assert_eq!(m as f64, max_of(&x64, f64::NEG_INFINITY));
            let want: f64 = x64.iter().map(|v| (v - m as f64).exp()).sum();
            let mut y = x.clone();
            let s = exp_shift_sum(&mut y, m);
            assert!(((s as f64) - want).abs() <= 1e-6 * want, "len {len}");
            for (a, b) in y.iter().zip(&x64) {
                assert!((*a as f64 - (b - m as f64).exp()).abs() <= 2e-7);
            }
            let s64 = exp_shift_sum_f64(&x, m);
            assert!((s64 - want).abs() <= 1e-6 * want);

            let lse = m + s.ln();
            let mut g = x.clone();
            scaled_exp_row(&mut g, lse, 1.5, 0.01);
            for (a, b) in g.iter().zip(&x64) {
                let want = 1.5 * (b - lse as f64).exp() - 0.01;
                assert!(
                    (*a as f64 - want).abs() <= 4e-7,
                    "scaled_exp_row, len {len}"
                );
            }
            let mut p = x.clone();
            let mut ds: Vec<f32> = (0..len).map(|i| (i as f32 * 0.3).sin()).collect();
            let ds0 = ds.clone();
            softmax_grad_row(&mut p, &mut ds, lse, 0.25);
            for i in 0..len {
                let pw = (x64[i] - lse as f64).exp();
                assert!((p[i] as f64 - pw).abs() <= 2e-7, "p, len {len}");
                let gw = pw * (ds0[i] as f64 - 0.25);
                assert!((ds[i] as f64 - gw).abs() <= 4e-7, "ds, len {len}");
                if x[i] == f32::NEG_INFINITY {
                    assert_eq!((p[i], ds[i]), (0.0, 0.0));
                }
            }
        }
    }
}
