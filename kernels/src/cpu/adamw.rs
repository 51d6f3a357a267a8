//! AdamW optimizer step, exactly as `torch.optim.AdamW` (the HF Trainer default) computes
//! it, on f32 master weights: decoupled weight decay first, then the bias-corrected Adam
//! update. Bias corrections are computed in f64 like torch's Python-float scalars.

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// AdamW hyper-parameters for one step; `step` is 1-based (the step being taken).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWParams {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator epsilon (added after the bias-corrected sqrt, as torch does).
    pub eps: f32,
    /// Decoupled weight decay: `p *= 1 - lr · weight_decay` before the Adam update.
    pub weight_decay: f32,
    /// 1-based step number, used for bias correction.
    pub step: u64,
}

impl Default for AdamWParams {
    /// HF `TrainingArguments` defaults: lr 5e-5, betas (0.9, 0.999), eps 1e-8, no decay.
    fn default() -> Self {
        AdamWParams {
            lr: 5e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 1,
        }
    }
}

/// One AdamW step in place over `param`, `m`, `v` (all `[n]`) given `grad: [n]`:
/// `p *= 1 - lr·wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²;
/// p -= (lr / (1 - b1^t)) · m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
pub fn adamw_step(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], p: &AdamWParams) {
    let n = param.len();
    assert!(
        grad.len() == n && m.len() == n && v.len() == n,
        "adamw: param/grad/m/v length"
    );
    assert!(p.step >= 1, "adamw: step is 1-based, got {}", p.step);
    // Scalars in f64 (torch computes them as Python floats), then rounded once to f32.
    let (lr, b1, b2) = (p.lr as f64, p.beta1 as f64, p.beta2 as f64);
    let t = p.step.min(i32::MAX as u64) as i32;
    let bc1 = 1.0 - b1.powi(t);
    let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
    let decay = (1.0 - lr * p.weight_decay as f64) as f32;
    let step_size = (lr / bc1) as f32;
    let bc2_sqrt = bc2_sqrt as f32;
    let (w1, w2, beta2, eps) = ((1.0 - b1) as f32, (1.0 - b2) as f32, p.beta2, p.eps);
    param
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((pc, mc), vc), gc)| {
            for (((p, m), v), &g) in pc.iter_mut().zip(mc).zip(vc).zip(gc) {
                *p *= decay;
                // torch's lerp form of b1·m + (1-b1)·g (same value, its rounding).
                *m += w1 * (g - *m);
                *v = *v * beta2 + w2 * g * g;
                let denom = v.sqrt() / bc2_sqrt + eps;
                *p -= step_size * (*m / denom);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, rand_vec, Lcg};

    /// The formula written out in f64.
    fn reference(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], h: &AdamWParams) {
        let (lr, b1, b2) = (h.lr as f64, h.beta1 as f64, h.beta2 as f64);
        let (eps, wd, t) = (h.eps as f64, h.weight_decay as f64, h.step as i32);
        for i in 0..p.len() {
            p[i] *= 1.0 - lr * wd;
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let denom = v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
            p[i] -= lr / (1.0 - b1.powi(t)) * m[i] / denom;
        }
    }

    fn f64s(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&a| a as f64).collect()
    }

    #[test]
    fn several_steps_match_f64_reference() {
        // n spans several parallel chunks with a ragged tail.
        let n = 2 * CHUNK + 101;
        let mut rng = Lcg::new(1);
        let mut p: Vec<f32> = rand_vec(&mut rng, n, 1.0);
        let p_start = p.clone();
        let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
        let mut pr = f64s(&p);
        let (mut mr, mut vr) = (vec![0f64; n], vec![0f64; n]);
        for step in 1..=5 {
            let h = AdamWParams {
                lr: 1e-3,
                weight_decay: 0.01,
                step,
                ..Default::default()
            };
            let g: Vec<f32> = rand_vec(&mut rng, n, 0.5);
            adamw_step(&mut p, &g, &mut m, &mut v, &h);
            reference(&mut pr, &f64s(&g), &mut mr, &mut vr, &h);
        }
        assert_close("p", &f64s(&p), &pr, 1e-7, 1e-6);
        assert_close("m", &f64s(&m), &mr, 1e-7, 1e-5);
        assert_close("v", &f64s(&v), &vr, 1e-9, 1e-5);
        // The params really moved (about 5 lr): the comparison above is not vacuous.
        let moved = p
            .iter()
            .zip(&p_start)
            .filter(|(a, b)| (**a - **b).abs() > 1e-3);
        assert!(moved.count() > n / 2);
    }

    #[test]
    fn decay_is_decoupled() {
        // Zero gradient (and zero moments): only the decay acts, p *= 1 - lr·wd.
        let h = AdamWParams {
            lr: 0.1,
            weight_decay: 0.5,
            step: 3,
            ..Default::default()
        };
        let mut p = vec![2.0f32, -1.0, 0.25];
        let (mut m, mut v) = (vec![0f32; 3], vec![0f32; 3]);
        adamw_step(&mut p, &[0.0; 3], &mut m, &mut v, &h);
        assert_close("decayed p", &f64s(&p), &[1.9, -0.95, 0.2375], 1e-7, 1e-6);
        assert!(m.iter().chain(&v).all(|&a| a == 0.0));
    }

    #[test]
    fn first_step_moves_by_lr_sign_g() {
        let h = AdamWParams {
            lr: 1e-2,
            ..Default::default()
        };
        let mut rng = Lcg::new(2);
        let n = 257;
        let p0: Vec<f32> = rand_vec(&mut rng, n, 1.0);
        // |g| >> eps so g / (|g| + eps) ≈ sign(g).
        let g: Vec<f32> = (0..n)
            .map(|i| (if i % 2 == 0 { 1.0 } else { -1.0 }) * (1e-3 + rng.next_f64() as f32))
            .collect();
        let mut p = p0.clone();
        let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
        adamw_step(&mut p, &g, &mut m, &mut v, &h);
        for i in 0..n {
            let delta = (p[i] - p0[i]) as f64;
            let want = -1e-2 * (g[i] as f64).signum();
            assert!(
                (delta - want).abs() < 1e-6,
                "p[{i}] moved {delta}, want {want}"
            );
        }
    }

    #[test]
    fn defaults_are_hf() {
        let d = AdamWParams::default();
        assert_eq!((d.lr, d.beta1, d.beta2, d.eps), (5e-5, 0.9, 0.999, 1e-8));
        assert_eq!((d.weight_decay, d.step), (0.0, 1));
    }
}
