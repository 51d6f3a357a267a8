//! `tanh` of 16 f32 at once, and the logit softcap `cap · tanh(x / cap)` built on it.
//!
//! The method, on `a = |x|` with the sign put back at the end (so tanh is odd exactly,
//! tanh(±0) = ±0, and a NaN stays NaN):
//! - `a < 0.625`: `a + a³ · P(a²)`, `P` of degree 5, fitted here (Remez, relative error of
//!   the result weighted) to `(tanh a − a) / a³`: 9·10⁻¹⁰ relative, 6.5·10⁻⁹ (~0.11 ulp)
//!   with the coefficients rounded to f32. No cancellation: the correction is at most
//!   `a³/3`, an eighth of `a`. Subnormal `x` give `x` exactly;
//! - otherwise `1 − q`, `q = 2e / (1 + e)`, `e = e^{−2a}` taken from [`super::exp`] as the
//!   unrounded pair `e + el`, with every rounding of the formula but the last compensated:
//!   `1 + e` as `d + dl` (Fast2Sum), the quotient's residual `2(e + el) − q·(d + dl)` by FMA
//!   and divided by `d` once more (a Newton step with the approximate reciprocal), and
//!   `1 − q` as `t + tl` (Fast2Sum). What is left is `exp`'s error before its last rounding,
//!   shrunk by `q / tanh a ≤ 0.81`, and one rounding. For large `a`, `e` is below 2⁻²⁵ (from
//!   `a > 9.01`) and the result rounds to exactly 1; `e` underflows to 0 and it stays 1,
//!   never NaN.
//!
//! Error, measured over every 61st f32 bit pattern by the test below: ≤ 0.77 ulp at both
//! levels (worst at |x| = 0.535, on the polynomial side); the test asserts ≤ 1 ulp. The
//! results are never below the smallest normal float except for subnormal `x`, which are
//! returned exactly (asserted: 0 units of 2⁻¹⁴⁹).
//!
//! The slice functions run the vector code when `T` is f32 at a vector [`super::level`] and
//! otherwise the scalar loop written beside them, which uses the platform's `tanh`.

use super::{fast_f32_mut, to_f32};
use crate::Real;

/// `x[i] = tanh(x[i])` for every `i`.
pub fn tanh_in_place<T: Real>(x: &mut [T]) {
    if let Some(v) = fast_f32_mut(x) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast_f32_mut` only answers at a vector level the CPU has.
        return unsafe { by_level!(tanh_in_place(v)) };
    }
    for v in x.iter_mut() {
        *v = v.tanh();
    }
}

/// The logit softcap (Gemma 2): `x[i] = cap · tanh(x[i] · (1 / cap))` for every `i`, with
/// `cap` and `1 / cap` rounded to `T`.
pub fn softcap_in_place<T: Real>(x: &mut [T], cap: f64) {
    let (cap, inv) = (T::of(cap), T::of(1.0 / cap));
    if let Some(v) = fast_f32_mut(x) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fast_f32_mut` only answers at a vector level the CPU has.
        return unsafe { by_level!(softcap_in_place(v, to_f32(cap), to_f32(inv))) };
    }
    for v in x.iter_mut() {
        *v = cap * (*v * inv).tanh();
    }
}

