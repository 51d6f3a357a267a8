//! Natural `log` of 16 f32 at once.
//!
//! The method (the classic one, as in fdlibm and Cephes):
//! - `x = m · 2^k` with `m ∈ [√½, √2)`, so that `f = m − 1 ∈ [−0.293, 0.414]` is exact.
//!   AVX-512 reads `m ∈ [1, 2)` and `k` with `vgetmantps`/`vgetexpps` (which see through
//!   subnormals) and halves `m` when it is ≥ √2; AVX2 scales a subnormal `x` by 2²⁴ first,
//!   then moves the exponent field's boundary from 1 to √2 by adding `1 − √½` in the bits;
//! - `ln(1 + f) = 2·atanh(s)` with `s = f / (2 + f)`, `|s| ≤ 0.1716`, written as
//!   `f − f²/2 + s·(f²/2 + R)` with `R = Σ_{j=1..4} 2 s^{2j} / (2j + 1)` (the atanh series,
//!   Horner in `s²`; truncation < 2·10⁻⁹ relative, ~0.03 ulp). The large term `f` is exact
//!   and `f²/2` rounds once, so the division's rounding only reaches the small term;
//! - `k·ln 2` added last, ln 2 split into a 16-bit head (`k·head` is exact for |k| ≤ 256)
//!   and a tail that joins the small terms first.
//!
//! The special values are set at the end: ln(±0) = −inf, ln(x < 0) = NaN, ln(+inf) = +inf,
//! ln(NaN) = NaN.
//!
//! Error, measured over every 61st f32 bit pattern by the test below: ≤ 0.83 ulp at both
//! levels (worst at x = 0.7061, just below √½: there `k = −1` and `ln(1 + f) ≈ 0.345` is
//! half of `k·ln 2`, so the rounding of the inner sum counts in full); the test asserts
//! ≤ 1 ulp. Every finite positive input, subnormals included, has a normal result (the
//! smallest nonzero |ln x|, at x = 1 − 2⁻²⁴, is about 2⁻²⁴) or exactly 0 for x = 1, so no
//! absolute bound is needed.
//!
//! The slice function runs the vector code when `T` is f32 at a vector [`super::level`] and
//! otherwise the scalar loop written beside it, which uses the platform's `ln`.

use super::fast_f32_mut;
use crate::Real;

