//! Gated linear unit activation of the MLP: `out = act(gate) · up`, elementwise over the
//! flattened `[n]` buffers. `act` is SiLU (Llama's SwiGLU) or tanh-approximated GELU
//! (Gemma's GeGLU, torch `gelu_pytorch_tanh`).
//!
//! f32 at a vector [`simd::level`] runs 16 (AVX-512) or 8 (AVX2) elements at once, with
//! the vector [`simd::sigmoid`] and [`simd::tanh`] (≤ 1 ulp) in place of the platform's
//! `exp` and `tanh`, and otherwise the same formulas in the same order (no FMA); the tail
//! of a buffer goes through masked loads and stores, so every element takes the same
//! path. f64 and the portable level run the scalar formulas.

use rayon::prelude::*;

use crate::cpu::simd::{self, fast_f32, fast_f32_mut};
use crate::Real;

/// Elements per parallel task: big enough that rayon overhead is negligible.
const CHUNK: usize = 1 << 14;

/// sqrt(2 / pi), the tanh-GELU input scale.
const GELU_K: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of tanh-GELU.
const GELU_C: f64 = 0.044715;

/// The activation applied to `gate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GluActivation {
    /// `silu(g) = g · sigmoid(g)` (SwiGLU: Llama, Qwen, Mistral).
    Silu,
    /// `0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g³)))` (GeGLU: Gemma).
    GeluTanh,
}

/// `(act(g), act'(g))` for one element.
#[inline(always)]
fn act_and_grad<T: Real>(act: GluActivation, g: T) -> (T, T) {
    let one = T::one();
    match act {
        GluActivation::Silu => {
            // 1/(1+e^-g) saturates cleanly: e^-g = inf gives s = 0, never NaN.
            let s = (one + (-g).exp()).recip();
            (g * s, s * (one + g * (one - s)))
        }
        GluActivation::GeluTanh => {
            let (k, c, half) = (T::of(GELU_K), T::of(GELU_C), T::of(0.5));
            let g2 = g * g;
            let t = (k * g * (one + c * g2)).tanh();
            let f = half * g * (one + t);
            // d/dg: 0.5 (1 + t) + 0.5 g (1 - t²) · k (1 + 3c g²)
            let df = half * (one + t) + half * g * (one - t * t) * k * (one + T::of(3.0) * c * g2);
            (f, df)
        }
    }
}

/// GLU forward: `out[i] = act(gate[i]) · up[i]`, all `[n]`.
pub fn glu_forward<T: Real>(act: GluActivation, gate: &[T], up: &[T], out: &mut [T]) {
    assert!(
        gate.len() == up.len() && out.len() == gate.len(),
        "glu: gate/up/out length"
    );
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK))
        .zip(up.par_chunks(CHUNK))
        .for_each(|((o, g), u)| {
            if let (Some(o), Some(g), Some(u)) = (fast_f32_mut(o), fast_f32(g), fast_f32(u)) {
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: `fast_f32*` only answer at a vector level the CPU has.
                    unsafe {
                        match simd::level() {
                            simd::Level::Avx512 => avx512::glu_forward(act, g, u, o),
                            _ => avx2::glu_forward(act, g, u, o),
                        }
                    }
                    return;
                }
            }
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = act_and_grad(act, g).0 * u;
            }
        });
}

/// GLU backward: from `dout: [n]` writes `dgate = dout · up · act'(gate)` and
/// `dup = dout · act(gate)` (overwritten, not accumulated).
pub fn glu_backward<T: Real>(
    act: GluActivation,
    dout: &[T],
    gate: &[T],
    up: &[T],
    dgate: &mut [T],
    dup: &mut [T],
) {
    let n = gate.len();
    assert!(
        up.len() == n && dout.len() == n && dgate.len() == n && dup.len() == n,
        "glu: backward lengths"
    );
    dgate
        .par_chunks_mut(CHUNK)
        .zip(dup.par_chunks_mut(CHUNK))
        .zip(dout.par_chunks(CHUNK))
        .zip(gate.par_chunks(CHUNK))
        .zip(up.par_chunks(CHUNK))
        .for_each(|((((dg, du), d), g), u)| {
            if let (Some(dg), Some(du), Some(d), Some(g), Some(u)) = (
                fast_f32_mut(dg),
                fast_f32_mut(du),
                fast_f32(d),
                fast_f32(g),
                fast_f32(u),
            ) {
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: `fast_f32*` only answer at a vector level the CPU has.
                    unsafe {
                        match simd::level() {
                            simd::Level::Avx512 => avx512::glu_backward(act, d, g, u, dg, du),
                            _ => avx2::glu_backward(act, d, g, u, dg, du),
                        }
                    }
                    return;
                }
            }
            for ((((dg, du), &d), &g), &u) in dg.iter_mut().zip(du).zip(d).zip(g).zip(u) {
                let (a, da) = act_and_grad(act, g);
                *dg = d * u * da;
                *du = d * a;
            }
        });
}