/// Below this `|x|` the polynomial runs, above it the formula on `exp`.
const SMALL: f32 = 0.625;
/// `P(z)`, `tanh a ≈ a + a³ P(a²)` on `[0, SMALL]`: coefficients of `z⁵` down to `z⁰`.
const P: [f32; 6] = [
    2.135_434_2e-3,
    -8.188_853e-3,
    2.171_650_9e-2,
    -5.395_243_7e-2,
    1.333_327_7e-1,
    -3.333_333_4e-1,
];

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::super::exp::avx512::{exp_pair_ps, map_in_place, tail_mask};
    use super::{P, SMALL};
    use std::arch::x86_64::*;

    /// `tanh` of each lane (see the module doc for the method and its error).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn tanh_ps(x: __m512) -> __m512 {
        let a = _mm512_abs_ps(x);
        let z = _mm512_mul_ps(a, a);
        let mut p = _mm512_set1_ps(P[0]);
        for c in &P[1..] {
            p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(*c));
        }
        let small = _mm512_fmadd_ps(_mm512_mul_ps(a, z), p, a);
        let one = _mm512_set1_ps(1.0);
        let (e, el) = exp_pair_ps(_mm512_mul_ps(a, _mm512_set1_ps(-2.0)));
        // d + dl = 1 + e + el (`d − 1` is exact, so `e − (d − 1)` is d's rounding error)
        let d = _mm512_add_ps(one, e);
        let dl = _mm512_add_ps(_mm512_sub_ps(e, _mm512_sub_ps(d, one)), el);
        // q + ql = 2(e + el) / (d + dl): the residual exact by FMA, one Newton step on 1/d
        let q = _mm512_div_ps(_mm512_add_ps(e, e), d);
        let res = _mm512_add_ps(
            _mm512_fnmadd_ps(q, d, _mm512_add_ps(e, e)),
            _mm512_add_ps(el, el),
        );
        let ql = _mm512_mul_ps(_mm512_fnmadd_ps(q, dl, res), _mm512_rcp14_ps(d));
        // 1 − q = t + tl exactly (|q| < 1), then the small parts once
        let t = _mm512_sub_ps(one, q);
        let tl = _mm512_sub_ps(_mm512_sub_ps(one, t), q);
        let large = _mm512_add_ps(t, _mm512_sub_ps(tl, ql));
        let t = _mm512_mask_mov_ps(
            large,
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, _mm512_set1_ps(SMALL)),
            small,
        );
        // t ≥ 0 or NaN: put x's sign bit on it
        let sign = _mm512_set1_epi32(i32::MIN);
        _mm512_castsi512_ps(_mm512_or_si512(
            _mm512_castps_si512(t),
            _mm512_and_si512(_mm512_castps_si512(x), sign),
        ))
    }

    /// See [`super::tanh_in_place`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tanh_in_place(x: &mut [f32]) {
        map_in_place(x, |v| tanh_ps(v));
    }

    /// See [`super::softcap_in_place`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softcap_in_place(x: &mut [f32], cap: f32, inv: f32) {
        let (cap, inv) = (_mm512_set1_ps(cap), _mm512_set1_ps(inv));
        for c in x.chunks_mut(16) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements.
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, c.as_ptr());
                let t = tanh_ps(_mm512_mul_ps(v, inv));
                _mm512_mask_storeu_ps(c.as_mut_ptr(), m, _mm512_mul_ps(cap, t));
            }
        }
    }
}

