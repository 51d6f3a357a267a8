//! The logistic sigmoid `σ(x) = 1 / (1 + e⁻ˣ)` of 16 f32 at once.
//!
//! The method: `e = e^{−|x|} ∈ [0, 1]` from [`super::exp`] as the unrounded pair `e + el`,
//! then `σ(x) = 1 / (1 + e)` for `x ≥ 0` and `σ(x) = e / (1 + e)` for `x < 0` (one
//! division either way), with the roundings before the last compensated as in
//! [`super::tanh`]: `1 + e` as `d + dl` (Fast2Sum), the quotient's residual by FMA, divided
//! by `d` once more with the approximate reciprocal. What is left is `exp`'s error before
//! its last rounding and one rounding (without the pair and the correction, the errors of
//! `e`, `1 + e` and the division add up to 2.3 ulp).
//!
//! `exp` never overflows here, so large negative `x` give `e^x`'s own subnormal results
//! and then exactly 0 (below −103.97), never NaN; large positive `x` give exactly 1 from
//! 17.33 (`e < 2⁻²⁵`), as the exact σ rounds. `σ(±0) = 0.5`, `σ(−inf) = 0`, `σ(+inf) = 1`,
//! `σ(NaN) = NaN`.
//!
//! Error, measured over every 61st f32 bit pattern by the test below: ≤ 0.93 ulp where the
//! result is a normal float (worst at x = −5.89), ≤ 0.81 units of 2⁻¹⁴⁹ below that (there
//! `1 + e` is 1 and the result is `exp`'s); the test asserts ≤ 1 ulp and ≤ 1 unit.
//!
//! The slice function runs the vector code when `T` is f32 at a vector [`super::level`] and
//! otherwise the scalar loop written beside it, `1 / (1 + e⁻ˣ)` with the platform's `exp`
//! (what the GLU used before; it gives 0 below −88.72 where `e⁻ˣ` overflows, while the
//! vector code keeps the subnormal results).

use super::fast_f32_mut;
use crate::Real;

