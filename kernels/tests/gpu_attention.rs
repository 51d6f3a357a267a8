//! GPU flash attention against its CPU twin (`cpu::attention`, run in f64 on the same
//! storage-rounded inputs), for f32/bf16/f16 storage: head dims 64/80/96/128/256 (and odd
//! ones for f32), causal and not, GQA 8/2, sliding window, softcap, varlen batches of
//! odd-length sequences (seqlen_q != seqlen_k included, so some rows see no key), lengths
//! that are not a multiple of the tiles (1, 37, 130). Outputs are poisoned (NaN) first.
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.
//!
//! The backward gets the CPU twin's `out` (rounded to the storage type) and `lse` (as f32),
//! so it is checked on its own; the forward's `out` and `lse` are checked separately.
//!
//! Tolerance: `|got - want| <= tol · (|want| + max|want|)`, tol = `tolerance(dtype)` (fp32
//! 1e-5, bf16 1e-2, f16 2e-3). The absolute part is one `tol` of the tensor's largest entry
//! rather than `assert_rel_close`'s 1e-3 of it: attention outputs and gradients are sums of
//! many signed terms, so entries near zero carry the rounding of terms as large as the
//! tensor itself (P and dS are rounded to bf16/f16 before the tensor-core products, as in
//! FlashAttention), and judging them against 1e-3 of the max would demand more accuracy than
//! the storage type has. NaN or infinity (except lse's exact -inf) never passes.

use half::{bf16, f16};
use lmf_kernels::cpu::attention::{self as cpu, AttnParams};
use lmf_kernels::cuda::testing::{gpu_or_skip, tolerance};
use lmf_kernels::cuda::{attention as gpu_k, Gpu, GpuFloat};
use lmf_kernels::testing::{rand_vec, Lcg};

/// Prefix sums of `lens`, starting at 0.
fn cu(lens: &[usize]) -> Vec<usize> {
    let mut c = vec![0];
    for &n in lens {
        c.push(c[c.len() - 1] + n);
    }
    c
}

/// Asserts `|g - w| <= tol · (|w| + max|w|)` entry by entry (see the module doc); names
/// `what` and the first failing index. NaN/inf in `got` never passes.
fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let amax = want.iter().fold(0f64, |m, w| m.max(w.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        assert!(g.is_finite(), "{what}[{i}]: got {g} (want {w})");
        let err = (g - w).abs();
        assert!(
            err <= tol * (w.abs() + amax),
            "{what}[{i}]: got {g}, want {w} (err {err:.3e}, max |want| {amax:.3e}, tol {tol:.0e})"
        );
    }
}

/// lse: -inf exactly where the CPU has -inf (rows that see no key), close elsewhere (fp32 is
/// kept whatever the storage type; the scores' rounding still depends on it).
fn assert_lse(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w == f64::NEG_INFINITY {
            assert!(g == f32::NEG_INFINITY, "{what}[{i}]: got {g}, want -inf");
        } else {
            let g = g as f64;
            assert!(g.is_finite(), "{what}[{i}]: got {g} (want {w})");
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }
}

/// One attention problem.
#[derive(Clone, Debug)]
struct Case {
    hq: usize,
    hkv: usize,
    d: usize,
    causal: bool,
    window: Option<usize>,
    softcap: Option<f64>,
    lens_q: Vec<usize>,
    lens_k: Vec<usize>,
}

impl Case {
    fn new(hq: usize, hkv: usize, d: usize, causal: bool, lens: &[usize]) -> Self {
        Case {
            hq,
            hkv,
            d,
            causal,
            window: None,
            softcap: None,
            lens_q: lens.to_vec(),
            lens_k: lens.to_vec(),
        }
    }
    fn params(&self) -> AttnParams {
        AttnParams {
            num_heads: self.hq,
            num_kv_heads: self.hkv,
            head_dim: self.d,
            causal: self.causal,
            window: self.window,
            scale: 1.0 / (self.d as f64).sqrt(),
            softcap: self.softcap,
        }
    }
}