/// The AVX2 + FMA twins of [`avx512`]'s functions: 8 lanes, tails through `vmaskmovps`.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::super::exp::avx2::{exp_pair_ps, load, map_in_place, store, tail_mask};
    use super::{P, SMALL};
    use std::arch::x86_64::*;

    /// `tanh` of each lane: [`super::avx512::tanh_ps`]'s method (with `vrcpps`, 12 bits,
    /// for the Newton step: the correction it scales is below 2⁻²² of the result).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub fn tanh_ps(x: __m256) -> __m256 {
        let sign = _mm256_set1_ps(-0.0);
        let a = _mm256_andnot_ps(sign, x);
        let z = _mm256_mul_ps(a, a);
        let mut p = _mm256_set1_ps(P[0]);
        for c in &P[1..] {
            p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(*c));
        }
        let small = _mm256_fmadd_ps(_mm256_mul_ps(a, z), p, a);
        let one = _mm256_set1_ps(1.0);
        let (e, el) = exp_pair_ps(_mm256_mul_ps(a, _mm256_set1_ps(-2.0)));
        let d = _mm256_add_ps(one, e);
        let dl = _mm256_add_ps(_mm256_sub_ps(e, _mm256_sub_ps(d, one)), el);
        let q = _mm256_div_ps(_mm256_add_ps(e, e), d);
        let res = _mm256_add_ps(
            _mm256_fnmadd_ps(q, d, _mm256_add_ps(e, e)),
            _mm256_add_ps(el, el),
        );
        let ql = _mm256_mul_ps(_mm256_fnmadd_ps(q, dl, res), _mm256_rcp_ps(d));
        let t = _mm256_sub_ps(one, q);
        let tl = _mm256_sub_ps(_mm256_sub_ps(one, t), q);
        let large = _mm256_add_ps(t, _mm256_sub_ps(tl, ql));
        let t = _mm256_blendv_ps(
            large,
            small,
            _mm256_cmp_ps::<_CMP_LT_OQ>(a, _mm256_set1_ps(SMALL)),
        );
        _mm256_or_ps(t, _mm256_and_ps(x, sign))
    }

    /// See [`super::tanh_in_place`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tanh_in_place(x: &mut [f32]) {
        map_in_place(x, |v| tanh_ps(v));
    }

    /// See [`super::softcap_in_place`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softcap_in_place(x: &mut [f32], cap: f32, inv: f32) {
        let (cap, inv) = (_mm256_set1_ps(cap), _mm256_set1_ps(inv));
        for c in x.chunks_mut(8) {
            let m = tail_mask(c.len());
            // SAFETY: the mask covers exactly the chunk's elements.
            unsafe {
                let v = load(c, m);
                store(c, m, _mm256_mul_ps(cap, tanh_ps(_mm256_mul_ps(v, inv))));
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::accuracy::{sweep, ulps, vector_isas, Bound};
    use super::super::{level, Level};
    use super::*;

    /// The bound asserted on every result (tanh has no subnormal results but those of
    /// subnormal inputs, which are exact).
    const BOUND: Bound = Bound {
        ulp: 1.0,
        tiny: 0.0,
    };

    #[test]
    fn tanh_error_is_bounded_over_the_f32_range() {
        for isa in vector_isas() {
            let worst = sweep(
                |x| !x.is_nan(),
                |x| (x as f64).tanh(),
                |x| isa.run(x, avx512::tanh_in_place, avx2::tanh_in_place),
            );
            eprintln!("{} tanh: {worst}", isa.name());
            worst.assert_within(isa.name(), BOUND);
        }
    }

    #[test]
    fn tanh_special_values() {
        let tiny = f32::from_bits(1);
        let below = f32::from_bits(SMALL.to_bits() - 1);
        let x0 = [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            tiny,
            -tiny,
            f32::MIN_POSITIVE,
            -f32::from_bits(0x007f_ffff),
            // the two sides of the switch from the polynomial to exp
            below,
            SMALL,
            -below,
            -SMALL,
            // the last x below 1 and the first at 1 (tanh rounds to 1 from 9.0109)
            9.0,
            9.011,
            -9.011,
            50.0,
            -1e30,
            f32::MAX,
        ];
        for isa in vector_isas() {
            let mut x = x0;
            isa.run(&mut x, avx512::tanh_in_place, avx2::tanh_in_place);
            let n = isa.name();
            assert_eq!(x[0].to_bits(), 0f32.to_bits(), "{n}: tanh(+0) = +0");
            assert_eq!(x[1].to_bits(), (-0f32).to_bits(), "{n}: tanh(-0) = -0");
            assert_eq!(x[2], 1.0, "{n}");
            assert_eq!(x[3], -1.0, "{n}");
            assert!(x[4].is_nan(), "{n}");
            for i in 5..9 {
                assert_eq!(x[i], x0[i], "{n}: tanh of a tiny x is x");
            }
            for i in 9..13 {
                let e = ulps(x[i], (x0[i] as f64).tanh());
                assert!(e <= BOUND.ulp, "{n}: tanh({}) = {}, {e} ulp", x0[i], x[i]);
            }
            assert!(x[13] < 1.0, "{n}: tanh 9 = {}", x[13]);
            assert_eq!(x[14], 1.0, "{n}");
            assert_eq!(x[15], -1.0, "{n}");
            assert_eq!(&x[16..], &[1.0, -1.0, 1.0], "{n}");
        }
    }

    /// The slice functions at whatever level runs, f32 and f64, against the scalar formulas.
    #[test]
    fn slices_match_f64_at_every_tail() {
        for len in [1usize, 7, 8, 9, 16, 17, 33] {
            let x: Vec<f64> = (0..len).map(|i| (i as f64 - 12.0) * 0.61).collect();
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let mut y = xf.clone();
            tanh_in_place(&mut y);
            let mut y64 = x.clone();
            tanh_in_place(&mut y64);
            let portable = level() == Level::Portable;
            for i in 0..len {
                if portable {
                    assert_eq!(y[i], xf[i].tanh(), "len {len}");
                } else {
                    assert!(ulps(y[i], (xf[i] as f64).tanh()) <= BOUND.ulp, "len {len}");
                }
                assert_eq!(y64[i], x[i].tanh());
            }
            let cap = 2.5;
            let mut y = xf.clone();
            softcap_in_place(&mut y, cap);
            let mut y64 = x.clone();
            softcap_in_place(&mut y64, cap);
            let (capf, invf) = (cap as f32, (1.0 / cap) as f32);
            for i in 0..len {
                if portable {
                    assert_eq!(y[i], capf * (xf[i] * invf).tanh(), "softcap, len {len}");
                } else {
                    let want = cap * (xf[i] as f64 / cap).tanh();
                    assert!(
                        (y[i] as f64 - want).abs() <= 4e-7 * cap,
                        "softcap, len {len}"
                    );
                }
                assert_eq!(y64[i], cap * (x[i] * (1.0 / cap)).tanh());
            }
        }
    }
}
