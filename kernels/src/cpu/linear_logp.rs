//! Fused linear + per-token log-probability of the label: `logp[t] = log softmax(x_t·wᵀ)[y_t]`
//! for every token, without the `[tokens, vocab]` logits. What preference losses (DPO, ORPO,
//! SimPO, KTO) need: sequence log-probs are sums of these over the response tokens, and their
//! loss is a function of several sequences at once, so the gradient cannot be folded into the
//! forward as the fused cross-entropy does.
//!
//! Forward: the chunk loop of [`crate::cpu::linear_ce`] with each token's loss kept
//! (`logp = −nll`, 0 for an ignored token). Backward, given the upstream `g[t] = ∂L/∂logp[t]`:
//! the same chunk loop again, recomputing each chunk's logits, with the per-token scale `−g[t]`
//! (`∂logp_t/∂z = onehot(y_t) − p_t = −∂nll_t/∂z`). So the only memory beyond inputs and
//! outputs is one `[chunk, vocab]` buffer in both passes; the price is a second forward matmul.
//! With a frozen `w` (LoRA), [`linear_logp_forward_dir`] writes each token's `∂logp/∂x` in the
//! forward instead (one `[n, hidden]` buffer), and the backward is a per-token scale: one
//! matmul and one softmax pass fewer per step. (The CUDA twin keeps the two-pass form.)
//! The final-logit softcap applies (Gemma 2); label smoothing and z-loss do not (they are not
//! part of a log-probability).

use crate::cpu::linear_ce::{run, CeOptions, GradScale};
use crate::Real;

fn check_opts(opts: &CeOptions) {
    assert!(
        opts.label_smoothing == 0.0 && opts.z_loss == 0.0,
        "linear_logp: label smoothing and z-loss do not apply to log-probabilities"
    );
}

/// `logp[t] = log softmax(x_t·wᵀ)[labels[t]]` (after the softcap), 0 where the label is
/// `ignore_index`. `x: [n, hidden]`, `w: [vocab, hidden]`, `labels: [n]`, `logp: [n]`.
#[allow(clippy::too_many_arguments)]
pub fn linear_logp_forward<T: Real>(
    x: &[T],
    w: &[T],
    labels: &[i64],
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
    logp: &mut [f64],
) {
    logp_pass(x, w, labels, (n, hidden, vocab), opts, logp, None);
}

/// Gradients of `Σ_t g[t]·logp[t]` with respect to `x` (`dx: [n, hidden]`, overwritten) and
/// `w` (`dw: [vocab, hidden]`, accumulated into). `g: [n]`; ignored tokens get nothing.
#[allow(clippy::too_many_arguments)]
pub fn linear_logp_backward<T: Real>(
    x: &[T],
    w: &[T],
    labels: &[i64],
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
    g: &[T],
    dx: Option<&mut [T]>,
    dw: Option<&mut [T]>,
) {
    check_opts(opts);
    assert_eq!(g.len(), n, "linear_logp: upstream gradient is not [n]");
    let neg: Vec<T> = g.iter().map(|&v| -v).collect();
    run(
        x,
        w,
        labels,
        n,
        hidden,
        vocab,
        opts,
        Some(GradScale::PerToken(&neg)),
        dx,
        dw,
        None,
    );
}

/// [`linear_logp_forward`] that also writes each token's input gradient direction
/// `dir[t] = ∂logp[t]/∂x_t = (onehot(y_t) − p_t)·w` (`dir: [n, hidden]`, zeros for ignored
/// tokens), in the same chunk loop: for a frozen `w` (LoRA, a tied frozen embedding) the
/// backward is then `dx[t] = g[t]·dir[t]`, with no second pass over the logits. Costs one
/// `[chunk, vocab]·[vocab, hidden]` product in the forward instead of two products and a
/// softmax in the backward.
#[allow(clippy::too_many_arguments)]
pub fn linear_logp_forward_dir<T: Real>(
    x: &[T],
    w: &[T],
    labels: &[i64],
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
    logp: &mut [f64],
    dir: &mut [T],
) {
    logp_pass(x, w, labels, (n, hidden, vocab), opts, logp, Some(dir));
}