fn check<T: GpuFloat>(gpu: &Gpu, c: &Case, seed: u64) {
    let p = c.params();
    let (cu_q, cu_k) = (cu(&c.lens_q), cu(&c.lens_k));
    let (tq, tk) = (cu_q[cu_q.len() - 1], cu_k[cu_k.len() - 1]);
    let (nq, nk) = (tq * c.hq * c.d, tk * c.hkv * c.d);
    let mut rng = Lcg::new(seed);
    // Inputs rounded to the storage type first, so CPU and GPU see the same numbers.
    let round = |v: Vec<f64>| -> Vec<T> { v.iter().map(|&x| T::of_f32(x as f32)).collect() };
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f32() as f64).collect() };
    let q = round(rand_vec::<f64>(&mut rng, nq, 2.0));
    let k = round(rand_vec::<f64>(&mut rng, nk, 2.0));
    let v = round(rand_vec::<f64>(&mut rng, nk, 1.0));
    let dout = round(rand_vec::<f64>(&mut rng, nq, 1.0));
    let (qf, kf, vf, doutf) = (f64s(&q), f64s(&k), f64s(&v), f64s(&dout));

    // CPU twin in f64.
    let (mut out_ref, mut lse_ref) = (vec![0f64; nq], vec![0f64; tq * c.hq]);
    cpu::attention_forward(&qf, &kf, &vf, &cu_q, &cu_k, &p, &mut out_ref, &mut lse_ref);
    let (mut dq_ref, mut dk_ref, mut dv_ref) = (vec![0f64; nq], vec![0f64; nk], vec![0f64; nk]);
    cpu::attention_backward(
        &doutf,
        &qf,
        &kf,
        &vf,
        &out_ref,
        &lse_ref,
        &cu_q,
        &cu_k,
        &p,
        &mut dq_ref,
        &mut dk_ref,
        &mut dv_ref,
    );

    let (qd, kd, vd, dod) = (
        gpu.htod(&q).unwrap(),
        gpu.htod(&k).unwrap(),
        gpu.htod(&v).unwrap(),
        gpu.htod(&dout).unwrap(),
    );
    let mut out = gpu.poisoned::<T>(nq).unwrap();
    let mut lse = gpu.poisoned::<f32>(tq * c.hq).unwrap();
    gpu_k::attention_forward(
        gpu,
        &qd.as_view(),
        &kd.as_view(),
        &vd.as_view(),
        &cu_q,
        &cu_k,
        &p,
        &mut out.as_view_mut(),
        &mut lse.as_view_mut(),
    )
    .unwrap();

    // The backward from the CPU's out (rounded) and lse (as f32).
    let out_in = gpu.htod(&round(out_ref.clone())).unwrap();
    let lse_in: Vec<f32> = lse_ref.iter().map(|&x| x as f32).collect();
    let lse_in = gpu.htod(&lse_in).unwrap();
    let mut dq = gpu.poisoned::<T>(nq).unwrap();
    let mut dk = gpu.poisoned::<T>(nk).unwrap();
    let mut dv = gpu.poisoned::<T>(nk).unwrap();
    gpu_k::attention_backward(
        gpu,
        &dod.as_view(),
        &qd.as_view(),
        &kd.as_view(),
        &vd.as_view(),
        &out_in.as_view(),
        &lse_in.as_view(),
        &cu_q,
        &cu_k,
        &p,
        &mut dq.as_view_mut(),
        &mut dk.as_view_mut(),
        &mut dv.as_view_mut(),
    )
    .unwrap();

    let tol = tolerance(T::SUFFIX);
    let host = |s: &cudarc::driver::CudaSlice<T>| -> Vec<f32> {
        gpu.dtoh(s).unwrap().iter().map(|v| v.to_f32()).collect()
    };
    let what = format!("attention {c:?} {}", T::SUFFIX);
    assert_close(&format!("{what} out"), &host(&out), &out_ref, tol);
    assert_lse(
        &format!("{what} lse"),
        &gpu.dtoh(&lse).unwrap(),
        &lse_ref,
        tol,
    );
    assert_close(&format!("{what} dq"), &host(&dq), &dq_ref, tol);
    assert_close(&format!("{what} dk"), &host(&dk), &dk_ref, tol);
    assert_close(&format!("{what} dv"), &host(&dv), &dv_ref, tol);
}

