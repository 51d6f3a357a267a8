//! Fused linear + cross-entropy (Liger-style): the lm_head matmul and the token loss in one
//! pass over chunks of tokens, so the full `[tokens, vocab]` logits are never held.
//!
//! Per chunk of `chunk` tokens: `logits = x_c·wᵀ` → optional final-logit softcap → per-row
//! log-sum-exp → loss; for training, dlogits overwrite the logits in place, then
//! `dx_c = dlogits·w` and `dw += dlogitsᵀ·x_c`. The only memory beyond the inputs and outputs
//! is one `[chunk, vocab]` buffer. The loss is torch's `cross_entropy` (ignore_index,
//! label_smoothing), plus the optional PaLM z-loss and the Gemma-2 softcap.
//!
//! The gradient is computed during the forward pass (as Liger does): the autograd node keeps
//! `dx`/`dw` and only scales them by the upstream scalar in its backward.

use crate::cpu::gemm::{gemm, MatMut, MatRef};
use crate::cpu::simd::{exp_shift_sum_f64, max_of, scaled_exp_row, softcap_in_place};
use crate::Real;
use rayon::prelude::*;

/// Options of the fused linear cross-entropy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CeOptions {
    /// Label whose token contributes no loss and no gradient (HF: -100).
    pub ignore_index: i64,
    /// torch's `label_smoothing` ε in [0, 1]: `(1−ε)·nll + ε·mean_j(lse − z_j)`.
    pub label_smoothing: f64,
    /// Coefficient of the z-loss term `z_loss·lse²` per token (PaLM; 0 = off).
    pub z_loss: f64,
    /// Final-logit softcap `cap·tanh(z/cap)` (Gemma 2), applied before the loss.
    pub softcap: Option<f64>,
    /// Tokens per chunk; 0 = automatic ([`auto_chunk`] of the vocabulary).
    pub chunk: usize,
}

impl Default for CeOptions {
    /// ignore_index −100, no smoothing, no z-loss, no softcap, automatic chunk.
    fn default() -> Self {
        CeOptions {
            ignore_index: -100,
            label_smoothing: 0.0,
            z_loss: 0.0,
            softcap: None,
            chunk: 0,
        }
    }
}

/// Loss sum over the valid (non-ignored) tokens and their count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CeResult {
    /// Sum of the per-token losses over valid tokens (f64: it feeds the reported loss).
    pub loss_sum: f64,
    /// Number of tokens whose label is not `ignore_index`.
    pub n_valid: usize,
}

/// The automatic chunk: about 8 M logits per chunk (32 MB in f32), at least one token.
///
/// Why 8 M: the three chunk products are only `chunk` rows thin, and the CPU gemm is far
/// from its peak on thin products (compare the `linear_ce` bench with the `matmul` bench);
/// 8 M gives ~256-row chunks at a 32k vocabulary while staying far below full logits.
pub fn auto_chunk(vocab: usize) -> usize {
    ((8usize << 20) / vocab.max(1)).max(1)
}

/// Loss (sum over valid tokens) of `x·wᵀ` against `labels`, without gradients (evaluation).
///
/// `x: [n, hidden]`, `w: [vocab, hidden]` (HF lm_head layout), `labels: [n]`.
pub fn linear_ce_forward<T: Real>(
    x: &[T],
    w: &[T],
    labels: &[i64],
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
) -> CeResult {
    run(x, w, labels, n, hidden, vocab, opts, None, None, None, None)
}

/// Loss (sum over valid tokens) and its gradients times `grad_scale`.
///
/// `dx: [n, hidden]` is overwritten; `dw: [vocab, hidden]` is accumulated into. The caller
/// picks `grad_scale` (1/n_valid for a mean, 1/num_items_in_batch for accumulated batches).
#[allow(clippy::too_many_arguments)]
pub fn linear_ce_fwd_bwd<T: Real>(
    x: &[T],
    w: &[T],
    labels: &[i64],
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
    grad_scale: T,
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
) -> CeResult {
    run(
        x,
        w,
        labels,
        n,
        hidden,
        vocab,
        opts,
        Some(GradScale::All(grad_scale)),
        dx,
        dw,
        None,
    )
}

