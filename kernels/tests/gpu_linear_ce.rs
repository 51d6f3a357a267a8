//! GPU fused linear cross-entropy against its CPU twin (`cpu::linear_ce`, run in f64 on the
//! storage-rounded inputs), for f32/bf16/f16 storage, odd sizes (1, 7, 300 tokens; hidden 64
//! and 100; vocabularies 1000 and 32003), ignored tokens (a whole prompt-only chunk included),
//! chunks that do not divide the token count, and label smoothing + z-loss + softcap. `dx` is
//! poisoned (NaN) first; `dw` starts from random values it must accumulate onto.
//!
//! The GPU keeps the chunk's logits, then dlogits, in the storage type (see
//! `cuda::linear_ce`), and rounds `dw` to it after every chunk, exactly where the CPU twin run
//! in `T` rounds. So the reference evaluates the twin at those same rounding points: logits
//! `round_T(x·wᵀ)` (f64 product), the twin's row math on them (one twin call per token with
//! hidden = 1, `w` = that row's logits, which yields the row's loss and, as its `dw`, the row's
//! dlogits), dlogits rounded to `T`, then `dx = dl·w` and `dw = round_T(dw + dl_cᵀ·x_c)` per chunk
//! in f64. The loss (one scalar) is also compared with the plain twin on the unrounded-logits
//! path.
//!
//! Gradients are compared element-wise with the dot-product error bound
//! `|got − want| ≤ tol·(max(|want|, 1e-3·max|want|) + Σ_k |a_k·b_k|)`: an output that cancels to
//! near zero is judged against the size of the terms that cancelled (fp32 accumulation over a
//! 32k vocabulary, and the rare 1-ulp flip of a rounded logit, are errors relative to those
//! terms, not to the result). Without a CUDA device: prints `skipped: no CUDA device`, passes.

use half::{bf16, f16};
use lmf_kernels::cpu::gemm::matmul;
use lmf_kernels::cpu::linear_ce::{self as cpu, CeOptions};
use lmf_kernels::cuda::testing::{assert_bounded, assert_rel_close, gpu_or_skip, tolerance};
use lmf_kernels::cuda::{linear_ce as gk, BlasFloat, Gpu};
use lmf_kernels::testing::{rand_vec, Lcg};

fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

fn abs(a: &[f64]) -> Vec<f64> {
    a.iter().map(|v| v.abs()).collect()
}

