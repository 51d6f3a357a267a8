//! GPU grouped GEMM (mixture-of-experts) against its CPU twin (`cpu::grouped_gemm`, run in f64
//! on the storage-rounded inputs): forward, dx and dW, for f32/bf16/f16 storage. The layouts
//! cover an expert without rows, groups that cross and end inside 64-row tiles, reductions
//! longer than one 32-wide step with a ragged tail, and widths that break 16-byte alignment
//! (element reads). Outputs are poisoned (NaN) first, so every element must be written — the
//! empty expert's dW included.
//!
//! Each element is judged against the size of its terms (`Σ|a·b|`, sums that cancel), with
//! the storage type's tolerance. Without a CUDA device: prints `skipped: no CUDA device` and
//! passes.

use half::{bf16, f16};
use lmf_kernels::cpu::grouped_gemm as cpu;
use lmf_kernels::cuda::testing::{assert_bounded, gpu_or_skip, tolerance};
use lmf_kernels::cuda::{grouped_gemm as gpu_k, Gpu, GpuFloat};
use lmf_kernels::testing::{rand_vec, Lcg};

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

fn check<T: GpuFloat>(gpu: &Gpu, offsets: &[usize], n: usize, k: usize) {
    let e = offsets.len() - 1;
    let m = offsets[e];
    let mut rng = Lcg::new((m * 131 + n * 7 + k) as u64);
    let round = |v: Vec<f64>| -> Vec<T> { v.iter().map(|&x| T::of_f32(x as f32)).collect() };
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f32() as f64).collect() };
    let f32s = |v: &[T]| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
    let x = round(rand_vec::<f64>(&mut rng, m * k, 1.0));
    let w = round(rand_vec::<f64>(&mut rng, e * n * k, 0.5));
    let dy = round(rand_vec::<f64>(&mut rng, m * n, 1.0));
    let (xf, wf, dyf) = (f64s(&x), f64s(&w), f64s(&dy));

    // the CPU twin in f64, and the same products on |values| for the error bounds
    let mut y_ref = vec![0f64; m * n];
    let mut y_abs = vec![0f64; m * n];
    cpu::grouped_gemm_forward(&mut y_ref, &xf, &wf, offsets, (n, k));
    cpu::grouped_gemm_forward(&mut y_abs, &abs(&xf), &abs(&wf), offsets, (n, k));
    let mut dx_ref = vec![0f64; m * k];
    let mut dx_abs = vec![0f64; m * k];
    cpu::grouped_gemm_backward_x(&mut dx_ref, &dyf, &wf, offsets, (n, k));
    cpu::grouped_gemm_backward_x(&mut dx_abs, &abs(&dyf), &abs(&wf), offsets, (n, k));
    let mut dw_ref = vec![0f64; e * n * k];
    let mut dw_abs = vec![0f64; e * n * k];
    cpu::grouped_gemm_backward_w(&mut dw_ref, &dyf, &xf, offsets, (n, k));
    cpu::grouped_gemm_backward_w(&mut dw_abs, &abs(&dyf), &abs(&xf), offsets, (n, k));

    let (xd, wd, dyd) = (
        gpu.htod(&x).unwrap(),
        gpu.htod(&w).unwrap(),
        gpu.htod(&dy).unwrap(),
    );
    let mut y = gpu.poisoned::<T>(m * n).unwrap();
    gpu_k::grouped_gemm_forward(
        gpu,
        &mut y.as_view_mut(),
        &xd.as_view(),
        &wd.as_view(),
        offsets,
        (n, k),
    )
    .unwrap();
    let mut dx = gpu.poisoned::<T>(m * k).unwrap();
    gpu_k::grouped_gemm_backward_x(
        gpu,
        &mut dx.as_view_mut(),
        &dyd.as_view(),
        &wd.as_view(),
        offsets,
        (n, k),
    )
    .unwrap();
    let mut dw = gpu.poisoned::<T>(e * n * k).unwrap();
    gpu_k::grouped_gemm_backward_w(
        gpu,
        &mut dw.as_view_mut(),
        &dyd.as_view(),
        &xd.as_view(),
        offsets,
        (n, k),
    )
    .unwrap();
    let tol = tolerance(T::SUFFIX);
    let what = format!("grouped_gemm {offsets:?} n={n} k={k} {}", T::SUFFIX);
    let got = |s| f32s(&gpu.dtoh(s).unwrap());
    assert_bounded(&format!("{what} y"), &got(&y), &y_ref, &y_abs, tol);
    assert_bounded(&format!("{what} dx"), &got(&dx), &dx_ref, &dx_abs, tol);
    assert_bounded(&format!("{what} dw"), &got(&dw), &dw_ref, &dw_abs, tol);
}

#[test]
fn grouped_gemm_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("grouped_gemm_matches_cpu_twin") else {
        return;
    };
    let layouts: [(&[usize], usize, usize); 5] = [
        // one expert, one row
        (&[0, 1], 8, 16),
        // an empty expert; groups of 3, 77 (crosses a tile), 1; n, k past one tile
        (&[0, 3, 3, 80, 81], 72, 100),
        // odd widths: element reads instead of 16-byte vectors
        (&[0, 5, 70, 70, 131], 37, 45),
        // Qwen3-MoE-like: 8 experts, 257 rows, hidden 128 → 2·intermediate 96
        (&[0, 40, 41, 90, 150, 150, 200, 230, 257], 96, 128),
        // every expert empty but the last
        (&[0, 0, 0, 65], 64, 32),
    ];
    for (offsets, n, k) in layouts {
        check::<f32>(&gpu, offsets, n, k);
        check::<bf16>(&gpu, offsets, n, k);
        check::<f16>(&gpu, offsets, n, k);
    }
}

#[test]
fn grouped_gemm_rejects_bad_offsets() {
    let Some(gpu) = gpu_or_skip("grouped_gemm_rejects_bad_offsets") else {
        return;
    };
    let x = gpu.htod(&[1f32; 12]).unwrap();
    let w = gpu.htod(&[1f32; 2 * 2 * 3]).unwrap();
    let mut y = gpu.poisoned::<f32>(8).unwrap();
    // 4 rows, but offsets end at 3
    let err = gpu_k::grouped_gemm_forward(
        &gpu,
        &mut y.as_view_mut(),
        &x.as_view(),
        &w.as_view(),
        &[0, 2, 3],
        (2, 3),
    )
    .unwrap_err();
    assert!(format!("{err}").contains("offsets"), "{err}");
}
