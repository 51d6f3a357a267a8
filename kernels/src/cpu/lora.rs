//! Fused LoRA linear: `y = x·Wᵀ + bias + s·(drop(x)·Aᵀ)·Bᵀ`, forward and backward.
//!
//! `W: [out, in]` is the frozen base weight (HF layout), `A: [r, in]`, `B: [out, r]` the
//! adapter (PEFT's `lora_A` / `lora_B`), `s` the scale (alpha/r, or alpha/√r for rsLoRA: the
//! caller decides). Dropout acts on the LoRA path only, as in PEFT:
//! `drop(x)[t, i] = x[t, i]·keep/(1−p)` with `keep = philox::keep(seed, offset + t·in + i, p)`,
//! so the GPU twin regenerates the same mask from (seed, offset) without storing it.
//! The forward saves `xa = drop(x)·Aᵀ: [n, r]` (small) for the backward.
//!
//! On CPU the masked input is materialised once per call in a scratch `[n, in]` buffer (the
//! gemm needs a dense operand); the backward reuses that buffer for `d_xa·A` and
//! regenerates the mask rather than storing it.

use crate::cpu::gemm::{gemm, MatMut, MatRef};
use crate::cpu::philox;
use crate::Real;
use rayon::prelude::*;

/// Dropout on the LoRA input: drop probability `p`, Philox stream `seed` from element `offset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoraDropout {
    /// Drop probability in [0, 1); 0 disables dropout.
    pub p: f32,
    /// Philox key (derived from (seed, step, tensor) by the caller).
    pub seed: u64,
    /// Element index of `x[0, 0]` in the stream.
    pub offset: u64,
}

/// Gradients of [`lora_backward`]: `da`, `db` (and `dw`, `dbias`) are accumulated into, `dx`
/// is overwritten; `None` skips that gradient.
#[derive(Debug)]
pub struct LoraGrads<'a, T> {
    /// `dx: [n, in]`, overwritten.
    pub dx: Option<&'a mut [T]>,
    /// `dA: [r, in]`, accumulated.
    pub da: &'a mut [T],
    /// `dB: [out, r]`, accumulated.
    pub db: &'a mut [T],
    /// `dW: [out, in]`, accumulated (the base is normally frozen: `None`).
    pub dw: Option<&'a mut [T]>,
    /// `dbias: [out]`, accumulated.
    pub dbias: Option<&'a mut [T]>,
}

/// The active dropout, if any (`p == 0` is no dropout).
fn active(dropout: Option<&LoraDropout>) -> Option<&LoraDropout> {
    let d = dropout.filter(|d| d.p > 0.0)?;
    assert!(d.p < 1.0, "lora: dropout p = {} is not in [0, 1)", d.p);
    Some(d)
}

/// `out = drop(x)`: `x[t, i]·keep/(1−p)` with the Philox mask of `d` (the GPU twin's mask).
///
/// `x`, `out: [n, in_f]`.
pub fn dropped_input<T: Real>(x: &[T], n: usize, in_f: usize, d: &LoraDropout, out: &mut [T]) {
    assert_eq!(x.len(), n * in_f, "lora: x is not [n, in]");
    with_mask(n, in_f, d, out, |o, k, m| *o = x[k] * m);
}

/// Calls `f(&mut out[k], k, mask[k])` for every flat index `k = t·in + i`, with
/// `mask = keep/(1−p)` from the Philox stream of `d`; parallel over rows.
fn with_mask<T: Real>(
    n: usize,
    in_f: usize,
    d: &LoraDropout,
    out: &mut [T],
    f: impl Fn(&mut T, usize, T) + Sync,
) {
    assert_eq!(out.len(), n * in_f, "lora: dropout buffer is not [n, in]");
    if in_f == 0 {
        return;
    }
    let inv_keep = T::of(1.0 / (1.0 - d.p as f64));
    out.par_chunks_mut(in_f).enumerate().for_each(|(t, row)| {
        for (i, o) in row.iter_mut().enumerate() {
            let k = t * in_f + i;
            let keep = philox::keep(d.seed, d.offset + k as u64, d.p);
            f(o, k, if keep { inv_keep } else { T::zero() });
        }
    });
}