/// `x[i] = ln(x[i])` for every `i`.
pub fn ln_in_place<T: Real>(x: &mut [T]) {
    if let Some(v) = fast_f32_mut(x) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast_f32_mut` only answers at a vector level the CPU has.
        return unsafe { by_level!(ln_in_place(v)) };
    }
    for v in x.iter_mut() {
        *v = v.ln();
    }
}

/// ln 2 = LN2_HI + LN2_LO; LN2_HI = 45426 / 2¹⁶ has 16 significant bits.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 2 / (2j + 1) for j = 4 down to 1: `2·atanh(s) = 2s + s · Σ_j (2 / (2j + 1)) s^{2j}`.
const C: [f32; 4] = [2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0];

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::super::exp::avx512::map_in_place;
    use super::{C, LN2_HI, LN2_LO};
    use std::arch::x86_64::*;

    /// `ln` of each lane (see the module doc for the method and its error).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn log_ps(x: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        let half = _mm512_set1_ps(0.5);
        // x = m · 2^e, m ∈ [1, 2), exactly, subnormal x included
        let m = _mm512_getmant_ps::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_ZERO>(x);
        let e = _mm512_getexp_ps(x);
        let big = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(m, _mm512_set1_ps(std::f32::consts::SQRT_2));
        let m = _mm512_mask_mul_ps(m, big, m, half);
        let k = _mm512_mask_add_ps(e, big, e, one);
        let f = _mm512_sub_ps(m, one);
        let s = _mm512_div_ps(f, _mm512_add_ps(_mm512_set1_ps(2.0), f));
        let z = _mm512_mul_ps(s, s);
        let mut r = _mm512_set1_ps(C[0]);
        for c in &C[1..] {
            r = _mm512_fmadd_ps(r, z, _mm512_set1_ps(*c));
        }
        let r = _mm512_mul_ps(r, z);
        let hfsq = _mm512_mul_ps(_mm512_mul_ps(half, f), f);
        // small = s·(f²/2 + R) + k·LN2_LO;  ln x = k·LN2_HI + (f − (f²/2 − small))
        let small = _mm512_fmadd_ps(
            s,
            _mm512_add_ps(hfsq, r),
            _mm512_mul_ps(k, _mm512_set1_ps(LN2_LO)),
        );
        let lnx = _mm512_fmadd_ps(
            k,
            _mm512_set1_ps(LN2_HI),
            _mm512_sub_ps(f, _mm512_sub_ps(hfsq, small)),
        );
        let zero = _mm512_setzero_ps();
        // not > 0 (negative, ±0, NaN): NaN; then ±0: −inf; +inf: +inf
        let lnx = _mm512_mask_mov_ps(
            lnx,
            _mm512_cmp_ps_mask::<_CMP_NGT_UQ>(x, zero),
            _mm512_set1_ps(f32::NAN),
        );
        let lnx = _mm512_mask_mov_ps(
            lnx,
            _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, zero),
            _mm512_set1_ps(f32::NEG_INFINITY),
        );
        let inf = _mm512_set1_ps(f32::INFINITY);
        _mm512_mask_mov_ps(lnx, _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, inf), inf)
    }

    /// See [`super::ln_in_place`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn ln_in_place(x: &mut [f32]) {
        map_in_place(x, |v| log_ps(v));
    }
}

/// The AVX2 + FMA twins of [`avx512`]'s functions: 8 lanes, tails through `vmaskmovps`.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::super::exp::avx2::map_in_place;
    use super::{C, LN2_HI, LN2_LO};
    use std::arch::x86_64::*;

    /// `ln` of each lane: [`super::avx512::log_ps`]'s method, with `m` and `k` read from the
    /// bits (AVX2 has no `vgetmantps`): a subnormal `x` is first scaled by 2²⁴ (exact).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn log_ps(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let half = _mm256_set1_ps(0.5);
        let sub = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(f32::MIN_POSITIVE));
        let xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(16_777_216.0)), sub);
        let k_sub = _mm256_and_ps(sub, _mm256_set1_ps(-24.0));
        // adding 1.0 − √½ in the bits carries into the exponent field exactly when the
        // significand is ≥ √2; the significand is then rebuilt on √½'s exponent
        let sqrt_half = 0x3f35_04f3;
        let ix = _mm256_add_epi32(
            _mm256_castps_si256(xs),
            _mm256_set1_epi32(0x3f80_0000 - sqrt_half),
        );
        let e = _mm256_sub_epi32(_mm256_srli_epi32::<23>(ix), _mm256_set1_epi32(127));
        let k = _mm256_add_ps(_mm256_cvtepi32_ps(e), k_sub);
        let mi = _mm256_add_epi32(
            _mm256_and_si256(ix, _mm256_set1_epi32(0x007f_ffff)),
            _mm256_set1_epi32(sqrt_half),
        );
        let f = _mm256_sub_ps(_mm256_castsi256_ps(mi), one);
        let s = _mm256_div_ps(f, _mm256_add_ps(_mm256_set1_ps(2.0), f));
        let z = _mm256_mul_ps(s, s);
        let mut r = _mm256_set1_ps(C[0]);
        for c in &C[1..] {
            r = _mm256_fmadd_ps(r, z, _mm256_set1_ps(*c));
        }
        let r = _mm256_mul_ps(r, z);
        let hfsq = _mm256_mul_ps(_mm256_mul_ps(half, f), f);
        let small = _mm256_fmadd_ps(
            s,
            _mm256_add_ps(hfsq, r),
            _mm256_mul_ps(k, _mm256_set1_ps(LN2_LO)),
        );
        let lnx = _mm256_fmadd_ps(
            k,
            _mm256_set1_ps(LN2_HI),
            _mm256_sub_ps(f, _mm256_sub_ps(hfsq, small)),
        );
        let zero = _mm256_setzero_ps();
        let lnx = _mm256_blendv_ps(
            lnx,
            _mm256_set1_ps(f32::NAN),
            _mm256_cmp_ps::<_CMP_NGT_UQ>(x, zero),
        );
        let lnx = _mm256_blendv_ps(
            lnx,
            _mm256_set1_ps(f32::NEG_INFINITY),
            _mm256_cmp_ps::<_CMP_EQ_OQ>(x, zero),
        );
        let inf = _mm256_set1_ps(f32::INFINITY);
        _mm256_blendv_ps(lnx, inf, _mm256_cmp_ps::<_CMP_EQ_OQ>(x, inf))
    }

    /// See [`super::ln_in_place`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn ln_in_place(x: &mut [f32]) {
        map_in_place(x, |v| log_ps(v));
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::accuracy::{sweep, ulps, vector_isas, Bound};
    use super::super::{level, Level};
    use super::*;

    #[test]
    fn ln_error_is_bounded_over_the_f32_range() {
        for isa in vector_isas() {
            let worst = sweep(
                |x| x > 0.0 && x.is_finite(),
                |x| (x as f64).ln(),
                |x| isa.run(x, avx512::ln_in_place, avx2::ln_in_place),
            );
            eprintln!("{} ln: {worst}", isa.name());
            worst.assert_within(
                isa.name(),
                Bound {
                    ulp: 1.0,
                    tiny: 0.0,
                },
            );
        }
    }

    #[test]
    fn ln_special_values() {
        let tiny = f32::from_bits(1);
        let mut x = [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -1.0,
            -tiny,
            1.0,
            tiny,
            f32::MIN_POSITIVE,
            f32::from_bits(0x007f_ffff),
            f32::MAX,
            2.0,
            std::f32::consts::SQRT_2,
            std::f32::consts::FRAC_1_SQRT_2,
            1.0 + f32::EPSILON,
            1.0 - f32::EPSILON / 2.0,
        ];
        let x0 = x;
        for isa in vector_isas() {
            x = x0;
            isa.run(&mut x, avx512::ln_in_place, avx2::ln_in_place);
            let n = isa.name();
            assert_eq!(x[0], f32::NEG_INFINITY, "{n}");
            assert_eq!(x[1], f32::NEG_INFINITY, "{n}");
            assert_eq!(x[2], f32::INFINITY, "{n}");
            for i in 3..7 {
                assert!(x[i].is_nan(), "{n}: ln({}) = {}", x0[i], x[i]);
            }
            assert_eq!(x[7].to_bits(), 0, "{n}: ln 1 is +0");
            for i in 8..x.len() {
                let e = ulps(x[i], (x0[i] as f64).ln());
                assert!(e <= 1.0, "{n}: ln({:e}) = {:e}, {e} ulp", x0[i], x[i]);
            }
            assert_eq!(x[8], -103.278_93, "{n}: ln 2^-149");
        }
    }

    /// The slice function at whatever level runs, f32 and f64: the vector path against the
    /// f64 `ln`, the portable loops against the scalar `ln`.
    #[test]
    fn ln_in_place_matches_f64_at_every_tail() {
        for len in [1usize, 7, 8, 9, 16, 17, 33] {
            let x: Vec<f64> = (0..len).map(|i| 0.37 + 1.7 * i as f64).collect();
            let mut y: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            ln_in_place(&mut y);
            let mut y64 = x.clone();
            ln_in_place(&mut y64);
            for i in 0..len {
                if level() == Level::Portable {
                    assert_eq!(y[i], (x[i] as f32).ln(), "len {len}, i {i}");
                } else {
                    let w = ((x[i] as f32) as f64).ln();
                    assert!(ulps(y[i], w) <= 1.0, "len {len}, i {i}");
                }
                assert_eq!(y64[i], x[i].ln());
            }
        }
    }
}
