//! GPU RMSNorm against its CPU twin (`cpu::rmsnorm`, run in f64) on random inputs of several
//! shapes, odd sizes included, for f32/bf16/f16 storage. Outputs are poisoned (NaN) first.
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.

use half::{bf16, f16};
use lmf_kernels::cpu::rmsnorm as cpu;
use lmf_kernels::cuda::testing::{assert_rel_close, gpu_or_skip, tolerance};
use lmf_kernels::cuda::{rmsnorm as gpu_k, GpuFloat};
use lmf_kernels::testing::{rand_vec, Lcg};

fn check<T: GpuFloat>(gpu: &lmf_kernels::cuda::Gpu, rows: usize, dim: usize, offset: f64) {
    let mut rng = Lcg::new((rows * 1000 + dim) as u64);
    // Inputs rounded to the storage type first, so CPU and GPU see the same numbers.
    let round = |v: Vec<f64>| -> Vec<T> { v.iter().map(|&x| T::of_f32(x as f32)).collect() };
    let x = round(rand_vec::<f64>(&mut rng, rows * dim, 2.0));
    let w = round(rand_vec::<f64>(&mut rng, dim, 1.0));
    let dy = round(rand_vec::<f64>(&mut rng, rows * dim, 1.0));
    let dw0 = round(rand_vec::<f64>(&mut rng, dim, 0.5));
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f32() as f64).collect() };
    let (xf, wf, dyf) = (f64s(&x), f64s(&w), f64s(&dy));

    let (mut y_ref, mut rstd_ref) = (vec![0f64; rows * dim], vec![0f64; rows]);
    cpu::rmsnorm_forward(&xf, &wf, rows, dim, 1e-6, offset, &mut y_ref, &mut rstd_ref);
    let (mut dx_ref, mut dw_ref) = (vec![0f64; rows * dim], f64s(&dw0));
    cpu::rmsnorm_backward(
        &dyf,
        &xf,
        &wf,
        &rstd_ref,
        rows,
        dim,
        offset,
        &mut dx_ref,
        &mut dw_ref,
    );

    let (xd, wd, dyd) = (
        gpu.htod(&x).unwrap(),
        gpu.htod(&w).unwrap(),
        gpu.htod(&dy).unwrap(),
    );
    let mut y = gpu.poisoned::<T>(rows * dim).unwrap();
    let mut rstd = gpu.poisoned::<f32>(rows).unwrap();
    gpu_k::rmsnorm_forward(
        gpu,
        &xd.as_view(),
        &wd.as_view(),
        rows,
        dim,
        1e-6,
        offset,
        &mut y.as_view_mut(),
        &mut rstd.as_view_mut(),
    )
    .unwrap();
    let mut dx = gpu.poisoned::<T>(rows * dim).unwrap();
    let mut dw = gpu.htod(&dw0).unwrap();
    gpu_k::rmsnorm_backward(
        gpu,
        &dyd.as_view(),
        &xd.as_view(),
        &wd.as_view(),
        &rstd.as_view(),
        rows,
        dim,
        offset,
        &mut dx.as_view_mut(),
        &mut dw.as_view_mut(),
    )
    .unwrap();
    let tol = tolerance(T::SUFFIX);
    let host = |s: &cudarc::driver::CudaSlice<T>| -> Vec<f32> {
        gpu.dtoh(s).unwrap().iter().map(|v| v.to_f32()).collect()
    };
    let what = format!("rmsnorm {rows}x{dim} {}", T::SUFFIX);
    assert_rel_close(&format!("{what} y"), &host(&y), &y_ref, tol);
    assert_rel_close(
        &format!("{what} rstd"),
        &gpu.dtoh(&rstd).unwrap(),
        &rstd_ref,
        1e-5,
    );
    assert_rel_close(&format!("{what} dx"), &host(&dx), &dx_ref, tol);
    assert_rel_close(&format!("{what} dw"), &host(&dw), &dw_ref, tol);
}

#[test]
fn rmsnorm_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("rmsnorm_matches_cpu_twin") else {
        return;
    };
    for &(rows, dim, offset) in &[
        (1, 1, 0.0),
        (3, 17, 0.0),
        (64, 4096, 0.0),
        (129, 1000, 1.0),
        (2048, 128, 0.0),
    ] {
        check::<f32>(&gpu, rows, dim, offset);
        check::<bf16>(&gpu, rows, dim, offset);
        check::<f16>(&gpu, rows, dim, offset);
    }
}