/// Forward: `y = x·Wᵀ + bias + scale·(drop(x)·Aᵀ)·Bᵀ`, saving `xa = drop(x)·Aᵀ`.
///
/// `x: [n, in_f]`, `w: [out_f, in_f]`, `bias: [out_f]`, `a: [r, in_f]`, `b: [out_f, r]`;
/// writes `y: [n, out_f]` and `xa: [n, r]`.
#[allow(clippy::too_many_arguments)]
pub fn lora_forward<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    a: &[T],
    b: &[T],
    n: usize,
    in_f: usize,
    out_f: usize,
    r: usize,
    scale: T,
    dropout: Option<&LoraDropout>,
    y: &mut [T],
    xa: &mut [T],
) {
    check_shapes(x, w, a, b, n, in_f, out_f, r);
    assert_eq!(y.len(), n * out_f, "lora: y is not [n, out]");
    assert_eq!(xa.len(), n * r, "lora: xa is not [n, r]");
    // y = x·Wᵀ (+ bias, pre-filled so the gemm accumulates onto it): [n, in]·[in, out]
    if let Some(bias) = bias {
        assert_eq!(bias.len(), out_f, "lora: bias is not [out]");
        y.chunks_mut(out_f.max(1))
            .for_each(|row| row.copy_from_slice(bias));
    }
    let xm = MatRef::new(x, n, in_f);
    let y_acc = bias.is_some();
    gemm(
        MatMut::new(y, n, out_f),
        xm,
        MatRef::new(w, out_f, in_f).t(),
        y_acc,
        T::one(),
    );
    // xa = drop(x)·Aᵀ: [n, in]·[in, r]
    let at = MatRef::new(a, r, in_f).t();
    match active(dropout) {
        Some(d) => {
            let mut xd = vec![T::zero(); n * in_f]; // the one full-width scratch
            dropped_input(x, n, in_f, d, &mut xd);
            gemm(
                MatMut::new(xa, n, r),
                MatRef::new(&xd, n, in_f),
                at,
                false,
                T::one(),
            );
        }
        None => gemm(MatMut::new(xa, n, r), xm, at, false, T::one()),
    }
    // y += scale·xa·Bᵀ: [n, r]·[r, out]
    let bt = MatRef::new(b, out_f, r).t();
    gemm(
        MatMut::new(y, n, out_f),
        MatRef::new(xa, n, r),
        bt,
        true,
        scale,
    );
}

/// Backward of [`lora_forward`] given `dy: [n, out_f]` and the saved `xa: [n, r]`.
///
/// `d_xa = scale·dy·B`; `dB += scale·dyᵀ·xa`; `dA += d_xaᵀ·drop(x)`;
/// `dx = dy·W + (d_xa·A)⊙mask`; `dW += dyᵀ·x`; `dbias += Σ_t dy[t]`.
#[allow(clippy::too_many_arguments)]
pub fn lora_backward<T: Real>(
    dy: &[T],
    x: &[T],
    w: &[T],
    a: &[T],
    b: &[T],
    xa: &[T],
    n: usize,
    in_f: usize,
    out_f: usize,
    r: usize,
    scale: T,
    dropout: Option<&LoraDropout>,
    grads: LoraGrads<'_, T>,
) {
    check_shapes(x, w, a, b, n, in_f, out_f, r);
    assert_eq!(dy.len(), n * out_f, "lora: dy is not [n, out]");
    assert_eq!(xa.len(), n * r, "lora: xa is not [n, r]");
    assert_eq!(grads.da.len(), r * in_f, "lora: dA is not [r, in]");
    assert_eq!(grads.db.len(), out_f * r, "lora: dB is not [out, r]");
    let dym = MatRef::new(dy, n, out_f);
    let xm = MatRef::new(x, n, in_f);
    // d_xa = scale·dy·B: [n, out]·[out, r]
    let mut dxa = vec![T::zero(); n * r];
    gemm(
        MatMut::new(&mut dxa, n, r),
        dym,
        MatRef::new(b, out_f, r),
        false,
        scale,
    );
    let dxam = MatRef::new(&dxa, n, r);
    // dB += scale·dyᵀ·xa: [out, n]·[n, r]
    let xam = MatRef::new(xa, n, r);
    gemm(MatMut::new(grads.db, out_f, r), dym.t(), xam, true, scale);
    // dA += d_xaᵀ·drop(x): [r, n]·[n, in]
    let drop = active(dropout);
    let mut scratch = Vec::new();
    match drop {
        Some(d) => {
            scratch = vec![T::zero(); n * in_f];
            dropped_input(x, n, in_f, d, &mut scratch);
            let xd = MatRef::new(&scratch, n, in_f);
            gemm(MatMut::new(grads.da, r, in_f), dxam.t(), xd, true, T::one());
        }
        None => gemm(MatMut::new(grads.da, r, in_f), dxam.t(), xm, true, T::one()),
    }
    if let Some(dw) = grads.dw {
        // dW += dyᵀ·x: [out, n]·[n, in]
        assert_eq!(dw.len(), out_f * in_f, "lora: dW is not [out, in]");
        gemm(MatMut::new(dw, out_f, in_f), dym.t(), xm, true, T::one());
    }
    if let Some(dbias) = grads.dbias {
        assert_eq!(dbias.len(), out_f, "lora: dbias is not [out]");
        for row in dy.chunks(out_f.max(1)) {
            dbias.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
        }
    }
    let Some(dx) = grads.dx else { return };
    assert_eq!(dx.len(), n * in_f, "lora: dx is not [n, in]");
    // dx = dy·W: [n, out]·[out, in]
    let am = MatRef::new(a, r, in_f);
    gemm(
        MatMut::new(dx, n, in_f),
        dym,
        MatRef::new(w, out_f, in_f),
        false,
        T::one(),
    );
    match drop {
        // dx += (d_xa·A)⊙mask: the product goes through the scratch (drop(x) is no longer
        // needed), then the mask is regenerated while adding it in.
        Some(d) => {
            gemm(
                MatMut::new(&mut scratch, n, in_f),
                dxam,
                am,
                false,
                T::one(),
            );
            let prod = &scratch;
            with_mask(n, in_f, d, dx, |g, k, m| *g += prod[k] * m);
        }
        // dx += d_xa·A: [n, r]·[r, in]
        None => gemm(MatMut::new(dx, n, in_f), dxam, am, true, T::one()),
    }
}