/// What each token's loss gradient is multiplied by.
#[derive(Clone, Copy)]
pub(crate) enum GradScale<'a, T> {
    /// One scale for every token (a mean or a sum of the loss).
    All(T),
    /// One scale per token (`[n]`): the upstream gradient of per-token outputs.
    PerToken(&'a [T]),
}

/// The chunk loop behind every entry point: per-token losses, their sum (and, with
/// `token_loss`, each of them: `[n]`, 0 for ignored tokens), and the gradients of
/// `Σ_t scale_t · loss_t` when `grad_scale` is given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<T: Real>(
    x: &[T],
    w: &[T],
    labels: &[i64],
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
    grad_scale: Option<GradScale<'_, T>>,
    mut dx: Option<&mut [T]>,
    mut dw: Option<&mut [T]>,
    mut token_loss: Option<&mut [f64]>,
) -> CeResult {
    assert_eq!(x.len(), n * hidden, "linear_ce: x is not [n, hidden]");
    assert_eq!(
        w.len(),
        vocab * hidden,
        "linear_ce: w is not [vocab, hidden]"
    );
    assert_eq!(labels.len(), n, "linear_ce: labels is not [n]");
    assert!(vocab > 0, "linear_ce: empty vocabulary");
    if let Some(d) = dx.as_deref() {
        assert_eq!(d.len(), n * hidden, "linear_ce: dx is not [n, hidden]");
    }
    if let Some(d) = dw.as_deref() {
        assert_eq!(
            d.len(),
            vocab * hidden,
            "linear_ce: dw is not [vocab, hidden]"
        );
    }
    if let Some(GradScale::PerToken(s)) = grad_scale {
        assert_eq!(s.len(), n, "linear_ce: per-token scale is not [n]");
    }
    if let Some(l) = token_loss.as_deref_mut() {
        assert_eq!(l.len(), n, "linear_ce: token losses are not [n]");
        l.fill(0.0);
    }
    // Validate every label before touching dw, so a bad label leaves the outputs untouched.
    for (t, &y) in labels.iter().enumerate() {
        if y != opts.ignore_index && (y < 0 || y as u64 >= vocab as u64) {
            panic!("linear_ce: label {y} of token {t} is outside [0, {vocab})");
        }
    }
    let chunk = if opts.chunk == 0 {
        auto_chunk(vocab)
    } else {
        opts.chunk
    }
    .min(n.max(1));
    let grads = grad_scale.is_some() && (dx.is_some() || dw.is_some());
    let wt = MatRef::new(w, vocab, hidden).t(); // wᵀ: [hidden, vocab], a view
                                                // logits (then dlogits) of one chunk: [chunk, vocab]; the only large buffer.
    let mut logits = vec![T::zero(); chunk * vocab];
    let mut res = CeResult {
        loss_sum: 0.0,
        n_valid: 0,
    };
    for c0 in (0..n).step_by(chunk) {
        let m = chunk.min(n - c0);
        let lab = &labels[c0..c0 + m];
        let valid = lab.iter().filter(|&&y| y != opts.ignore_index).count();
        if valid == 0 {
            // Prompt-only chunks (common in SFT): no loss, zero dx, nothing for dw.
            if let Some(d) = dx.as_deref_mut() {
                d[c0 * hidden..(c0 + m) * hidden].fill(T::zero());
            }
            continue;
        }
        res.n_valid += valid;
        let xc = &x[c0 * hidden..(c0 + m) * hidden]; // [m, hidden]
        let lc = &mut logits[..m * vocab]; // [m, vocab]
        gemm(
            MatMut::new(lc, m, vocab),
            MatRef::new(xc, m, hidden),
            wt,
            false,
            T::one(),
        );
        let scale = |t: usize| match grad_scale {
            Some(GradScale::All(s)) if grads => Some(s),
            Some(GradScale::PerToken(s)) if grads => Some(s[c0 + t]),
            _ => None,
        };
        let losses: Vec<f64> = lc
            .par_chunks_mut(vocab)
            .zip(lab.par_iter())
            .enumerate()
            .map(|(t, (z, &y))| row_loss(z, y, opts, scale(t)))
            .collect();
        res.loss_sum += losses.iter().sum::<f64>();
        if let Some(l) = token_loss.as_deref_mut() {
            l[c0..c0 + m].copy_from_slice(&losses);
        }
        if !grads {
            continue;
        }
        let dl = MatRef::new(&logits[..m * vocab], m, vocab); // dlogits: [m, vocab]
        if let Some(d) = dx.as_deref_mut() {
            // dx_c = dlogits · w: [m, vocab]·[vocab, hidden]
            let dxc = &mut d[c0 * hidden..(c0 + m) * hidden];
            gemm(
                MatMut::new(dxc, m, hidden),
                dl,
                MatRef::new(w, vocab, hidden),
                false,
                T::one(),
            );
        }
        if let Some(d) = dw.as_deref_mut() {
            // dw += dlogitsᵀ · x_c: [vocab, m]·[m, hidden]
            gemm(
                MatMut::new(d, vocab, hidden),
                dl.t(),
                MatRef::new(xc, m, hidden),
                true,
                T::one(),
            );
        }
    }
    res
}

