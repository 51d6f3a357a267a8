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

/// The per-step f32 scalars of the update, computed in f64 from [`AdamWParams`] (torch
/// computes them as Python floats) and rounded once to f32. The GPU twin takes these same
/// values, so its element update is bit-identical to [`adamw_step`]'s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWScalars {
    /// `1 - lr · weight_decay`.
    pub decay: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f32,
    /// `1 - beta1` (torch's lerp weight).
    pub w1: f32,
    /// `1 - beta2`.
    pub w2: f32,
    /// `beta2`.
    pub beta2: f32,
    /// `eps`.
    pub eps: f32,
}

impl AdamWParams {
    /// The f32 scalars of this step (`step` is clamped to at least 1).
    pub fn scalars(&self) -> AdamWScalars {
        let (lr, b1, b2) = (self.lr as f64, self.beta1 as f64, self.beta2 as f64);
        let t = self.step.clamp(1, i32::MAX as u64) as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt();
        AdamWScalars {
            decay: (1.0 - lr * self.weight_decay as f64) as f32,
            step_size: (lr / bc1) as f32,
            bc2_sqrt: bc2_sqrt as f32,
            w1: (1.0 - b1) as f32,
            w2: (1.0 - b2) as f32,
            beta2: self.beta2,
            eps: self.eps,
        }
    }
}

/// The update of one element (f32, no fused multiply-add: the GPU twin uses `__f*_rn`).
#[inline(always)]
fn update(p: &mut f32, m: &mut f32, v: &mut f32, g: f32, s: &AdamWScalars) {
    *p *= s.decay;
    // torch's lerp form of b1·m + (1-b1)·g (same value, its rounding).
    *m += s.w1 * (g - *m);
    *v = *v * s.beta2 + s.w2 * g * g;
    let denom = v.sqrt() / s.bc2_sqrt + s.eps;
    *p -= s.step_size * (*m / denom);
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
    let s = p.scalars();
    param
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((pc, mc), vc), gc)| {
            for (((p, m), v), &g) in pc.iter_mut().zip(mc).zip(vc).zip(gc) {
                update(p, m, v, g, &s);
            }
        });
}

/// A storage type the updated weights are copied into (the model's compute copy).
pub trait ParamCopy: Copy + Send + Sync {
    /// From f32, rounding to nearest even.
    fn round_from(v: f32) -> Self;
}

impl ParamCopy for f32 {
    fn round_from(v: f32) -> Self {
        v
    }
}

impl ParamCopy for half::bf16 {
    fn round_from(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
}

impl ParamCopy for half::f16 {
    fn round_from(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}

/// Mixed-precision AdamW: [`adamw_step`] on the fp32 master `param` with `grad` in any
/// storage type (widened exactly to f32: bf16/f16 grads of a bf16/f16 model), then
/// `copy[i] = round(param[i])` (the compute copy the next forward uses, e.g. bf16).
pub fn adamw_step_with_copy<G, C>(
    param: &mut [f32],
    grad: &[G],
    m: &mut [f32],
    v: &mut [f32],
    p: &AdamWParams,
    copy: &mut [C],
) where
    G: Copy + Sync + Into<f32>,
    C: ParamCopy,
{
    let n = param.len();
    assert!(
        grad.len() == n && m.len() == n && v.len() == n && copy.len() == n,
        "adamw: param/grad/m/v/copy length"
    );
    assert!(p.step >= 1, "adamw: step is 1-based, got {}", p.step);
    let s = p.scalars();
    param
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .zip(copy.par_chunks_mut(CHUNK))
        .for_each(|((((pc, mc), vc), gc), cc)| {
            for ((((p, m), v), &g), c) in pc.iter_mut().zip(mc).zip(vc).zip(gc).zip(cc) {
                update(p, m, v, g.into(), &s);
                *c = C::round_from(*p);
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
    fn with_copy_equals_plain_step_then_rounding() {
        let n = CHUNK + 33;
        let mut rng = Lcg::new(5);
        let p0: Vec<f32> = rand_vec(&mut rng, n, 1.0);
        let g32: Vec<f32> = rand_vec(&mut rng, n, 0.5);
        // bf16 grads: the plain step on their exact f32 widening is the reference.
        let gb: Vec<half::bf16> = g32.iter().map(|&x| half::bf16::from_f32(x)).collect();
        let gw: Vec<f32> = gb.iter().map(|&x| x.to_f32()).collect();
        let (mut pa, mut ma, mut va) = (p0.clone(), vec![0f32; n], vec![0f32; n]);
        let (mut pb, mut mb, mut vb) = (p0.clone(), vec![0f32; n], vec![0f32; n]);
        let mut copy = vec![half::bf16::ZERO; n];
        for step in 1..=3 {
            let h = AdamWParams {
                lr: 1e-3,
                weight_decay: 0.1,
                step,
                ..Default::default()
            };
            adamw_step(&mut pa, &gw, &mut ma, &mut va, &h);
            adamw_step_with_copy(&mut pb, &gb, &mut mb, &mut vb, &h, &mut copy);
        }
        assert_eq!(
            (&pa, &ma, &va),
            (&pb, &mb, &vb),
            "bit-identical master/state"
        );
        let want: Vec<half::bf16> = pa.iter().map(|&x| half::bf16::from_f32(x)).collect();
        assert_eq!(copy, want);
        let mut c32 = vec![0f32; n];
        adamw_step_with_copy(
            &mut pb,
            &gw,
            &mut mb,
            &mut vb,
            &AdamWParams::default(),
            &mut c32,
        );
        assert_eq!(c32, pb, "an f32 copy is the master itself");
    }

    #[test]
    fn defaults_are_hf() {
        let d = AdamWParams::default();
        assert_eq!((d.lr, d.beta1, d.beta2, d.eps), (5e-5, 0.9, 0.999, 1e-8));
        assert_eq!((d.weight_decay, d.step), (0.0, 1));
    }
}