struct Reference {
    loss: f64,       // twin on round_T(logits)
    loss_plain: f64, // twin on the f64 logits
    n_valid: usize,
    dx: Vec<f64>,
    dx_abs: Vec<f64>,
    dw: Vec<f64>,
    dw_abs: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
fn reference<T: BlasFloat>(
    x: &[f64],
    w: &[f64],
    lab: &[i64],
    (n, h, v): (usize, usize, usize),
    o: &CeOptions,
    scale: f64,
    chunk: usize,
    dw0: &[f64],
) -> Reference {
    let rt = |a: f64| T::of_f32(a as f32).to_f32() as f64; // round to the storage type
    let plain = cpu::linear_ce_forward(x, w, lab, n, h, v, o);
    // logits = round_T(x·wᵀ): [n, v]
    let z: Vec<f64> = matmul(x, &transpose(w, v, h), n, h, v)
        .into_iter()
        .map(rt)
        .collect();
    // dlogits row by row through the twin (hidden = 1: w = the row's logits, dw = dlogits).
    let mut dl = vec![0.0; n * v];
    let mut loss = 0.0;
    for t in 0..n {
        let row = &z[t * v..(t + 1) * v];
        let r = cpu::linear_ce_fwd_bwd(
            &[1.0],
            row,
            &lab[t..t + 1],
            1,
            1,
            v,
            o,
            scale,
            None,
            Some(&mut dl[t * v..(t + 1) * v]),
        );
        loss += r.loss_sum;
    }
    let dl: Vec<f64> = dl.into_iter().map(rt).collect();
    let dx = matmul(&dl, w, n, v, h);
    let dx_abs = matmul(&abs(&dl), &abs(w), n, v, h);
    // dw += dl_cᵀ·x_c per chunk with valid tokens, rounded to T after each chunk.
    let mut dw = dw0.to_vec();
    for c0 in (0..n).step_by(chunk) {
        let m = chunk.min(n - c0);
        if lab[c0..c0 + m].iter().all(|&y| y == o.ignore_index) {
            continue;
        }
        let dlt = transpose(&dl[c0 * v..(c0 + m) * v], m, v); // [v, m]
        let g = matmul(&dlt, &x[c0 * h..(c0 + m) * h], v, m, h);
        dw.iter_mut().zip(&g).for_each(|(d, g)| *d = rt(*d + g));
    }
    let g_abs = matmul(&abs(&transpose(&dl, n, v)), &abs(x), v, n, h);
    let dw_abs = dw0.iter().zip(&g_abs).map(|(a, b)| a.abs() + b).collect();
    Reference {
        loss,
        loss_plain: plain.loss_sum,
        n_valid: plain.n_valid,
        dx,
        dx_abs,
        dw,
        dw_abs,
    }
}

/// Labels: the first `prompt` tokens and about every sixth other one ignored (-100).
fn labels(rng: &mut Lcg, n: usize, v: usize, prompt: usize) -> Vec<i64> {
    (0..n)
        .map(|t| {
            if t < prompt || t % 6 == 5 {
                -100
            } else {
                rng.below(v) as i64
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn check<T: BlasFloat>(
    gpu: &Gpu,
    n: usize,
    h: usize,
    v: usize,
    prompt: usize,
    o: CeOptions,
    with_dx: bool,
) {
    let what = format!(
        "linear_ce n={n} h={h} v={v} chunk={} {:?} {}",
        o.chunk,
        (o.label_smoothing, o.z_loss, o.softcap),
        T::SUFFIX
    );
    let mut rng = Lcg::new((n * 7919 + h * 31 + v) as u64);
    let round = |a: Vec<f64>| -> Vec<T> { a.iter().map(|&y| T::of_f32(y as f32)).collect() };
    let f64s = |a: &[T]| -> Vec<f64> { a.iter().map(|y| y.to_f32() as f64).collect() };
    let x = round(rand_vec::<f64>(&mut rng, n * h, 1.0));
    let w = round(rand_vec::<f64>(&mut rng, v * h, 0.5));
    let lab = labels(&mut rng, n, v, prompt);
    let n_valid = lab.iter().filter(|&&y| y != o.ignore_index).count();
    // f16 cannot hold mean-reduced weight gradients (subnormal): it uses the sum reduction.
    let scale = if T::SUFFIX == "f16" {
        1.0f32
    } else {
        1.0 / n_valid.max(1) as f32
    };
    let dw0 = round(rand_vec::<f64>(&mut rng, v * h, 0.5 * scale as f64));
    let (xf, wf, dw0f) = (f64s(&x), f64s(&w), f64s(&dw0));
    let chunk = gk::chunk_rows(n, v, &o);
    let want = reference::<T>(&xf, &wf, &lab, (n, h, v), &o, scale as f64, chunk, &dw0f);
    assert_eq!(want.n_valid, n_valid);

    let (xd, wd, labd) = (
        gpu.htod(&x).unwrap(),
        gpu.htod(&w).unwrap(),
        gpu.htod(&lab).unwrap(),
    );
    let mut dx = gpu.poisoned::<T>(n * h).unwrap();
    let mut dw = gpu.htod(&dw0).unwrap();
    let got = gk::linear_ce_fwd_bwd(
        gpu,
        &xd.as_view(),
        &wd.as_view(),
        &labd.as_view(),
        n,
        h,
        v,
        &o,
        scale,
        with_dx.then_some(&mut dx.as_view_mut()),
        Some(&mut dw.as_view_mut()),
    )
    .unwrap();
    let tol = tolerance(T::SUFFIX);
    assert_eq!(got.n_valid, n_valid, "{what}: n_valid");
    let loss = [got.loss_sum as f32];
    assert_rel_close(&format!("{what} loss"), &loss, &[want.loss], tol);
    assert_rel_close(
        &format!("{what} loss vs f64 logits"),
        &loss,
        &[want.loss_plain],
        tol,
    );
    let host = |s: &cudarc::driver::CudaSlice<T>| -> Vec<f32> {
        gpu.dtoh(s).unwrap().iter().map(|y| y.to_f32()).collect()
    };
    if with_dx {
        assert_bounded(
            &format!("{what} dx"),
            &host(&dx),
            &want.dx,
            &want.dx_abs,
            tol,
        );
    } else {
        assert!(
            gpu.dtoh(&dx).unwrap().iter().all(|y| y.to_f32().is_nan()),
            "{what}: dx written though not requested"
        );
    }
    assert_bounded(
        &format!("{what} dw"),
        &host(&dw),
        &want.dw,
        &want.dw_abs,
        tol,
    );

    // Forward only: the same loss (same GEMM, same row kernel), no outputs.
    let fwd = gk::linear_ce_forward(
        gpu,
        &xd.as_view(),
        &wd.as_view(),
        &labd.as_view(),
        n,
        h,
        v,
        &o,
    )
    .unwrap();
    assert_eq!(fwd.n_valid, n_valid, "{what}: forward n_valid");
    assert_rel_close(
        &format!("{what} forward loss"),
        &[fwd.loss_sum as f32],
        &[got.loss_sum],
        1e-6,
    );
    // Deterministic: a second forward gives the same bits.
    let again = gk::linear_ce_forward(
        gpu,
        &xd.as_view(),
        &wd.as_view(),
        &labd.as_view(),
        n,
        h,
        v,
        &o,
    )
    .unwrap();
    assert_eq!(
        again.loss_sum.to_bits(),
        fwd.loss_sum.to_bits(),
        "{what}: loss not reproducible"
    );
}

fn fancy(chunk: usize) -> CeOptions {
    CeOptions {
        label_smoothing: 0.1,
        z_loss: 1e-3,
        softcap: Some(3.0),
        chunk,
        ..Default::default()
    }
}

fn plain(chunk: usize) -> CeOptions {
    CeOptions {
        chunk,
        ..Default::default()
    }
}

fn run_all<T: BlasFloat>(gpu: &Gpu) {
    check::<T>(gpu, 1, 64, 1000, 0, plain(0), true);
    check::<T>(gpu, 7, 100, 1000, 0, fancy(3), true);
    check::<T>(gpu, 7, 64, 1000, 0, plain(4), false); // dw only
    check::<T>(gpu, 300, 64, 32003, 70, plain(64), true); // chunk 0 is prompt-only
    check::<T>(gpu, 300, 100, 1000, 10, fancy(7), true);
    check::<T>(gpu, 300, 100, 32003, 0, fancy(0), true); // automatic chunk
}

#[test]
fn linear_ce_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("linear_ce_matches_cpu_twin") else {
        return;
    };
    run_all::<f32>(&gpu);
    run_all::<bf16>(&gpu);
    run_all::<f16>(&gpu);
}

#[test]
fn linear_ce_all_ignored_and_bad_label() {
    let Some(gpu) = gpu_or_skip("linear_ce_all_ignored_and_bad_label") else {
        return;
    };
    let (n, h, v) = (7, 64, 1000);
    let mut rng = Lcg::new(5);
    let x: Vec<f32> = rand_vec(&mut rng, n * h, 1.0);
    let w: Vec<f32> = rand_vec(&mut rng, v * h, 0.5);
    let dw0: Vec<f32> = rand_vec(&mut rng, v * h, 0.5);
    let (xd, wd) = (gpu.htod(&x).unwrap(), gpu.htod(&w).unwrap());
    let o = CeOptions {
        ignore_index: -1,
        chunk: 3,
        ..Default::default()
    };
    // Every token ignored: zero loss, zero dx, dw untouched.
    let labd = gpu.htod(&vec![-1i64; n]).unwrap();
    let mut dx = gpu.poisoned::<f32>(n * h).unwrap();
    let mut dw = gpu.htod(&dw0).unwrap();
    let r = gk::linear_ce_fwd_bwd(
        &gpu,
        &xd.as_view(),
        &wd.as_view(),
        &labd.as_view(),
        n,
        h,
        v,
        &o,
        1.0,
        Some(&mut dx.as_view_mut()),
        Some(&mut dw.as_view_mut()),
    )
    .unwrap();
    assert_eq!(
        r,
        cpu::CeResult {
            loss_sum: 0.0,
            n_valid: 0
        }
    );
    assert!(gpu.dtoh(&dx).unwrap().iter().all(|&g| g == 0.0));
    assert_eq!(gpu.dtoh(&dw).unwrap(), dw0);
    // An out-of-range label is an error that names it, and leaves dw untouched.
    let labd = gpu.htod(&[0i64, -1, 1000, 3, 4, 5, 6]).unwrap();
    let e = gk::linear_ce_fwd_bwd(
        &gpu,
        &xd.as_view(),
        &wd.as_view(),
        &labd.as_view(),
        n,
        h,
        v,
        &o,
        1.0,
        None,
        Some(&mut dw.as_view_mut()),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("label 1000 of token 2"),
        "unexpected error: {e}"
    );
    assert_eq!(gpu.dtoh(&dw).unwrap(), dw0);
    // The workspace is the chunk buffer plus one fp32 per token.
    assert_eq!(
        gk::linear_ce_workspace_bytes::<f32>(n, v, &o),
        3 * v * 4 + n * 4
    );
}

#[test]
fn workspace_and_auto_chunk_need_no_device() {
    let o = CeOptions::default();
    assert_eq!(gk::auto_chunk(128_256), 512);
    assert_eq!(gk::chunk_rows(8192, 128_256, &o), 512);
    assert_eq!(gk::chunk_rows(100, 128_256, &o), 100);
    assert_eq!(gk::auto_chunk(1 << 30), 1);
    // The bench's case: 8k tokens, 128k vocabulary, bf16: a 128 MiB chunk buffer.
    assert_eq!(
        gk::linear_ce_workspace_bytes::<bf16>(8192, 128_256, &o),
        512 * 128_256 * 2 + 8192 * 4
    );
    assert_eq!(gk::linear_ce_workspace_bytes::<bf16>(0, 128_256, &o), 0);
}

#[test]
fn linear_ce_peak_memory_is_o_chunk_times_vocab() {
    let Some(gpu) = gpu_or_skip("linear_ce_peak_memory_is_o_chunk_times_vocab") else {
        return;
    };
    // Full logits would be 2048 × 32003 × 4 B = 262 MB; the chunk buffer is 8.2 MB.
    let (n, h, v) = (2048, 64, 32003);
    let mut rng = Lcg::new(9);
    let x: Vec<f32> = rand_vec(&mut rng, n * h, 1.0);
    let w: Vec<f32> = rand_vec(&mut rng, v * h, 0.5);
    let lab: Vec<i64> = (0..n).map(|_| rng.below(v) as i64).collect();
    let (xd, wd, labd) = (
        gpu.htod(&x).unwrap(),
        gpu.htod(&w).unwrap(),
        gpu.htod(&lab).unwrap(),
    );
    let mut dx = gpu.zeros::<f32>(n * h).unwrap();
    let mut dw = gpu.zeros::<f32>(v * h).unwrap();
    let o = plain(64);
    let mut step = || {
        gk::linear_ce_fwd_bwd(
            &gpu,
            &xd.as_view(),
            &wd.as_view(),
            &labd.as_view(),
            n,
            h,
            v,
            &o,
            1.0 / n as f32,
            Some(&mut dx.as_view_mut()),
            Some(&mut dw.as_view_mut()),
        )
        .unwrap()
    };
    step(); // warm-up: the cuBLASLt handle and its workspace exist from here on
    gpu.sync().unwrap();
    let before = gpu.used_bytes();
    gpu.reset_peak();
    step();
    gpu.sync().unwrap();
    let extra = gpu.peak_bytes().saturating_sub(before) as usize;
    let ws = gk::linear_ce_workspace_bytes::<f32>(n, v, &o);
    assert!(
        extra <= 2 * ws + (8 << 20),
        "peak extra {extra} B, workspace {ws} B (full logits would be {} B)",
        n * v * 4
    );
}