/// Loss of one row of raw logits `z: [vocab]` with label `y`. With `grad = Some(scale)`,
/// overwrites `z` with `scale · dloss/dz_raw`; an ignored row becomes zeros.
fn row_loss<T: Real>(z: &mut [T], y: i64, o: &CeOptions, grad: Option<T>) -> f64 {
    if y == o.ignore_index {
        if grad.is_some() {
            z.fill(T::zero());
        }
        return 0.0;
    }
    let y = y as usize; // validated by the caller
    let vocab = z.len();
    if let Some(cap) = o.softcap {
        softcap_in_place(z, cap);
    }
    // Log-sum-exp with the max subtracted; the sums feed the loss, so they run in f64.
    let max = max_of(z, T::neg_infinity());
    let sum = exp_shift_sum_f64(z, max);
    let lse = max.f64() + sum.ln();
    let eps = o.label_smoothing;
    let nll = lse - z[y].f64();
    let mut loss = (1.0 - eps) * nll + o.z_loss * lse * lse;
    if eps != 0.0 {
        let mean_z = z.iter().map(|v| v.f64()).sum::<f64>() / vocab as f64;
        loss += eps * (lse - mean_z);
    }
    if let Some(scale) = grad {
        // d/dz_j = p_j·(1 + 2·z_loss·lse) − ε/V − (1−ε)·[j = y], then the softcap chain rule
        // 1 − (z/cap)² (z already capped), all times the caller's scale.
        let a = T::of(1.0 + 2.0 * o.z_loss * lse) * scale;
        let b = T::of(eps / vocab as f64) * scale;
        let lse_t = T::of(lse);
        let zy_grad = T::of(1.0 - eps) * scale;
        // Results below the smallest normal float are flushed to zero: far-off logits give
        // p ~ e^-100, and subnormal operands make the two gradient gemms several times
        // slower on x86. What is dropped is below the smallest normal float, as a GPU's FTZ
        // would drop it.
        let flush = |g: T| {
            if g.abs() < T::min_positive_value() {
                T::zero()
            } else {
                g
            }
        };
        match o.softcap {
            None => {
                let zy = z[y];
                scaled_exp_row(z, lse_t, a, b);
                z[y] = flush(a * (zy - lse_t).exp() - b - zy_grad);
            }
            Some(cap) => {
                let ci = T::of(1.0 / cap);
                for (j, v) in z.iter_mut().enumerate() {
                    let mut g = a * (*v - lse_t).exp() - b;
                    if j == y {
                        g -= zy_grad;
                    }
                    let t = *v * ci;
                    g *= T::one() - t * t;
                    *v = flush(g);
                }
            }
        }
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, Lcg};

    /// Naive reference in f64: full logits, softcap, log_softmax, smoothed NLL + z-loss, and
    /// the gradient of `sum(loss)·scale` by explicit triple loops.
    fn naive(
        x: &[f64],
        w: &[f64],
        labels: &[i64],
        n: usize,
        h: usize,
        v: usize,
        o: &CeOptions,
    ) -> (f64, Vec<f64>, Vec<f64>) {
        let mut loss = 0.0;
        let mut dz = vec![0.0; n * v];
        for t in 0..n {
            if labels[t] == o.ignore_index {
                continue;
            }
            let y = labels[t] as usize;
            let raw: Vec<f64> = (0..v)
                .map(|j| (0..h).map(|k| x[t * h + k] * w[j * h + k]).sum())
                .collect();
            let z: Vec<f64> = match o.softcap {
                Some(c) => raw.iter().map(|r| c * (r / c).tanh()).collect(),
                None => raw.clone(),
            };
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + z.iter().map(|zj| (zj - m).exp()).sum::<f64>().ln();
            let logp: Vec<f64> = z.iter().map(|zj| zj - lse).collect();
            let eps = o.label_smoothing;
            let smooth = -logp.iter().sum::<f64>() / v as f64;
            loss += (1.0 - eps) * -logp[y] + eps * smooth + o.z_loss * lse * lse;
            for j in 0..v {
                let p = logp[j].exp();
                let mut g = p * (1.0 + 2.0 * o.z_loss * lse) - eps / v as f64;
                if j == y {
                    g -= 1.0 - eps;
                }
                if let Some(c) = o.softcap {
                    g *= 1.0 - (z[j] / c).powi(2);
                }
                dz[t * v + j] = g;
            }
        }
        let mut dx = vec![0.0; n * h];
        let mut dw = vec![0.0; v * h];
        for t in 0..n {
            for j in 0..v {
                for k in 0..h {
                    dx[t * h + k] += dz[t * v + j] * w[j * h + k];
                    dw[j * h + k] += dz[t * v + j] * x[t * h + k];
                }
            }
        }
        (loss, dx, dw)
    }

    fn labels(rng: &mut Lcg, n: usize, v: usize) -> Vec<i64> {
        // every 5th-ish token ignored, including the first
        (0..n)
            .map(|t| {
                if t % 5 == 0 || rng.below(7) == 0 {
                    -100
                } else {
                    rng.below(v) as i64
                }
            })
            .collect()
    }

    #[test]
    fn matches_naive_for_every_chunk_size() {
        let (n, h, v) = (37, 48, 101);
        let mut rng = Lcg::new(1);
        let x: Vec<f64> = rand_vec(&mut rng, n * h, 1.0);
        let w: Vec<f64> = rand_vec(&mut rng, v * h, 0.5);
        let lab = labels(&mut rng, n, v);
        let n_valid = lab.iter().filter(|&&y| y != -100).count();
        let variants = [
            CeOptions::default(),
            CeOptions {
                label_smoothing: 0.1,
                z_loss: 1e-3,
                softcap: Some(3.0),
                ..Default::default()
            },
        ];
        for o in variants {
            let (want_loss, want_dx, want_dw) = naive(&x, &w, &lab, n, h, v, &o);
            for chunk in [1, 4, 16, 37, 64] {
                let o = CeOptions { chunk, ..o };
                let scale = 1.0 / n_valid as f64;
                let mut dx = vec![7.0; n * h]; // overwritten
                let mut dw = vec![1.0; v * h]; // accumulated
                let r = linear_ce_fwd_bwd(
                    &x,
                    &w,
                    &lab,
                    n,
                    h,
                    v,
                    &o,
                    scale,
                    Some(&mut dx),
                    Some(&mut dw),
                );
                assert_eq!(r.n_valid, n_valid);
                assert!(
                    (r.loss_sum - want_loss).abs() < 1e-9 * want_loss.abs(),
                    "chunk {chunk}"
                );
                let want_dx: Vec<f64> = want_dx.iter().map(|g| g * scale).collect();
                let want_dw: Vec<f64> = want_dw.iter().map(|g| 1.0 + g * scale).collect();
                assert_close("dx", &dx, &want_dx, 1e-12, 1e-9);
                assert_close("dw", &dw, &want_dw, 1e-12, 1e-9);
                let f = linear_ce_forward(&x, &w, &lab, n, h, v, &o);
                assert_eq!(f.n_valid, n_valid);
                assert!((f.loss_sum - r.loss_sum).abs() < 1e-12 * want_loss.abs());
            }
        }
        // The mean matches torch's default reduction (mean over non-ignored tokens), and an
        // f32 run agrees with f64.
        let xf: Vec<f32> = x.iter().map(|&a| a as f32).collect();
        let wf: Vec<f32> = w.iter().map(|&a| a as f32).collect();
        let o = CeOptions {
            chunk: 8,
            ..Default::default()
        };
        let r32 = linear_ce_forward(&xf, &wf, &lab, n, h, v, &o);
        let r64 = linear_ce_forward(&x, &w, &lab, n, h, v, &o);
        let (m32, m64) = (r32.loss_sum / n_valid as f64, r64.loss_sum / n_valid as f64);
        assert!((m32 - m64).abs() < 1e-5, "{m32} vs {m64}");
    }

    #[test]
    fn gradient_check_with_smoothing_zloss_softcap() {
        let (n, h, v) = (7, 5, 11);
        let mut rng = Lcg::new(2);
        let x: Vec<f64> = rand_vec(&mut rng, n * h, 1.0);
        let w: Vec<f64> = rand_vec(&mut rng, v * h, 1.0);
        let lab: Vec<i64> = vec![3, -100, 0, 10, 5, -100, 7];
        for o in [
            CeOptions {
                chunk: 3,
                ..Default::default()
            },
            CeOptions {
                label_smoothing: 0.2,
                z_loss: 0.01,
                softcap: Some(1.5),
                chunk: 2,
                ..Default::default()
            },
        ] {
            let scale = 0.37;
            let mut dx = vec![0.0; n * h];
            let mut dw = vec![0.0; v * h];
            linear_ce_fwd_bwd(
                &x,
                &w,
                &lab,
                n,
                h,
                v,
                &o,
                scale,
                Some(&mut dx),
                Some(&mut dw),
            );
            check_grad("dx", &x, &dx, |xp| {
                scale * linear_ce_forward(xp, &w, &lab, n, h, v, &o).loss_sum
            });
            check_grad("dw", &w, &dw, |wp| {
                scale * linear_ce_forward(&x, wp, &lab, n, h, v, &o).loss_sum
            });
        }
    }

    #[test]
    fn all_ignored_gives_zero_and_optional_outputs() {
        let (n, h, v) = (6, 4, 9);
        let mut rng = Lcg::new(3);
        let x: Vec<f32> = rand_vec(&mut rng, n * h, 1.0);
        let w: Vec<f32> = rand_vec(&mut rng, v * h, 1.0);
        let lab = vec![-1i64; n];
        let o = CeOptions {
            ignore_index: -1,
            chunk: 4,
            ..Default::default()
        };
        let mut dx = vec![3.0f32; n * h];
        let r = linear_ce_fwd_bwd(&x, &w, &lab, n, h, v, &o, 1.0, Some(&mut dx), None);
        assert_eq!(
            r,
            CeResult {
                loss_sum: 0.0,
                n_valid: 0
            }
        );
        assert!(dx.iter().all(|&g| g == 0.0));
        // dw only: matches the dw of a run with both outputs.
        let lab: Vec<i64> = (0..n as i64).map(|t| t % v as i64).collect();
        let mut dw1 = vec![0.0f32; v * h];
        let mut dw2 = vec![0.0f32; v * h];
        linear_ce_fwd_bwd(&x, &w, &lab, n, h, v, &o, 1.0, None, Some(&mut dw1));
        linear_ce_fwd_bwd(
            &x,
            &w,
            &lab,
            n,
            h,
            v,
            &o,
            1.0,
            Some(&mut dx),
            Some(&mut dw2),
        );
        assert_eq!(dw1, dw2);
        assert!(dw1.iter().any(|&g| g != 0.0));
    }

    #[test]
    #[should_panic(expected = "label 9 of token 2")]
    fn out_of_range_label_panics() {
        let x = vec![0.0f32; 3 * 2];
        let w = vec![0.0f32; 9 * 2];
        linear_ce_forward(&x, &w, &[0, -100, 9], 3, 2, 9, &CeOptions::default());
    }

    #[test]
    fn auto_chunk_sizes() {
        assert_eq!(auto_chunk(1 << 30), 1);
        assert_eq!(auto_chunk(32_000), 262);
        assert!(auto_chunk(151_936) * 151_936 <= 8 << 20);
    }
}
