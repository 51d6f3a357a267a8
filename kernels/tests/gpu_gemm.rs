//! GPU `gemm` (cuBLASLt, row-major) against the CPU `cpu::gemm::gemm` run in f64, on random
//! inputs: every transpose combination, odd sizes, padded leading dims, batches with strides
//! (including a broadcast A with stride 0), alpha/beta (beta = 1 accumulates), for f32 and
//! bf16 storage. Outputs start poisoned (NaN) when beta = 0, and the padding of C must stay
//! untouched. The error is judged against the GEMM bound: |c - c_ref| <= rel · (alpha·|A||B| +
//! beta·|C0|) elementwise (rel 1e-5 for f32, 1e-2 for bf16); NaN never passes.
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.

use half::bf16;
use lmf_kernels::cpu::gemm::{gemm as cpu_gemm, MatMut, MatRef};
use lmf_kernels::cuda::testing::{gpu_or_skip, tolerance};
use lmf_kernels::cuda::{gemm, BlasFloat, GemmSpec, Gpu};
use lmf_kernels::testing::{rand_vec, Lcg};

/// Buffer length reached by `batch` matrices of `rows x cols` with row stride `ld`.
fn extent(batch: usize, stride: usize, rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        return 0;
    }
    (batch - 1) * stride + (rows - 1) * ld + cols
}

/// `op(M)` of the stored `[rows, cols]` matrix at `data[off..]` with row stride `ld`.
fn view(data: &[f64], off: usize, rows: usize, cols: usize, ld: usize, t: bool) -> MatRef<'_, f64> {
    let r = MatRef {
        data: &data[off..],
        rows,
        cols,
        rs: ld,
        cs: 1,
    };
    if t {
        r.t()
    } else {
        r
    }
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    pad: usize,
    batch: usize,
    broadcast_a: bool,
    alpha: f32,
    beta: f32,
}