/// The cases every dtype runs (head dims the tensor-core kernels support).
fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for d in [64, 80, 96, 128, 256] {
        v.push(Case::new(2, 2, d, true, &[37]));
        v.push(Case::new(2, 1, d, false, &[130]));
    }
    // lengths 1 and one tile + 2
    v.push(Case::new(2, 2, 64, true, &[1]));
    v.push(Case::new(2, 2, 128, false, &[66]));
    // GQA 8 query heads / 2 kv heads
    v.push(Case::new(8, 2, 64, true, &[130]));
    v.push(Case::new(8, 2, 128, false, &[37]));
    // sliding window, causal and not
    let mut w = Case::new(4, 2, 128, true, &[130]);
    w.window = Some(17);
    v.push(w);
    let mut w = Case::new(2, 2, 64, false, &[130]);
    w.window = Some(50);
    v.push(w);
    // softcap (Gemma 2), with a window
    let mut s = Case::new(2, 1, 64, true, &[130]);
    s.softcap = Some(5.0);
    s.window = Some(40);
    v.push(s);
    // varlen: 3 odd-length sequences, causal and not, with GQA
    v.push(Case::new(4, 2, 64, true, &[37, 1, 130]));
    v.push(Case::new(4, 2, 96, false, &[37, 1, 130]));
    // varlen with seqlen_q != seqlen_k (bottom-right causal: the first rows of the 70/20
    // sequence see no key), an empty query sequence, and a window
    let mut r = Case::new(4, 2, 64, true, &[5, 70, 0, 33]);
    r.lens_k = vec![37, 20, 9, 130];
    v.push(r.clone());
    r.window = Some(9);
    r.d = 80;
    v.push(r);
    v
}

#[test]
fn attention_matches_cpu_twin_bf16() {
    let Some(gpu) = gpu_or_skip("attention_matches_cpu_twin_bf16") else {
        return;
    };
    for (i, c) in cases().iter().enumerate() {
        check::<bf16>(&gpu, c, 100 + i as u64);
    }
}

#[test]
fn attention_matches_cpu_twin_f16() {
    let Some(gpu) = gpu_or_skip("attention_matches_cpu_twin_f16") else {
        return;
    };
    for (i, c) in cases().iter().enumerate() {
        check::<f16>(&gpu, c, 200 + i as u64);
    }
}

#[test]
fn attention_matches_cpu_twin_f32() {
    let Some(gpu) = gpu_or_skip("attention_matches_cpu_twin_f32") else {
        return;
    };
    let mut all = cases();
    // f32 takes any head_dim up to 256
    all.push(Case::new(3, 1, 17, true, &[37, 130]));
    all.push(Case::new(2, 2, 1, false, &[5]));
    for (i, c) in all.iter().enumerate() {
        check::<f32>(&gpu, c, 300 + i as u64);
    }
}

#[test]
fn attention_rejects_bad_shapes() {
    let Some(gpu) = gpu_or_skip("attention_rejects_bad_shapes") else {
        return;
    };
    let c = Case::new(2, 2, 48, false, &[4]);
    let p = c.params();
    let x = gpu.zeros::<bf16>(4 * 2 * 48).unwrap();
    let mut out = gpu.zeros::<bf16>(4 * 2 * 48).unwrap();
    let mut lse = gpu.zeros::<f32>(2 * 4).unwrap();
    // head_dim 48 has no tensor-core kernel
    let r = gpu_k::attention_forward(
        &gpu,
        &x.as_view(),
        &x.as_view(),
        &x.as_view(),
        &[0, 4],
        &[0, 4],
        &p,
        &mut out.as_view_mut(),
        &mut lse.as_view_mut(),
    );
    assert!(r.is_err());
    // cu_seqlens that do not cover q
    let mut p = p;
    p.head_dim = 64;
    let r = gpu_k::attention_forward(
        &gpu,
        &x.as_view(),
        &x.as_view(),
        &x.as_view(),
        &[0, 2],
        &[0, 2],
        &p,
        &mut out.as_view_mut(),
        &mut lse.as_view_mut(),
    );
    assert!(r.is_err());
}