/// [`GELU_K`] and [`GELU_C`] rounded to f32, as the scalar formula has them (`T::of`).
const K32: f32 = GELU_K as f32;
/// See [`K32`].
const C32: f32 = GELU_C as f32;
/// `3 · c` rounded to f32, as the scalar formula computes it (`T::of(3.0) * c`).
const C3_32: f32 = 3.0 * C32;

/// 16 lanes at a time; the vector twins of [`act_and_grad`] and of the two loops.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{GluActivation, C32, C3_32, K32};
    use crate::cpu::simd::exp::avx512::tail_mask;
    use crate::cpu::simd::sigmoid::avx512::sigmoid_ps;
    use crate::cpu::simd::tanh::avx512::tanh_ps;
    use std::arch::x86_64::*;

    /// `(act(g), act'(g))` of each lane, or only `act(g)` (the second is then unused and
    /// left out by the compiler).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn act_and_grad(act: GluActivation, g: __m512) -> (__m512, __m512) {
        let one = _mm512_set1_ps(1.0);
        match act {
            GluActivation::Silu => {
                let s = sigmoid_ps(g);
                let da = _mm512_mul_ps(
                    s,
                    _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, s))),
                );
                (_mm512_mul_ps(g, s), da)
            }
            GluActivation::GeluTanh => {
                let (k, c, half) = (
                    _mm512_set1_ps(K32),
                    _mm512_set1_ps(C32),
                    _mm512_set1_ps(0.5),
                );
                let g2 = _mm512_mul_ps(g, g);
                let inner = _mm512_mul_ps(
                    _mm512_mul_ps(k, g),
                    _mm512_add_ps(one, _mm512_mul_ps(c, g2)),
                );
                let t = tanh_ps(inner);
                let hg = _mm512_mul_ps(half, g);
                let f = _mm512_mul_ps(hg, _mm512_add_ps(one, t));
                let sech2 = _mm512_sub_ps(one, _mm512_mul_ps(t, t));
                let slope = _mm512_add_ps(one, _mm512_mul_ps(_mm512_set1_ps(C3_32), g2));
                let df = _mm512_add_ps(
                    _mm512_mul_ps(half, _mm512_add_ps(one, t)),
                    _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(hg, sech2), k), slope),
                );
                (f, df)
            }
        }
    }

    /// See [`super::glu_forward`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; the slices have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn glu_forward(act: GluActivation, g: &[f32], u: &[f32], o: &mut [f32]) {
        for ((oc, gc), uc) in o.chunks_mut(16).zip(g.chunks(16)).zip(u.chunks(16)) {
            let m = tail_mask(oc.len());
            // SAFETY: the mask covers exactly the chunks' elements (same length).
            unsafe {
                let gv = _mm512_maskz_loadu_ps(m, gc.as_ptr());
                let uv = _mm512_maskz_loadu_ps(m, uc.as_ptr());
                let a = act_and_grad(act, gv).0;
                _mm512_mask_storeu_ps(oc.as_mut_ptr(), m, _mm512_mul_ps(a, uv));
            }
        }
    }

    /// See [`super::glu_backward`].
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; the slices have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn glu_backward(
        act: GluActivation,
        d: &[f32],
        g: &[f32],
        u: &[f32],
        dg: &mut [f32],
        du: &mut [f32],
    ) {
        let chunks = dg.chunks_mut(16).zip(du.chunks_mut(16));
        for (((dgc, duc), dc), (gc, uc)) in
            chunks.zip(d.chunks(16)).zip(g.chunks(16).zip(u.chunks(16)))
        {
            let m = tail_mask(dgc.len());
            // SAFETY: the mask covers exactly the chunks' elements (same length).
            unsafe {
                let dv = _mm512_maskz_loadu_ps(m, dc.as_ptr());
                let gv = _mm512_maskz_loadu_ps(m, gc.as_ptr());
                let uv = _mm512_maskz_loadu_ps(m, uc.as_ptr());
                let (a, da) = act_and_grad(act, gv);
                _mm512_mask_storeu_ps(
                    dgc.as_mut_ptr(),
                    m,
                    _mm512_mul_ps(_mm512_mul_ps(dv, uv), da),
                );
                _mm512_mask_storeu_ps(duc.as_mut_ptr(), m, _mm512_mul_ps(dv, a));
            }
        }
    }
}

