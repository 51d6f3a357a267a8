//! GPU SwiGLU/GeGLU against their CPU twin (`cpu::swiglu`, run in f64 on the storage-rounded
//! inputs), forward and backward, for both activations and f32/bf16/f16 storage, on sizes from
//! 1 to past the launcher's grid-stride cap. Outputs are poisoned (NaN) first.
//!
//! bf16/f16 use `assert_rel_close` with `tolerance`. f32 uses the same 1e-5 relative to
//! `max(|want|, scale)` where `scale` is the size of the terms that make the element
//! (`|up|·(1+|g|)` for out, `|dout|·(1+|g|)` for dup, `|dout·up|·(1+|g|(1+0.135 g²))` for
//! dgate): where `act'(g)` or GELU's `1 + tanh` cancel, no fp32 evaluation (the CPU twin's in
//! f32 included) is within 1e-5 of the f64 value itself.
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.

use half::{bf16, f16};
use lmf_kernels::cpu::swiglu::{self as cpu, GluActivation};
use lmf_kernels::cuda::testing::{assert_rel_close, gpu_or_skip, tolerance};
use lmf_kernels::cuda::{glu as gpu_k, Gpu, GpuFloat};
use lmf_kernels::testing::{rand_vec, Lcg};

/// `|got − want| ≤ rel · max(|want|, scale[i])`; NaN or infinity never passes.
fn assert_close_scaled(what: &str, got: &[f32], want: &[f64], scale: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let g = g as f64;
        assert!(g.is_finite(), "{what}[{i}]: got {g} (want {w})");
        let bound = rel * w.abs().max(s).max(1e-30);
        assert!(
            (g - w).abs() <= bound,
            "{what}[{i}]: got {g}, want {w} (err {:.3e} > {bound:.3e})",
            (g - w).abs()
        );
    }
}

fn check<T: GpuFloat>(gpu: &Gpu, act: GluActivation, n: usize) {
    let mut rng = Lcg::new(n as u64 * 7 + act as u64);
    let round = |v: Vec<f64>| -> Vec<T> { v.iter().map(|&x| T::of_f32(x as f32)).collect() };
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f32() as f64).collect() };
    let f32s = |v: &[T]| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
    let gate = round(rand_vec::<f64>(&mut rng, n, 4.0));
    let up = round(rand_vec::<f64>(&mut rng, n, 2.0));
    let dout = round(rand_vec::<f64>(&mut rng, n, 1.0));
    let (gf, uf, df) = (f64s(&gate), f64s(&up), f64s(&dout));

    let mut out_ref = vec![0f64; n];
    cpu::glu_forward(act, &gf, &uf, &mut out_ref);
    let (mut dg_ref, mut du_ref) = (vec![0f64; n], vec![0f64; n]);
    cpu::glu_backward(act, &df, &gf, &uf, &mut dg_ref, &mut du_ref);

    let (gd, ud, dd) = (
        gpu.htod(&gate).unwrap(),
        gpu.htod(&up).unwrap(),
        gpu.htod(&dout).unwrap(),
    );
    let mut out = gpu.poisoned::<T>(n).unwrap();
    gpu_k::glu_forward(
        gpu,
        act,
        &gd.as_view(),
        &ud.as_view(),
        &mut out.as_view_mut(),
    )
    .unwrap();
    let (mut dg, mut du) = (gpu.poisoned::<T>(n).unwrap(), gpu.poisoned::<T>(n).unwrap());
    gpu_k::glu_backward(
        gpu,
        act,
        &dd.as_view(),
        &gd.as_view(),
        &ud.as_view(),
        &mut dg.as_view_mut(),
        &mut du.as_view_mut(),
    )
    .unwrap();
    let (out, dg, du) = (
        f32s(&gpu.dtoh(&out).unwrap()),
        f32s(&gpu.dtoh(&dg).unwrap()),
        f32s(&gpu.dtoh(&du).unwrap()),
    );
    let tol = tolerance(T::SUFFIX);
    let what = format!("glu {act:?} n={n} {}", T::SUFFIX);
    if T::SUFFIX == "f32" {
        let s_out: Vec<f64> = gf
            .iter()
            .zip(&uf)
            .map(|(g, u)| u.abs() * (1.0 + g.abs()))
            .collect();
        let s_du: Vec<f64> = gf
            .iter()
            .zip(&df)
            .map(|(g, d)| d.abs() * (1.0 + g.abs()))
            .collect();
        let s_dg: Vec<f64> = gf
            .iter()
            .zip(&uf)
            .zip(&df)
            .map(|((g, u), d)| (d * u).abs() * (1.0 + g.abs() * (1.0 + 0.135 * g * g)))
            .collect();
        assert_close_scaled(&format!("{what} out"), &out, &out_ref, &s_out, tol);
        assert_close_scaled(&format!("{what} dgate"), &dg, &dg_ref, &s_dg, tol);
        assert_close_scaled(&format!("{what} dup"), &du, &du_ref, &s_du, tol);
    } else {
        assert_rel_close(&format!("{what} out"), &out, &out_ref, tol);
        assert_rel_close(&format!("{what} dgate"), &dg, &dg_ref, tol);
        assert_rel_close(&format!("{what} dup"), &du, &du_ref, tol);
    }
}

#[test]
fn glu_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("glu_matches_cpu_twin") else {
        return;
    };
    for act in [GluActivation::Silu, GluActivation::GeluTanh] {
        for n in [1, 2, 7, 64, 130, 300, 4096, 4096 * 11 + 5] {
            check::<f32>(&gpu, act, n);
            check::<bf16>(&gpu, act, n);
            check::<f16>(&gpu, act, n);
        }
        // Past 256 threads x 65536 blocks: the grid-stride loop's second lap.
        check::<bf16>(&gpu, act, 256 * 65536 + 1001);
    }
}

#[test]
fn glu_saturates_without_nan() {
    let Some(gpu) = gpu_or_skip("glu_saturates_without_nan") else {
        return;
    };
    let gate = gpu.htod(&[-1e4f32, -100.0, 100.0, 1e4]).unwrap();
    let ones = gpu.htod(&[1f32; 4]).unwrap();
    for act in [GluActivation::Silu, GluActivation::GeluTanh] {
        let mut out = gpu.poisoned::<f32>(4).unwrap();
        gpu_k::glu_forward(
            &gpu,
            act,
            &gate.as_view(),
            &ones.as_view(),
            &mut out.as_view_mut(),
        )
        .unwrap();
        let (mut dg, mut du) = (
            gpu.poisoned::<f32>(4).unwrap(),
            gpu.poisoned::<f32>(4).unwrap(),
        );
        gpu_k::glu_backward(
            &gpu,
            act,
            &ones.as_view(),
            &gate.as_view(),
            &ones.as_view(),
            &mut dg.as_view_mut(),
            &mut du.as_view_mut(),
        )
        .unwrap();
        let (out, dg) = (gpu.dtoh(&out).unwrap(), gpu.dtoh(&dg).unwrap());
        assert!(out.iter().chain(&dg).all(|v| v.is_finite()), "{act:?}");
        assert!(
            out[0].abs() < 1e-6 && (out[3] - 1e4).abs() < 1e-2,
            "{act:?} {out:?}"
        );
        assert!(
            dg[0].abs() < 1e-6 && (dg[3] - 1.0).abs() < 1e-6,
            "{act:?} {dg:?}"
        );
    }
}
