//! Helpers for the GPU tests (`kernels/tests/gpu_*.rs`, runtime and autograd GPU tests):
//! get device 0 or skip, and compare a GPU result with its CPU twin.

use super::gpu::Gpu;
use std::sync::Arc;

/// Device 0, or `None` after printing `skipped: no CUDA device (<why>)`: GPU tests pass
/// without a GPU and say so.
pub fn gpu_or_skip(test: &str) -> Option<Arc<Gpu>> {
    match Gpu::get(0) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("{test}: skipped: no CUDA device ({e})");
            None
        }
    }
}

/// Relative-error bound per storage dtype, as the GPU tests use: fp32 1e-5, bf16 1e-2,
/// f16 2e-3.
pub fn tolerance(dtype_suffix: &str) -> f64 {
    match dtype_suffix {
        "f32" => 1e-5,
        "bf16" => 1e-2,
        _ => 2e-3,
    }
}

/// Asserts `got ≈ want`: `|g − w| ≤ rel · max(|w|, scale)` where `scale` is a tenth of the
/// largest `|w|`: entries far below the tensor's size come out of sums that cancel, and a
/// different summation order (block reductions vs a serial loop) moves them by a few ulps of
/// the terms, not of the result; they are judged against the tensor's size instead.
/// NaN or infinity in `got` never passes. Names `what` and the first failing index.
pub fn assert_rel_close(what: &str, got: &[f32], want: &[f64], rel: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values vs {} expected",
        got.len(),
        want.len()
    );
    let amax = want.iter().fold(0f64, |m, w| m.max(w.abs()));
    let floor = (amax * 0.1).max(1e-30);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        assert!(g.is_finite(), "{what}[{i}]: got {g} (want {w})");
        let err = (g - w).abs();
        assert!(
            err <= rel * w.abs().max(floor),
            "{what}[{i}]: got {g}, want {w} (rel err {:.3e} > {rel:.0e})",
            err / w.abs().max(floor)
        );
    }
}

/// Asserts `|g − w| ≤ rel·(max(|w|, 1e-3·max|w|) + abs[i])` for every element, where `abs[i]`
/// is the size of the terms summed into element `i` (long sums that cancel); NaN never passes.
pub fn assert_bounded(what: &str, got: &[f32], want: &[f64], abs: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(abs.len(), want.len(), "{what}: bound length");
    let amax = want.iter().fold(0f64, |m, w| m.max(w.abs()));
    let floor = (amax * 1e-3).max(1e-30);
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(abs).enumerate() {
        let g = g as f64;
        assert!(g.is_finite(), "{what}[{i}]: got {g} (want {w})");
        let bound = rel * (w.abs().max(floor) + s);
        assert!(
            (g - w).abs() <= bound,
            "{what}[{i}]: got {g}, want {w} (err {:.3e} > bound {bound:.3e})",
            (g - w).abs()
        );
    }
}