/// `x[i] = 1 / (1 + exp(−x[i]))` for every `i`.
pub fn sigmoid_in_place<T: Real>(x: &mut [T]) {
    if let Some(v) = fast_f32_mut(x) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast_f32_mut` only answers at a vector level the CPU has.
        return unsafe { by_level!(sigmoid_in_place(v)) };
    }
    for v in x.iter_mut() {
        *v = (T::one() + (-*v).exp()).recip();
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::super::exp::avx512::{exp_pair_ps, map_in_place};
    use std::arch::x86_64::*;

    /// `σ` of each lane (see the module doc for the method and its error).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn sigmoid_ps(x: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        // −|x| (the sign bit set; `vorps` would need AVX-512 DQ): a NaN x stays NaN
        let minus_abs = _mm512_castsi512_ps(_mm512_or_si512(
            _mm512_castps_si512(x),
            _mm512_set1_epi32(i32::MIN),
        ));
        let (e, el) = exp_pair_ps(minus_abs);
        // d + dl = 1 + e + el: `d − 1` is exact, so `e − (d − 1)` is d's rounding error
        let d = _mm512_add_ps(one, e);
        let dl = _mm512_add_ps(_mm512_sub_ps(e, _mm512_sub_ps(d, one)), el);
        // numerator n + nl: e + el for x < 0, else 1
        let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
        let n = _mm512_mask_mov_ps(one, neg, e);
        let nl = _mm512_maskz_mov_ps(neg, el);
        let q = _mm512_div_ps(n, d);
        // (n + nl) − q·(d + dl), the first part exact by FMA, then one Newton step on 1/d
        let res = _mm512_add_ps(_mm512_fnmadd_ps(q, d, n), nl);
        let res = _mm512_fnmadd_ps(q, dl, res);
        _mm512_fmadd_ps(res, _mm512_rcp14_ps(d), q)
    }

    /// See [`super::sigmoid_in_place`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sigmoid_in_place(x: &mut [f32]) {
        map_in_place(x, |v| sigmoid_ps(v));
    }
}

/// The AVX2 + FMA twins of [`avx512`]'s functions: 8 lanes, tails through `vmaskmovps`.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::super::exp::avx2::{exp_pair_ps, map_in_place};
    use std::arch::x86_64::*;

    /// `σ` of each lane: [`super::avx512::sigmoid_ps`]'s method (with `vrcpps`, 12 bits,
    /// for the Newton step: the correction it scales is below 2⁻²² of the result).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn sigmoid_ps(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let (e, el) = exp_pair_ps(_mm256_or_ps(x, _mm256_set1_ps(-0.0)));
        let d = _mm256_add_ps(one, e);
        let dl = _mm256_add_ps(_mm256_sub_ps(e, _mm256_sub_ps(d, one)), el);
        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_setzero_ps());
        let n = _mm256_blendv_ps(one, e, neg);
        let nl = _mm256_and_ps(el, neg);
        let q = _mm256_div_ps(n, d);
        let res = _mm256_add_ps(_mm256_fnmadd_ps(q, d, n), nl);
        let res = _mm256_fnmadd_ps(q, dl, res);
        _mm256_fmadd_ps(res, _mm256_rcp_ps(d), q)
    }

    /// See [`super::sigmoid_in_place`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sigmoid_in_place(x: &mut [f32]) {
        map_in_place(x, |v| sigmoid_ps(v));
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::accuracy::{sweep, ulps, vector_isas, Bound};
    use super::super::{level, Level};
    use super::*;

    /// The bound asserted: ulp on normal results, units of 2⁻¹⁴⁹ below them.
    const BOUND: Bound = Bound {
        ulp: 1.0,
        tiny: 1.0,
    };

    /// σ in f64, rounded once at the end by the caller.
    fn sigma(x: f32) -> f64 {
        let x = x as f64;
        if x < 0.0 {
            let e = x.exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + (-x).exp())
        }
    }

    #[test]
    fn sigmoid_error_is_bounded_over_the_f32_range() {
        for isa in vector_isas() {
            let worst = sweep(
                |x| !x.is_nan(),
                sigma,
                |x| isa.run(x, avx512::sigmoid_in_place, avx2::sigmoid_in_place),
            );
            eprintln!("{} sigmoid: {worst}", isa.name());
            worst.assert_within(isa.name(), BOUND);
        }
    }

    #[test]
    fn sigmoid_special_values() {
        let tiny = f32::from_bits(1);
        let x0 = [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            tiny,
            -tiny,
            // saturation: 1 from 17.33 up; subnormal results from −87.34 down, 0 below −103.97
            17.3,
            17.4,
            1e30,
            -87.0,
            -88.0,
            -100.0,
            -103.9,
            -104.0,
            -1e30,
            f32::MIN,
        ];
        for isa in vector_isas() {
            let mut x = x0;
            isa.run(&mut x, avx512::sigmoid_in_place, avx2::sigmoid_in_place);
            let n = isa.name();
            assert_eq!(&x[..4], &[0.5, 0.5, 1.0, 0.0], "{n}");
            assert!(x[4].is_nan(), "{n}");
            assert_eq!(&x[5..7], &[0.5, 0.5], "{n}");
            assert_eq!(x[7], 1.0 - f32::EPSILON / 2.0, "{n}: σ(17.3)");
            assert_eq!(&x[8..10], &[1.0, 1.0], "{n}");
            assert!(x[10] >= f32::MIN_POSITIVE, "{n}");
            for i in 10..14 {
                assert!(x[i] > 0.0, "{n}: σ({}) = {}", x0[i], x[i]);
                let e = ulps(x[i], sigma(x0[i]));
                let b = if i == 10 { BOUND.ulp } else { BOUND.tiny };
                assert!(e <= b, "{n}: σ({}) = {:e}, off by {e}", x0[i], x[i]);
            }
            assert!(x[11] < f32::MIN_POSITIVE, "{n}: σ(-88) is subnormal");
            assert_eq!(&x[14..], &[0.0, 0.0, 0.0], "{n}");
        }
    }

    /// The slice function at whatever level runs, f32 and f64, against the scalar formula.
    #[test]
    fn sigmoid_in_place_matches_f64_at_every_tail() {
        for len in [1usize, 7, 8, 9, 16, 17, 33] {
            let x: Vec<f64> = (0..len).map(|i| (i as f64 - 15.0) * 1.3).collect();
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let mut y = xf.clone();
            sigmoid_in_place(&mut y);
            let mut y64 = x.clone();
            sigmoid_in_place(&mut y64);
            for i in 0..len {
                if level() == Level::Portable {
                    assert_eq!(y[i], (1.0 + (-xf[i]).exp()).recip(), "len {len}");
                } else {
                    assert!(ulps(y[i], sigma(xf[i])) <= BOUND.ulp, "len {len}");
                }
                assert_eq!(y64[i], 1.0 / (1.0 + (-x[i]).exp()));
            }
        }
    }
}