/// 8 lanes at a time: [`avx512`]'s twins, tails through `vmaskmovps`.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{GluActivation, C32, C3_32, K32};
    use crate::cpu::simd::exp::avx2::{load, store, tail_mask};
    use crate::cpu::simd::sigmoid::avx2::sigmoid_ps;
    use crate::cpu::simd::tanh::avx2::tanh_ps;
    use std::arch::x86_64::*;

    /// See [`super::avx512`]'s `act_and_grad`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn act_and_grad(act: GluActivation, g: __m256) -> (__m256, __m256) {
        let one = _mm256_set1_ps(1.0);
        match act {
            GluActivation::Silu => {
                let s = sigmoid_ps(g);
                let da = _mm256_mul_ps(
                    s,
                    _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, s))),
                );
                (_mm256_mul_ps(g, s), da)
            }
            GluActivation::GeluTanh => {
                let (k, c, half) = (
                    _mm256_set1_ps(K32),
                    _mm256_set1_ps(C32),
                    _mm256_set1_ps(0.5),
                );
                let g2 = _mm256_mul_ps(g, g);
                let inner = _mm256_mul_ps(
                    _mm256_mul_ps(k, g),
                    _mm256_add_ps(one, _mm256_mul_ps(c, g2)),
                );
                let t = tanh_ps(inner);
                let hg = _mm256_mul_ps(half, g);
                let f = _mm256_mul_ps(hg, _mm256_add_ps(one, t));
                let sech2 = _mm256_sub_ps(one, _mm256_mul_ps(t, t));
                let slope = _mm256_add_ps(one, _mm256_mul_ps(_mm256_set1_ps(C3_32), g2));
                let df = _mm256_add_ps(
                    _mm256_mul_ps(half, _mm256_add_ps(one, t)),
                    _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(hg, sech2), k), slope),
                );
                (f, df)
            }
        }
    }

    /// See [`super::glu_forward`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the slices have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn glu_forward(act: GluActivation, g: &[f32], u: &[f32], o: &mut [f32]) {
        for ((oc, gc), uc) in o.chunks_mut(8).zip(g.chunks(8)).zip(u.chunks(8)) {
            let m = tail_mask(oc.len());
            // SAFETY: the mask covers exactly the chunks' elements (same length).
            unsafe {
                let a = act_and_grad(act, load(gc, m)).0;
                store(oc, m, _mm256_mul_ps(a, load(uc, m)));
            }
        }
    }

    /// See [`super::glu_backward`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the slices have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn glu_backward(
        act: GluActivation,
        d: &[f32],
        g: &[f32],
        u: &[f32],
        dg: &mut [f32],
        du: &mut [f32],
    ) {
        let chunks = dg.chunks_mut(8).zip(du.chunks_mut(8));
        for (((dgc, duc), dc), (gc, uc)) in
            chunks.zip(d.chunks(8)).zip(g.chunks(8).zip(u.chunks(8)))
        {
            let m = tail_mask(dgc.len());
            // SAFETY: the mask covers exactly the chunks' elements (same length).
            unsafe {
                let (dv, uv) = (load(dc, m), load(uc, m));
                let (a, da) = act_and_grad(act, load(gc, m));
                store(dgc, m, _mm256_mul_ps(_mm256_mul_ps(dv, uv), da));
                store(duc, m, _mm256_mul_ps(dv, a));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, Lcg};

    const N: usize = 101;
    const ACTS: [GluActivation; 2] = [GluActivation::Silu, GluActivation::GeluTanh];

    fn loss(act: GluActivation, gate: &[f64], up: &[f64], wts: &[f64]) -> f64 {
        let mut out = vec![0.0; gate.len()];
        glu_forward(act, gate, up, &mut out);
        out.iter().zip(wts).map(|(a, b)| a * b).sum()
    }

    #[test]
    fn forward_matches_definition() {
        let mut rng = Lcg::new(1);
        let gate: Vec<f64> = rand_vec(&mut rng, N, 4.0);
        let up: Vec<f64> = rand_vec(&mut rng, N, 2.0);
        let mut out = vec![0.0; N];
        glu_forward(GluActivation::Silu, &gate, &up, &mut out);
        let want: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        assert_close("silu", &out, &want, 1e-14, 1e-13);
        glu_forward(GluActivation::GeluTanh, &gate, &up, &mut out);
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let want: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| 0.5 * g * (1.0 + (k * (g + 0.044715 * g * g * g)).tanh()) * u)
            .collect();
        assert_close("gelu_tanh", &out, &want, 1e-14, 1e-13);
        // Known values: silu(1) = 0.7310585786, gelu_tanh(1) = 0.8411919906.
        let mut o = [0f64];
        glu_forward(GluActivation::Silu, &[1.0], &[1.0], &mut o);
        assert!((o[0] - 0.731_058_578_6).abs() < 1e-9);
        glu_forward(GluActivation::GeluTanh, &[1.0], &[1.0], &mut o);
        assert!((o[0] - 0.841_191_990_6).abs() < 1e-9);
    }

    #[test]
    fn grad_check_both_activations() {
        for (i, act) in ACTS.into_iter().enumerate() {
            let mut rng = Lcg::new(10 + i as u64);
            let gate: Vec<f64> = rand_vec(&mut rng, N, 4.0);
            let up: Vec<f64> = rand_vec(&mut rng, N, 2.0);
            let wts: Vec<f64> = rand_vec(&mut rng, N, 1.0);
            let (mut dg, mut du) = (vec![0.0; N], vec![0.0; N]);
            glu_backward(act, &wts, &gate, &up, &mut dg, &mut du);
            check_grad("dgate", &gate, &dg, |g| loss(act, g, &up, &wts));
            check_grad("dup", &up, &du, |u| loss(act, &gate, u, &wts));
        }
    }

    #[test]
    fn saturates_without_nan_f32() {
        let gate = [-1e4f32, -100.0, 100.0, 1e4];
        let up = [1.0f32; 4];
        for act in ACTS {
            let mut out = [0f32; 4];
            glu_forward(act, &gate, &up, &mut out);
            let (mut dg, mut du) = ([0f32; 4], [0f32; 4]);
            glu_backward(act, &up, &gate, &up, &mut dg, &mut du);
            assert!(out.iter().chain(&dg).all(|v| v.is_finite()), "{act:?}");
            assert!(
                out[0].abs() < 1e-6 && (out[3] - 1e4).abs() < 1e-2,
                "{act:?}"
            );
            assert!(dg[0].abs() < 1e-6 && (dg[3] - 1.0).abs() < 1e-6, "{act:?}");
        }
    }

    /// The vector ISAs this CPU has (whatever `LMF_SIMD` says), as their forward and
    /// backward kernels.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::type_complexity)]
    fn vector_glus() -> Vec<(
        &'static str,
        unsafe fn(GluActivation, &[f32], &[f32], &mut [f32]),
        unsafe fn(GluActivation, &[f32], &[f32], &[f32], &mut [f32], &mut [f32]),
    )> {
        let mut out: Vec<(
            &'static str,
            unsafe fn(GluActivation, &[f32], &[f32], &mut [f32]),
            unsafe fn(GluActivation, &[f32], &[f32], &[f32], &mut [f32], &mut [f32]),
        )> = vec![];
        if std::arch::is_x86_feature_detected!("avx512f") {
            out.push(("avx512", avx512::glu_forward, avx512::glu_backward));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            out.push(("avx2", avx2::glu_forward, avx2::glu_backward));
        }
        out
    }

    /// Largest `|got − want| / (|want| + scale)` over a buffer: the error relative to the
    /// result or, where that cancels, to the size of the terms it came from.
    fn worst(got: &[f32], want: &[f64], scale: impl Fn(usize) -> f64) -> f64 {
        got.iter()
            .zip(want)
            .enumerate()
            .map(|(i, (&g, &w))| (g as f64 - w).abs() / (w.abs() + scale(i)).max(f64::MIN_POSITIVE))
            .fold(
                0.0,
                |m: f64, e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
            )
    }

    /// Each vector ISA this CPU has (whatever `LMF_SIMD` says) against the f64 formulas on
    /// the same f32 inputs, on every tail length and on saturating gates, with the scalar
    /// f32 formulas measured alongside. The error is relative to the result or, where it
    /// cancels (GELU's `1 + tanh` for negative gates, the derivatives' zeros), to the
    /// size of its terms: `|g·u|` forward, `|d·u|·(1 + |g|)` for dgate, `|d·g|` for dup.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_paths_match_f64() {
        const TOL: f64 = 4e-7;
        let mut rng = Lcg::new(7);
        for len in [1usize, 7, 8, 9, 15, 16, 17, 4099] {
            let mut gate: Vec<f32> = rand_vec(&mut rng, len, 12.0);
            if len >= 16 {
                let specials = [-1e4f32, 1e4, -110.0, -90.0, 30.0, 0.0, -0.0, 1e-30];
                gate[len - specials.len()..].copy_from_slice(&specials);
            }
            let up: Vec<f32> = rand_vec(&mut rng, len, 2.0);
            let dout: Vec<f32> = rand_vec(&mut rng, len, 2.0);
            let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x as f64).collect() };
            let (g64, u64_, d64) = (wide(&gate), wide(&up), wide(&dout));
            let fwd_scale = |i: usize| (g64[i] * u64_[i]).abs();
            let dg_scale = |i: usize| (d64[i] * u64_[i]).abs() * (1.0 + g64[i].abs());
            let du_scale = |i: usize| (d64[i] * g64[i]).abs();
            for act in ACTS {
                let (mut o, mut dg, mut du) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
                glu_forward(act, &g64, &u64_, &mut o);
                glu_backward(act, &d64, &g64, &u64_, &mut dg, &mut du);
                let mut so = vec![0f32; len];
                let (mut sdg, mut sdu) = (vec![0f32; len], vec![0f32; len]);
                for i in 0..len {
                    let (a, da) = act_and_grad(act, gate[i]);
                    so[i] = a * up[i];
                    sdg[i] = dout[i] * up[i] * da;
                    sdu[i] = dout[i] * a;
                }
                let scalar = [
                    worst(&so, &o, fwd_scale),
                    worst(&sdg, &dg, dg_scale),
                    worst(&sdu, &du, du_scale),
                ];
                for (isa, fwd, bwd) in vector_glus() {
                    let mut vo = vec![0f32; len];
                    let (mut vdg, mut vdu) = (vec![0f32; len], vec![0f32; len]);
                    // SAFETY: `vector_glus` lists only ISAs the CPU has; equal lengths.
                    unsafe {
                        fwd(act, &gate, &up, &mut vo);
                        bwd(act, &dout, &gate, &up, &mut vdg, &mut vdu);
                    }
                    let vector = [
                        worst(&vo, &o, fwd_scale),
                        worst(&vdg, &dg, dg_scale),
                        worst(&vdu, &du, du_scale),
                    ];
                    let e3 = |e: [f64; 3]| format!("{:.2e} {:.2e} {:.2e}", e[0], e[1], e[2]);
                    eprintln!(
                        "{act:?} len {len} {isa}: {} (scalar f32 {})",
                        e3(vector),
                        e3(scalar)
                    );
                    for (what, e) in ["out", "dgate", "dup"].iter().zip(vector) {
                        assert!(e <= TOL, "{act:?} {isa} len {len}: {what} off by {e:e}");
                    }
                }
            }
        }
    }

    #[test]
    fn large_parallel_matches_f64() {
        // n spans several chunks (and a ragged tail).
        let n = 3 * CHUNK + 17;
        let mut rng = Lcg::new(4);
        let gate: Vec<f64> = rand_vec(&mut rng, n, 5.0);
        let up: Vec<f64> = rand_vec(&mut rng, n, 1.0);
        for act in ACTS {
            let mut out = vec![0.0; n];
            glu_forward(act, &gate, &up, &mut out);
            let gf: Vec<f32> = gate.iter().map(|&v| v as f32).collect();
            let uf: Vec<f32> = up.iter().map(|&v| v as f32).collect();
            let mut of = vec![0f32; n];
            glu_forward(act, &gf, &uf, &mut of);
            let of: Vec<f64> = of.iter().map(|&v| v as f64).collect();
            assert_close("glu f32", &of, &out, 1e-6, 1e-5);
            assert_eq!(out[n - 1], act_and_grad(act, gate[n - 1]).0 * up[n - 1]);
        }
    }
}