/// The chunk loop for both forwards: per-token `logp` and, with `dir`, `∂logp/∂x` (the
/// gradient of nll is −∂logp, so a scale of −1 turns the loop's dx into it).
fn logp_pass<T: Real>(
    x: &[T],
    w: &[T],
    labels: &[i64],
    (n, hidden, vocab): (usize, usize, usize),
    opts: &CeOptions,
    logp: &mut [f64],
    dir: Option<&mut [T]>,
) {
    check_opts(opts);
    let scale = dir.is_some().then_some(GradScale::All(-T::one()));
    run(
        x,
        w,
        labels,
        n,
        hidden,
        vocab,
        opts,
        scale,
        dir,
        None,
        Some(&mut *logp),
    );
    logp.iter_mut().for_each(|l| *l = -*l);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, Lcg};

    /// Naive f64 reference: full logits, softcap, log-softmax at the label.
    fn naive(
        x: &[f64],
        w: &[f64],
        labels: &[i64],
        h: usize,
        v: usize,
        cap: Option<f64>,
    ) -> Vec<f64> {
        labels
            .iter()
            .enumerate()
            .map(|(t, &y)| {
                if y < 0 {
                    return 0.0;
                }
                let z: Vec<f64> = (0..v)
                    .map(|j| {
                        let r: f64 = (0..h).map(|k| x[t * h + k] * w[j * h + k]).sum();
                        cap.map_or(r, |c| c * (r / c).tanh())
                    })
                    .collect();
                let m = z.iter().cloned().fold(f64::MIN, f64::max);
                let lse = m + z.iter().map(|zj| (zj - m).exp()).sum::<f64>().ln();
                z[y as usize] - lse
            })
            .collect()
    }

    #[test]
    fn forward_matches_naive_for_every_chunk_size() {
        let (n, h, v) = (23, 16, 41);
        let mut rng = Lcg::new(11);
        let x: Vec<f64> = rand_vec(&mut rng, n * h, 1.0);
        let w: Vec<f64> = rand_vec(&mut rng, v * h, 0.7);
        let lab: Vec<i64> = (0..n)
            .map(|t| {
                if t % 4 == 0 {
                    -100
                } else {
                    rng.below(v) as i64
                }
            })
            .collect();
        for cap in [None, Some(2.5)] {
            let want = naive(&x, &w, &lab, h, v, cap);
            for chunk in [1, 5, 23, 64] {
                let o = CeOptions {
                    chunk,
                    softcap: cap,
                    ..Default::default()
                };
                let mut logp = vec![9.0; n];
                linear_logp_forward(&x, &w, &lab, n, h, v, &o, &mut logp);
                assert_close("logp", &logp, &want, 1e-12, 1e-10);
                assert!(logp.iter().all(|&l| l <= 0.0));
            }
        }
    }

    #[test]
    fn gradient_check_of_a_weighted_sum() {
        let (n, h, v) = (9, 5, 13);
        let mut rng = Lcg::new(12);
        let x: Vec<f64> = rand_vec(&mut rng, n * h, 1.0);
        let w: Vec<f64> = rand_vec(&mut rng, v * h, 1.0);
        let lab: Vec<i64> = vec![3, -100, 0, 12, 5, -100, 7, 1, 1];
        // Upstream weights of both signs, as a DPO loss gives chosen and rejected tokens.
        let g: Vec<f64> = rand_vec(&mut rng, n, 1.0);
        for o in [
            CeOptions {
                chunk: 4,
                ..Default::default()
            },
            CeOptions {
                chunk: 2,
                softcap: Some(1.5),
                ..Default::default()
            },
        ] {
            let f = |xp: &[f64], wp: &[f64]| {
                let mut l = vec![0.0; n];
                linear_logp_forward(xp, wp, &lab, n, h, v, &o, &mut l);
                l.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
            };
            let mut dx = vec![5.0; n * h]; // overwritten
            let mut dw = vec![0.0; v * h];
            linear_logp_backward(&x, &w, &lab, n, h, v, &o, &g, Some(&mut dx), Some(&mut dw));
            check_grad("dx", &x, &dx, |xp| f(xp, &w));
            check_grad("dw", &w, &dw, |wp| f(&x, wp));
            for t in [1, 5] {
                assert!(
                    dx[t * h..(t + 1) * h].iter().all(|&d| d == 0.0),
                    "ignored token {t}"
                );
            }
        }
    }

    /// The direction the forward writes, times the upstream weights, is the backward's dx.
    #[test]
    fn forward_direction_times_g_is_the_backward_dx() {
        let (n, h, v) = (11, 6, 29);
        let mut rng = Lcg::new(14);
        let x: Vec<f64> = rand_vec(&mut rng, n * h, 1.0);
        let w: Vec<f64> = rand_vec(&mut rng, v * h, 0.8);
        let lab: Vec<i64> = (0..n)
            .map(|t| {
                if t % 5 == 2 {
                    -100
                } else {
                    rng.below(v) as i64
                }
            })
            .collect();
        let g: Vec<f64> = rand_vec(&mut rng, n, 1.0);
        for o in [
            CeOptions {
                chunk: 3,
                ..Default::default()
            },
            CeOptions {
                chunk: 64,
                softcap: Some(2.0),
                ..Default::default()
            },
        ] {
            let mut want_l = vec![0.0; n];
            linear_logp_forward(&x, &w, &lab, n, h, v, &o, &mut want_l);
            let mut want_dx = vec![0.0; n * h];
            linear_logp_backward(&x, &w, &lab, n, h, v, &o, &g, Some(&mut want_dx), None);
            let (mut l, mut dir) = (vec![7.0; n], vec![7.0; n * h]);
            linear_logp_forward_dir(&x, &w, &lab, n, h, v, &o, &mut l, &mut dir);
            assert_close("logp", &l, &want_l, 1e-13, 1e-13);
            let dx: Vec<f64> = dir
                .chunks(h)
                .zip(&g)
                .flat_map(|(d, &gt)| d.iter().map(move |&e| gt * e))
                .collect();
            assert_close("dx", &dx, &want_dx, 1e-12, 1e-12);
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let (n, h, v) = (17, 32, 257);
        let mut rng = Lcg::new(13);
        let x: Vec<f64> = rand_vec(&mut rng, n * h, 1.0);
        let w: Vec<f64> = rand_vec(&mut rng, v * h, 0.3);
        let lab: Vec<i64> = (0..n).map(|_| rng.below(v) as i64).collect();
        let o = CeOptions::default();
        let mut l64 = vec![0.0; n];
        linear_logp_forward(&x, &w, &lab, n, h, v, &o, &mut l64);
        let xf: Vec<f32> = x.iter().map(|&a| a as f32).collect();
        let wf: Vec<f32> = w.iter().map(|&a| a as f32).collect();
        let mut l32 = vec![0.0; n];
        linear_logp_forward(&xf, &wf, &lab, n, h, v, &o, &mut l32);
        assert_close("logp f32", &l32, &l64, 1e-5, 1e-5);
    }

    #[test]
    #[should_panic(expected = "do not apply to log-probabilities")]
    fn smoothing_is_refused() {
        let o = CeOptions {
            label_smoothing: 0.1,
            ..Default::default()
        };
        linear_logp_forward(&[0.0f32; 2], &[0.0f32; 4], &[1], 1, 2, 2, &o, &mut [0.0]);
    }
}