fn check<T: BlasFloat>(gpu: &Gpu, c: &Case, seed: u64) {
    let Case { m, n, k, .. } = *c;
    let mut rng = Lcg::new(seed);
    // stored shapes: A is [m, k] or [k, m]; B is [k, n] or [n, k]
    let (ar, ac) = if c.trans_a { (k, m) } else { (m, k) };
    let (br, bc) = if c.trans_b { (n, k) } else { (k, n) };
    let (lda, ldb, ldc) = (ac + c.pad, bc + c.pad, n + c.pad);
    let stride_a = if c.broadcast_a { 0 } else { ar * lda + 5 };
    let (stride_b, stride_c) = (br * ldb + 2, m * ldc + 3);
    let len_a = extent(c.batch, stride_a, ar, ac, lda).max(1);
    let len_b = extent(c.batch, stride_b, br, bc, ldb).max(1);
    let len_c = extent(c.batch, stride_c, m, n, ldc).max(1);
    // inputs rounded to the storage type, so CPU and GPU see the same numbers
    let round = |v: Vec<f64>| -> Vec<T> { v.iter().map(|&x| T::of_f32(x as f32)).collect() };
    let a = round(rand_vec::<f64>(&mut rng, len_a, 1.0));
    let b = round(rand_vec::<f64>(&mut rng, len_b, 1.0));
    let c0 = round(rand_vec::<f64>(&mut rng, len_c, 1.0));
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f32() as f64).collect() };
    let (af, bf, c0f) = (f64s(&a), f64s(&b), f64s(&c0));

    // CPU reference in f64 (and the bound |alpha|·|A||B| + |beta|·|C0|), batch by batch
    let mut want = c0f.clone();
    let mut bound = vec![0f64; len_c];
    let (absa, absb): (Vec<f64>, Vec<f64>) = (
        af.iter().map(|x| x.abs()).collect(),
        bf.iter().map(|x| x.abs()).collect(),
    );
    for i in 0..c.batch {
        let (oa, ob, oc) = (i * stride_a, i * stride_b, i * stride_c);
        // want = beta·C0 + alpha·op(A)·op(B) (beta is 0 or 1 here)
        if c.beta == 0.0 {
            for r in 0..m {
                for j in 0..n {
                    want[oc + r * ldc + j] = 0.0;
                }
            }
        }
        cpu_gemm(
            MatMut {
                data: &mut want[oc..],
                rows: m,
                cols: n,
                rs: ldc,
                cs: 1,
            },
            view(&af, oa, ar, ac, lda, c.trans_a),
            view(&bf, ob, br, bc, ldb, c.trans_b),
            true,
            c.alpha as f64,
        );
        for r in 0..m {
            for j in 0..n {
                bound[oc + r * ldc + j] = c.beta.abs() as f64 * c0f[oc + r * ldc + j].abs();
            }
        }
        cpu_gemm(
            MatMut {
                data: &mut bound[oc..],
                rows: m,
                cols: n,
                rs: ldc,
                cs: 1,
            },
            view(&absa, oa, ar, ac, lda, c.trans_a),
            view(&absb, ob, br, bc, ldb, c.trans_b),
            true,
            c.alpha.abs() as f64,
        );
    }

    let (ad, bd) = (gpu.htod(&a).unwrap(), gpu.htod(&b).unwrap());
    let mut cd = if c.beta == 0.0 {
        gpu.poisoned::<T>(len_c).unwrap()
    } else {
        gpu.htod(&c0).unwrap()
    };
    let spec = GemmSpec {
        m,
        n,
        k,
        trans_a: c.trans_a,
        trans_b: c.trans_b,
        lda,
        ldb,
        ldc,
        batch: c.batch,
        stride_a,
        stride_b,
        stride_c,
        alpha: c.alpha,
        beta: c.beta,
    };
    gemm(
        gpu,
        &spec,
        &ad.as_view(),
        &bd.as_view(),
        &mut cd.as_view_mut(),
    )
    .unwrap();
    let got: Vec<f32> = gpu.dtoh(&cd).unwrap().iter().map(|v| v.to_f32()).collect();

    let what = format!(
        "gemm {m}x{n}x{k} ta {} tb {} pad {} batch {} bcastA {} alpha {} beta {} {}",
        c.trans_a,
        c.trans_b,
        c.pad,
        c.batch,
        c.broadcast_a,
        c.alpha,
        c.beta,
        T::SUFFIX
    );
    let rel = tolerance(T::SUFFIX);
    let mut inside = vec![false; len_c];
    for i in 0..c.batch {
        for r in 0..m {
            for j in 0..n {
                inside[i * stride_c + r * ldc + j] = true;
            }
        }
    }
    for e in 0..len_c {
        let g = got[e] as f64;
        if !inside[e] {
            // padding: untouched (still poisoned, or still C0)
            if c.beta == 0.0 {
                assert!(g.is_nan(), "{what}: padding [{e}] was written ({g})");
            } else {
                assert_eq!(g, c0f[e], "{what}: padding [{e}] changed");
            }
            continue;
        }
        // bf16 output: one rounding of the result on top of the accumulation error
        let tol = rel * (bound[e] + want[e].abs()) + 1e-30;
        assert!(
            g.is_finite() && (g - want[e]).abs() <= tol,
            "{what}[{e}]: got {g}, want {} (bound {})",
            want[e],
            bound[e]
        );
    }
}

#[test]
fn gemm_matches_cpu() {
    let Some(gpu) = gpu_or_skip("gemm_matches_cpu") else {
        return;
    };
    let mut seed = 0;
    for &(m, n, k) in &[
        (1, 1, 1),
        (3, 5, 7),
        (37, 48, 5),
        (64, 33, 130),
        (128, 96, 64),
    ] {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for &(pad, batch, broadcast_a, alpha, beta) in &[
                    (0, 1, false, 1.0, 0.0),
                    (3, 1, false, 0.5, 1.0),
                    (0, 3, false, 1.0, 0.0),
                    (2, 4, true, -1.5, 1.0),
                ] {
                    let case = Case {
                        m,
                        n,
                        k,
                        trans_a,
                        trans_b,
                        pad,
                        batch,
                        broadcast_a,
                        alpha,
                        beta,
                    };
                    seed += 1;
                    check::<f32>(&gpu, &case, seed);
                    check::<bf16>(&gpu, &case, seed);
                }
            }
        }
    }
}
