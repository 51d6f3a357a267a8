//! GPU MXFP4 experts against their CPU twin (`cpu::quant::mxfp4`): the dequantized rows equal
//! the CPU's bit for bit in f32 (and rounded once in bf16/f16), over every code and the
//! scales 0 (2^-127), 1, 127 and 254; the grouped dequant-matmul and its input gradient match
//! the CPU twin run in f64 (an expert without rows, groups of one row and past one tile).
//! Outputs are poisoned first. Without a CUDA device: prints `skipped: no CUDA device` and
//! passes.

use half::{bf16, f16};
use lmf_kernels::cpu::quant::mxfp4::{self as cpu, Mxfp4Experts};
use lmf_kernels::cuda::mxfp4::{
    dequantize_mxfp4_rows, grouped_dequant_matmul, grouped_dequant_matmul_t, GpuMxfp4Experts,
};
use lmf_kernels::cuda::testing::{assert_bounded, gpu_or_skip, tolerance};
use lmf_kernels::cuda::{BlasFloat, Gpu};
use lmf_kernels::testing::{rand_vec, Lcg};

/// A random stack: every code appears; scales near 127 (values of order 1), plus the edge
/// scales 0, 1 and 254 in the first blocks.
fn stack(experts: usize, rows: usize, cols: usize, seed: u64) -> Mxfp4Experts {
    let mut rng = Lcg::new(seed);
    let nb = experts * rows * cols / 32;
    let blocks: Vec<u8> = (0..nb * 16).map(|_| rng.below(256) as u8).collect();
    let mut scales: Vec<u8> = (0..nb).map(|_| 124 + rng.below(5) as u8).collect();
    for (i, s) in [0u8, 1, 254].into_iter().enumerate().take(nb) {
        scales[i] = s;
    }
    Mxfp4Experts::new(experts, rows, cols, blocks, scales).unwrap()
}

fn dequant_check<T: BlasFloat>(gpu: &Gpu, w: &Mxfp4Experts) {
    let g = GpuMxfp4Experts::upload(gpu, w).unwrap();
    let all = w.dequantize();
    let per = w.rows * w.cols;
    for e in 0..w.experts {
        // rows 1.. of expert e (an offset start)
        let n = (w.rows - 1) * w.cols;
        let mut out = gpu.poisoned::<T>(n).unwrap();
        dequantize_mxfp4_rows(gpu, &g, e, 1, &mut out.as_view_mut()).unwrap();
        let got = gpu.dtoh(&out).unwrap();
        let want = &all[e * per + w.cols..(e + 1) * per];
        for (i, (a, &b)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                a.to_f32().to_bits(),
                T::of_f32(b).to_f32().to_bits(),
                "expert {e} element {i} ({})",
                T::SUFFIX
            );
        }
    }
}

fn matmul_check<T: BlasFloat>(gpu: &Gpu, w: &Mxfp4Experts, offsets: &[usize]) {
    // values of order 1 only (the edge scales make huge / tiny weights)
    let w = Mxfp4Experts::new(
        w.experts,
        w.rows,
        w.cols,
        w.blocks.clone(),
        w.scales.iter().map(|&s| s.clamp(124, 128)).collect(),
    )
    .unwrap();
    let (n, k) = (w.rows, w.cols);
    let m = *offsets.last().unwrap();
    let mut rng = Lcg::new(m as u64 + 5);
    let round = |v: Vec<f64>| -> Vec<T> { v.iter().map(|&x| T::of_f32(x as f32)).collect() };
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f32() as f64).collect() };
    let x = round(rand_vec::<f64>(&mut rng, m * k, 1.0));
    let dy = round(rand_vec::<f64>(&mut rng, m * n, 1.0));
    let (xf, dyf) = (f64s(&x), f64s(&dy));
    let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
    let mut y_ref = vec![0f64; m * n];
    cpu::grouped_dequant_matmul(&mut y_ref, &xf, &w, offsets);
    let mut dx_ref = vec![0f64; m * k];
    cpu::grouped_dequant_matmul_t(&mut dx_ref, &dyf, &w, offsets);
    // bounds: the same products on |x|, |dy| and |W| (codes 0..7 are the magnitudes)
    let w_abs = Mxfp4Experts {
        blocks: w.blocks.iter().map(|b| b & 0x77).collect(),
        ..w.clone()
    };
    let mut y_abs = vec![0f64; m * n];
    cpu::grouped_dequant_matmul(&mut y_abs, &abs(&xf), &w_abs, offsets);
    let mut dx_abs = vec![0f64; m * k];
    cpu::grouped_dequant_matmul_t(&mut dx_abs, &abs(&dyf), &w_abs, offsets);

    let g = GpuMxfp4Experts::upload(gpu, &w).unwrap();
    let (xd, dyd) = (gpu.htod(&x).unwrap(), gpu.htod(&dy).unwrap());
    let mut y = gpu.poisoned::<T>(m * n).unwrap();
    grouped_dequant_matmul(gpu, &xd.as_view(), &g, offsets, &mut y.as_view_mut()).unwrap();
    let mut dx = gpu.poisoned::<T>(m * k).unwrap();
    grouped_dequant_matmul_t(gpu, &dyd.as_view(), &g, offsets, &mut dx.as_view_mut()).unwrap();
    let f32s = |v: Vec<T>| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
    let tol = tolerance(T::SUFFIX);
    let what = format!("mxfp4 {offsets:?} {}", T::SUFFIX);
    assert_bounded(
        &format!("{what} y"),
        &f32s(gpu.dtoh(&y).unwrap()),
        &y_ref,
        &y_abs,
        tol,
    );
    assert_bounded(
        &format!("{what} dx"),
        &f32s(gpu.dtoh(&dx).unwrap()),
        &dx_ref,
        &dx_abs,
        tol,
    );
}

#[test]
fn mxfp4_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("mxfp4_matches_cpu_twin") else {
        return;
    };
    let w = stack(3, 48, 96, 7);
    dequant_check::<f32>(&gpu, &w);
    dequant_check::<bf16>(&gpu, &w);
    dequant_check::<f16>(&gpu, &w);
    for offsets in [&[0usize, 5, 5, 40][..], &[0, 1, 9, 130]] {
        matmul_check::<f32>(&gpu, &w, offsets);
        matmul_check::<bf16>(&gpu, &w, offsets);
    }
}