#[allow(clippy::too_many_arguments)]
fn check_shapes<T>(
    x: &[T],
    w: &[T],
    a: &[T],
    b: &[T],
    n: usize,
    in_f: usize,
    out_f: usize,
    r: usize,
) {
    assert_eq!(x.len(), n * in_f, "lora: x is not [n, in]");
    assert_eq!(w.len(), out_f * in_f, "lora: W is not [out, in]");
    assert_eq!(a.len(), r * in_f, "lora: A is not [r, in]");
    assert_eq!(b.len(), out_f * r, "lora: B is not [out, r]");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, Lcg};

    const N: usize = 13;
    const IN: usize = 19;
    const OUT: usize = 11;
    const R: usize = 3;

    struct Case {
        x: Vec<f64>,
        w: Vec<f64>,
        bias: Vec<f64>,
        a: Vec<f64>,
        b: Vec<f64>,
        g: Vec<f64>, // fixed weights of the scalar loss sum(y ⊙ g)
    }

    fn case(seed: u64) -> Case {
        let mut rng = Lcg::new(seed);
        Case {
            x: rand_vec(&mut rng, N * IN, 1.0),
            w: rand_vec(&mut rng, OUT * IN, 0.5),
            bias: rand_vec(&mut rng, OUT, 0.5),
            a: rand_vec(&mut rng, R * IN, 0.5),
            b: rand_vec(&mut rng, OUT * R, 0.5),
            g: rand_vec(&mut rng, N * OUT, 1.0),
        }
    }

    /// Unfused reference with explicit loops: the mask is read from philox directly.
    fn reference(c: &Case, bias: bool, s: f64, d: Option<&LoraDropout>) -> Vec<f64> {
        let mask = |t: usize, i: usize| match d {
            Some(d) if philox::keep(d.seed, d.offset + (t * IN + i) as u64, d.p) => {
                1.0 / (1.0 - d.p as f64)
            }
            Some(_) => 0.0,
            None => 1.0,
        };
        let mut y = vec![0.0; N * OUT];
        for t in 0..N {
            let xa: Vec<f64> = (0..R)
                .map(|k| {
                    (0..IN)
                        .map(|i| c.x[t * IN + i] * mask(t, i) * c.a[k * IN + i])
                        .sum()
                })
                .collect();
            for o in 0..OUT {
                let base: f64 = (0..IN).map(|i| c.x[t * IN + i] * c.w[o * IN + i]).sum();
                let lora: f64 = (0..R).map(|k| xa[k] * c.b[o * R + k]).sum();
                y[t * OUT + o] = base + if bias { c.bias[o] } else { 0.0 } + s * lora;
            }
        }
        y
    }

    fn forward(c: &Case, bias: bool, s: f64, d: Option<&LoraDropout>) -> (Vec<f64>, Vec<f64>) {
        let mut y = vec![f64::NAN; N * OUT];
        let mut xa = vec![f64::NAN; N * R];
        let bias = bias.then_some(&c.bias[..]);
        lora_forward(
            &c.x, &c.w, bias, &c.a, &c.b, N, IN, OUT, R, s, d, &mut y, &mut xa,
        );
        (y, xa)
    }

    const DROP: LoraDropout = LoraDropout {
        p: 0.3,
        seed: 42,
        offset: 1000,
    };

    #[test]
    fn forward_matches_unfused_reference() {
        let c = case(1);
        for d in [None, Some(&DROP), Some(&LoraDropout { p: 0.0, ..DROP })] {
            for bias in [false, true] {
                let (y, _) = forward(&c, bias, 0.75, d);
                let want = reference(&c, bias, 0.75, d);
                assert_close("y", &y, &want, 1e-12, 1e-12);
            }
        }
        // dropout actually changes the LoRA path
        let (y0, _) = forward(&c, false, 0.75, None);
        let (y1, _) = forward(&c, false, 0.75, Some(&DROP));
        assert!(y0.iter().zip(&y1).any(|(a, b)| (a - b).abs() > 1e-6));
    }

    #[test]
    fn gradient_check_with_dropout() {
        let c = case(2);
        let s = 1.7;
        for (d, bias) in [(Some(&DROP), true), (None, false)] {
            let (_, xa) = forward(&c, bias, s, d);
            let mut dx = vec![f64::NAN; N * IN]; // overwritten
            let mut da = vec![0.5; R * IN]; // accumulated onto 0.5
            let mut db = vec![0.5; OUT * R];
            let mut dw = vec![0.5; OUT * IN];
            let mut dbias = vec![0.5; OUT];
            let grads = LoraGrads {
                dx: Some(&mut dx),
                da: &mut da,
                db: &mut db,
                dw: Some(&mut dw),
                dbias: bias.then_some(&mut dbias[..]),
            };
            lora_backward(
                &c.g, &c.x, &c.w, &c.a, &c.b, &xa, N, IN, OUT, R, s, d, grads,
            );
            let minus = |v: &[f64]| v.iter().map(|g| g - 0.5).collect::<Vec<_>>();
            let loss = |c: &Case| -> f64 {
                let (y, _) = forward(c, bias, s, d);
                y.iter().zip(&c.g).map(|(a, b)| a * b).sum()
            };
            let mut cc = case(2);
            check_grad("dx", &c.x, &dx, |v| {
                cc.x = v.to_vec();
                loss(&cc)
            });
            let mut cc = case(2);
            check_grad("dA", &c.a, &minus(&da), |v| {
                cc.a = v.to_vec();
                loss(&cc)
            });
            let mut cc = case(2);
            check_grad("dB", &c.b, &minus(&db), |v| {
                cc.b = v.to_vec();
                loss(&cc)
            });
            let mut cc = case(2);
            check_grad("dW", &c.w, &minus(&dw), |v| {
                cc.w = v.to_vec();
                loss(&cc)
            });
            if bias {
                let mut cc = case(2);
                check_grad("dbias", &c.bias, &minus(&dbias), |v| {
                    cc.bias = v.to_vec();
                    loss(&cc)
                });
            } else {
                assert!(
                    dbias.iter().all(|&g| g == 0.5),
                    "dbias touched though not requested"
                );
            }
        }
    }

    #[test]
    fn frozen_base_skips_dw_and_dx() {
        let c = case(3);
        let (_, xa) = forward(&c, false, 0.5, Some(&DROP));
        let (mut da, mut db) = (vec![0.0; R * IN], vec![0.0; OUT * R]);
        let grads = LoraGrads {
            dx: None,
            da: &mut da,
            db: &mut db,
            dw: None,
            dbias: None,
        };
        lora_backward(
            &c.g,
            &c.x,
            &c.w,
            &c.a,
            &c.b,
            &xa,
            N,
            IN,
            OUT,
            R,
            0.5,
            Some(&DROP),
            grads,
        );
        // same dA / dB as a call that also asks for dx
        let (mut da2, mut db2, mut dx) = (vec![0.0; R * IN], vec![0.0; OUT * R], vec![0.0; N * IN]);
        let grads = LoraGrads {
            dx: Some(&mut dx),
            da: &mut da2,
            db: &mut db2,
            dw: None,
            dbias: None,
        };
        lora_backward(
            &c.g,
            &c.x,
            &c.w,
            &c.a,
            &c.b,
            &xa,
            N,
            IN,
            OUT,
            R,
            0.5,
            Some(&DROP),
            grads,
        );
        assert_eq!(da, da2);
        assert_eq!(db, db2);
        assert!(da.iter().any(|&g| g != 0.0) && db.iter().any(|&g| g != 0.0));
    }

    #[test]
    fn dropout_rate_and_mask_indexing() {
        let (n, in_f) = (301, 1000);
        let x = vec![1.0f32; n * in_f];
        let mut out = vec![0.0f32; n * in_f];
        let d = LoraDropout {
            p: 0.3,
            seed: 7,
            offset: 123,
        };
        dropped_input(&x, n, in_f, &d, &mut out);
        let dropped = out.iter().filter(|&&v| v == 0.0).count() as f64 / out.len() as f64;
        assert!((dropped - 0.3).abs() < 0.005, "drop rate {dropped}");
        let kept = 1.0 / (1.0 - 0.3f64);
        assert!(out
            .iter()
            .all(|&v| v == 0.0 || (v as f64 - kept).abs() < 1e-6));
        // element (t, i) uses Philox element offset + t·in + i
        for (t, i) in [(0, 0), (5, 17), (300, 999)] {
            let keep = philox::keep(7, 123 + (t * in_f + i) as u64, 0.3);
            assert_eq!(out[t * in_f + i] != 0.0, keep);
        }
    }
}
