//! Rotary position embedding (RoPE) in Hugging Face's "rotate_half" layout, with the
//! scaling variants of transformers' `modeling_rope_utils.py` (default, linear, dynamic NTK,
//! Llama 3, YaRN).
//!
//! For one head vector `x: [head_dim]`, `rotary_dim = R <= head_dim`, `half = R / 2`:
//! - `out[i]        = x[i] * cos[i] - x[i + half] * sin[i]`   for `i < half`
//! - `out[i + half] = x[i + half] * cos[i] + x[i] * sin[i]`
//! - `out[d] = x[d]` for `d >= R` (partial rotary: the tail passes through).
//!
//! with `cos[i] = a · cos(pos · inv_freq[i])`, `sin[i] = a · sin(pos · inv_freq[i])` and `a`
//! the attention factor (1 except YaRN). Tables are built once per batch from explicit
//! positions, so packed sequences simply pass positions that restart at 0.
//!
//! The rotation is orthogonal (times `a`), so the backward pass is the same kernel with
//! `sin` negated: `dx = Rᵀ · dy`.

use crate::Real;
use rayon::prelude::*;
use std::f64::consts::PI;

/// How the rotary frequencies are scaled for long context (`config.rope_scaling`).
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE: `inv_freq[i] = theta^(-2i/R)`.
    Default,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// Interpolation factor (> 1 stretches the context).
        factor: f64,
    },
    /// Dynamic NTK: the base grows once the sequence exceeds the original context.
    Dynamic {
        /// Scaling factor.
        factor: f64,
        /// Context length the model was pretrained with.
        original_max_position_embeddings: usize,
    },
    /// Llama 3.1: low frequencies divided by `factor`, high ones kept, smooth in between.
    Llama3 {
        /// Scaling factor for the low frequencies.
        factor: f64,
        /// Wavelengths above `orig / low_freq_factor` are fully scaled.
        low_freq_factor: f64,
        /// Wavelengths below `orig / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// Context length the model was pretrained with.
        original_max_position_embeddings: usize,
    },
    /// YaRN: ramp between extrapolation (high freq) and interpolation (low freq), plus an
    /// attention factor on cos and sin.
    Yarn {
        /// Scaling factor (the caller resolves DeepSeek-style `max_pos / orig` if wanted).
        factor: f64,
        /// Context length the model was pretrained with.
        original_max_position_embeddings: usize,
        /// Dims making at least this many rotations over `orig` are kept (HF default 32).
        beta_fast: f64,
        /// Dims making at most this many rotations over `orig` are interpolated (HF default 1).
        beta_slow: f64,
        /// DeepSeek `mscale` (used with `mscale_all_dim` for the attention factor).
        mscale: Option<f64>,
        /// DeepSeek `mscale_all_dim`.
        mscale_all_dim: Option<f64>,
        /// Explicit attention factor; overrides the mscale rule.
        attention_factor: Option<f64>,
        /// Floor / ceil the correction range (HF's default `truncate = True`; GPT-OSS sets
        /// false and keeps the fractional bounds).
        truncate: bool,
    },
    /// Phi-3 LongRoPE (see [`RopeScaling::longrope`]).
    LongRope(Box<LongRope>),
}

impl RopeScaling {
    /// Phi-3's LongRoPE: per-dimension divisors `short_factor` for sequences within the
    /// pretrained context, `long_factor` beyond it (chosen per forward from the longest
    /// position), and a fixed attention factor on cos and sin.
    pub fn longrope(
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        original_max_position_embeddings: usize,
        attention_factor: f64,
    ) -> RopeScaling {
        RopeScaling::LongRope(Box::new(LongRope {
            short_factor,
            long_factor,
            original_max_position_embeddings,
            attention_factor,
        }))
    }
}

/// The parameters of [`RopeScaling::LongRope`].
#[derive(Clone, Debug, PartialEq)]
pub struct LongRope {
    /// Divisors of `theta^(-2i/R)` within the pretrained context (`R/2` of them).
    pub short_factor: Vec<f64>,
    /// Divisors beyond it.
    pub long_factor: Vec<f64>,
    /// Context length the model was pretrained with.
    pub original_max_position_embeddings: usize,
    /// Multiplies cos and sin: `√(1 + ln(max_pos / orig) / ln(orig))` unless configured.
    pub attention_factor: f64,
}

/// Rotary embedding parameters of one model.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    /// Full head dimension `D`.
    pub head_dim: usize,
    /// Rotated prefix `R <= D` (even); `head_dim * partial_rotary_factor` in HF configs.
    pub rotary_dim: usize,
    /// Base `rope_theta`.
    pub theta: f64,
    /// `config.max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// Frequency scaling variant.
    pub scaling: RopeScaling,
}

/// `theta^(-2i/R)` for `i < R/2`.
fn default_inv_freq(base: f64, r: usize) -> Vec<f64> {
    (0..r / 2)
        .map(|i| 1.0 / base.powf((2 * i) as f64 / r as f64))
        .collect()
}

/// YaRN magnitude correction `0.1 · m · ln(s) + 1` (1 when not extending).
fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

/// Fractional frequency index that makes `rotations` full turns over `max_pos` tokens.
fn yarn_correction_dim(rotations: f64, r: usize, base: f64, max_pos: usize) -> f64 {
    r as f64 * (max_pos as f64 / (rotations * 2.0 * PI)).ln() / (2.0 * base.ln())
}

impl RopeConfig {
    /// `(inv_freq [R/2], attention_factor)` for a sequence of `seq_len` tokens (only dynamic
    /// NTK depends on it), following transformers' `_compute_*_parameters`.
    pub fn inv_freq(&self, seq_len: usize) -> (Vec<f64>, f64) {
        let r = self.rotary_dim;
        assert!(
            r >= 2 && r.is_multiple_of(2) && r <= self.head_dim,
            "rope: rotary_dim {r} must be even, >= 2 and <= head_dim {}",
            self.head_dim
        );
        let base = self.theta;
        if let RopeScaling::LongRope(lr) = &self.scaling {
            // transformers' `_compute_longrope_parameters` + `longrope_frequency_update`
            let ext = if seq_len > lr.original_max_position_embeddings {
                &lr.long_factor
            } else {
                &lr.short_factor
            };
            assert!(
                ext.len() == r / 2,
                "rope: longrope factors need rotary_dim / 2 = {} entries, got {}",
                r / 2,
                ext.len()
            );
            let inv = default_inv_freq(base, r)
                .into_iter()
                .zip(ext)
                .map(|(f, e)| f / e);
            return (inv.collect(), lr.attention_factor);
        }
        match self.scaling {
            RopeScaling::Default => (default_inv_freq(base, r), 1.0),
            RopeScaling::LongRope(_) => unreachable!("handled above"),
            RopeScaling::Linear { factor } => {
                let inv = default_inv_freq(base, r).into_iter().map(|f| f / factor);
                (inv.collect(), 1.0)
            }
            RopeScaling::Dynamic {
                factor,
                original_max_position_embeddings: orig,
            } => {
                if seq_len <= orig {
                    return (default_inv_freq(base, r), 1.0);
                }
                // NTK-aware: grow the base so the longest wavelength covers seq_len.
                let grow = factor * seq_len as f64 / orig as f64 - (factor - 1.0);
                let new_base = base * grow.powf(r as f64 / (r as f64 - 2.0));
                (default_inv_freq(new_base, r), 1.0)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig,
            } => {
                let orig = orig as f64;
                let (low_wavelen, high_wavelen) = (orig / low, orig / high);
                let inv = default_inv_freq(base, r).into_iter().map(|f| {
                    let wavelen = 2.0 * PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let s = (orig / wavelen - low) / (high - low);
                        (1.0 - s) * f / factor + s * f
                    }
                });
                (inv.collect(), 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: orig,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                attention_factor,
                truncate,
            } => {
                // Python truthiness in HF: both present and non-zero.
                let af = match (attention_factor, mscale, mscale_all_dim) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(ma)) if m != 0.0 && ma != 0.0 => {
                        yarn_mscale(factor, m) / yarn_mscale(factor, ma)
                    }
                    _ => yarn_mscale(factor, 1.0),
                };
                // HF's default `truncate = True`: floor / ceil the correction range.
                let (mut lo, mut hi) = (
                    yarn_correction_dim(beta_fast, r, base, orig),
                    yarn_correction_dim(beta_slow, r, base, orig),
                );
                if truncate {
                    (lo, hi) = (lo.floor(), hi.ceil());
                }
                let lo = lo.max(0.0);
                let mut hi = hi.min((r - 1) as f64);
                if lo == hi {
                    hi += 0.001; // avoid a zero-width ramp
                }
                let inv = default_inv_freq(base, r)
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| {
                        // ramp 0 -> keep (extrapolate), ramp 1 -> divide by factor.
                        let ramp = ((i as f64 - lo) / (hi - lo)).clamp(0.0, 1.0);
                        f / factor * ramp + f * (1.0 - ramp)
                    });
                (inv.collect(), af)
            }
        }
    }
}

/// `(cos, sin)`, each `[positions.len(), R/2]`, already multiplied by the attention factor.
/// Dynamic NTK uses `seq_len = max(position) + 1`.
pub fn rope_tables<T: Real>(cfg: &RopeConfig, positions: &[i64]) -> (Vec<T>, Vec<T>) {
    let seq_len = positions.iter().map(|&p| p + 1).max().unwrap_or(0).max(0) as usize;
    let (inv, af) = cfg.inv_freq(seq_len);
    let half = inv.len();
    let mut cos = vec![T::zero(); positions.len() * half];
    let mut sin = vec![T::zero(); positions.len() * half];
    for (t, &p) in positions.iter().enumerate() {
        for (i, &f) in inv.iter().enumerate() {
            // Angles in f64: large positions times small frequencies lose bits in f32.
            let (s, c) = (p as f64 * f).sin_cos();
            cos[t * half + i] = T::of(af * c);
            sin[t * half + i] = T::of(af * s);
        }
    }
    (cos, sin)
}

/// Shared rotation: `y = rotate(x)` with `sin` scaled by `sign` (+1 forward, -1 transpose).
#[allow(clippy::too_many_arguments)]
fn rotate<T: Real>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    tokens: usize,
    heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    sign: T,
    y: &mut [T],
) {
    let half = rotary_dim / 2;
    assert!(
        rotary_dim.is_multiple_of(2) && rotary_dim <= head_dim,
        "rope: rotary_dim {rotary_dim} must be even and <= head_dim {head_dim}"
    );
    let row = heads * head_dim;
    assert_eq!(
        x.len(),
        tokens * row,
        "rope: x must be [tokens, heads, head_dim]"
    );
    assert_eq!(
        y.len(),
        tokens * row,
        "rope: y must be [tokens, heads, head_dim]"
    );
    assert_eq!(
        cos.len(),
        tokens * half,
        "rope: cos must be [tokens, rotary_dim/2]"
    );
    assert_eq!(
        sin.len(),
        tokens * half,
        "rope: sin must be [tokens, rotary_dim/2]"
    );
    if row == 0 {
        return;
    }
    // y, x: [tokens, heads, head_dim]; cos, sin: [tokens, half]; one token per task.
    y.par_chunks_mut(row).enumerate().for_each(|(t, yt)| {
        let xt = &x[t * row..(t + 1) * row];
        let (c, s) = (
            &cos[t * half..(t + 1) * half],
            &sin[t * half..(t + 1) * half],
        );
        for (yh, xh) in yt.chunks_mut(head_dim).zip(xt.chunks(head_dim)) {
            for i in 0..half {
                let (a, b) = (xh[i], xh[i + half]);
                let si = sign * s[i];
                yh[i] = a * c[i] - b * si;
                yh[i + half] = b * c[i] + a * si;
            }
            yh[rotary_dim..].copy_from_slice(&xh[rotary_dim..]);
        }
    });
}

/// RoPE forward: `y = rope(x)`; x, y: `[tokens, heads, head_dim]`, cos, sin:
/// `[tokens, rotary_dim/2]` (rows from [`rope_tables`]).
#[allow(clippy::too_many_arguments)]
pub fn rope_forward<T: Real>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    tokens: usize,
    heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    y: &mut [T],
) {
    rotate(
        x,
        cos,
        sin,
        tokens,
        heads,
        head_dim,
        rotary_dim,
        T::one(),
        y,
    );
}

/// RoPE backward: `dx = Rᵀ dy` (the forward with `sin` negated); same shapes as
/// [`rope_forward`]. Overwrites `dx`.
#[allow(clippy::too_many_arguments)]
pub fn rope_backward<T: Real>(
    dy: &[T],
    cos: &[T],
    sin: &[T],
    tokens: usize,
    heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    dx: &mut [T],
) {
    rotate(
        dy,
        cos,
        sin,
        tokens,
        heads,
        head_dim,
        rotary_dim,
        -T::one(),
        dx,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, Lcg};

    fn cfg(head_dim: usize, rotary_dim: usize, theta: f64, scaling: RopeScaling) -> RopeConfig {
        RopeConfig {
            head_dim,
            rotary_dim,
            theta,
            max_position_embeddings: 4096,
            scaling,
        }
    }

    fn yarn(factor: f64, mscale: Option<f64>, all: Option<f64>, af: Option<f64>) -> RopeScaling {
        RopeScaling::Yarn {
            factor,
            original_max_position_embeddings: 4096,
            beta_fast: 32.0,
            beta_slow: 1.0,
            mscale,
            mscale_all_dim: all,
            attention_factor: af,
            truncate: true,
        }
    }

    fn grad_case(rotary_dim: usize, scaling: RopeScaling, seed: u64) {
        let (tokens, heads, head_dim) = (37, 3, 16);
        let c = cfg(head_dim, rotary_dim, 10000.0, scaling);
        // Two packed sequences: positions restart at 0.
        let pos: Vec<i64> = (0..20).chain(0..17).collect();
        let (cos, sin) = rope_tables::<f64>(&c, &pos);
        let mut rng = Lcg::new(seed);
        let n = tokens * heads * head_dim;
        let x = rand_vec::<f64>(&mut rng, n, 1.0);
        let w = rand_vec::<f64>(&mut rng, n, 1.0);
        let loss = |x: &[f64]| {
            let mut y = vec![0.0; n];
            rope_forward(x, &cos, &sin, tokens, heads, head_dim, rotary_dim, &mut y);
            y.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut dx = vec![f64::NAN; n];
        rope_backward(&w, &cos, &sin, tokens, heads, head_dim, rotary_dim, &mut dx);
        check_grad("rope dx", &x, &dx, loss);
    }

    #[test]
    fn gradient_full_rotary() {
        grad_case(16, RopeScaling::Default, 1);
    }

    #[test]
    fn gradient_partial_rotary_yarn() {
        // rotary_dim 8 < head_dim 16, and an attention factor != 1.
        grad_case(8, yarn(4.0, None, None, None), 2);
    }

    #[test]
    fn rotation_preserves_norm_and_passes_tail() {
        let (tokens, heads, head_dim, r) = (37, 3, 16, 10);
        let c = cfg(head_dim, r, 10000.0, RopeScaling::Default);
        let pos: Vec<i64> = (0..tokens as i64).map(|p| p * 97).collect();
        let (cos, sin) = rope_tables::<f64>(&c, &pos);
        let mut rng = Lcg::new(3);
        let x = rand_vec::<f64>(&mut rng, tokens * heads * head_dim, 1.0);
        let mut y = vec![0.0; x.len()];
        rope_forward(&x, &cos, &sin, tokens, heads, head_dim, r, &mut y);
        let mut changed = false;
        for (xh, yh) in x.chunks(head_dim).zip(y.chunks(head_dim)) {
            let nx: f64 = xh[..r].iter().map(|v| v * v).sum();
            let ny: f64 = yh[..r].iter().map(|v| v * v).sum();
            assert!((nx - ny).abs() < 1e-12 * nx.max(1.0), "norm {nx} vs {ny}");
            assert_eq!(&xh[r..], &yh[r..], "tail must pass through");
            changed |= xh[..r]
                .iter()
                .zip(&yh[..r])
                .any(|(a, b)| (a - b).abs() > 1e-3);
        }
        assert!(changed, "rope must actually rotate");
    }

    fn rope_one(c: &RopeConfig, v: &[f64], pos: i64) -> Vec<f64> {
        let (cos, sin) = rope_tables::<f64>(c, &[pos]);
        let mut y = vec![0.0; v.len()];
        rope_forward(v, &cos, &sin, 1, 1, c.head_dim, c.rotary_dim, &mut y);
        y
    }

    #[test]
    fn dot_depends_only_on_relative_position() {
        let c = cfg(16, 16, 10000.0, RopeScaling::Default);
        let mut rng = Lcg::new(4);
        let q = rand_vec::<f64>(&mut rng, 16, 1.0);
        let k = rand_vec::<f64>(&mut rng, 16, 1.0);
        let dot = |m: i64, n: i64| -> f64 {
            let (a, b) = (rope_one(&c, &q, m), rope_one(&c, &k, n));
            a.iter().zip(&b).map(|(x, y)| x * y).sum()
        };
        let base = dot(5, 2);
        for (m, n) in [(3, 0), (103, 100), (1000, 997), (40_003, 40_000)] {
            let d = dot(m, n);
            assert!((d - base).abs() < 1e-9, "({m},{n}): {d} vs {base}");
        }
        assert!(
            (dot(7, 2) - base).abs() > 1e-6,
            "a different offset must differ"
        );
    }

    #[test]
    fn f32_matches_f64() {
        let (tokens, heads, head_dim, r) = (37, 3, 16, 16);
        let c = cfg(head_dim, r, 500000.0, RopeScaling::Default);
        let pos: Vec<i64> = (0..tokens as i64).map(|p| p * 131).collect();
        let (c64, s64) = rope_tables::<f64>(&c, &pos);
        let (c32, s32) = rope_tables::<f32>(&c, &pos);
        let mut rng = Lcg::new(5);
        let x = rand_vec::<f64>(&mut rng, tokens * heads * head_dim, 1.0);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let (mut y, mut y32) = (vec![0.0; x.len()], vec![0.0f32; x.len()]);
        rope_forward(&x, &c64, &s64, tokens, heads, head_dim, r, &mut y);
        rope_forward(&x32, &c32, &s32, tokens, heads, head_dim, r, &mut y32);
        let y32: Vec<f64> = y32.iter().map(|&v| v as f64).collect();
        assert_close("rope f32", &y32, &y, 1e-5, 1e-5);
    }

    #[test]
    fn inv_freq_default_and_linear() {
        let r = 12;
        let (d, a) = cfg(16, r, 10000.0, RopeScaling::Default).inv_freq(10);
        assert_eq!((d.len(), a), (r / 2, 1.0));
        for (i, f) in d.iter().enumerate() {
            let want = 10000f64.powf(-2.0 * i as f64 / r as f64);
            assert!((f - want).abs() < 1e-15, "default[{i}]");
        }
        let (l, a) = cfg(16, r, 10000.0, RopeScaling::Linear { factor: 4.0 }).inv_freq(10);
        assert_eq!(a, 1.0);
        for (i, (f, g)) in l.iter().zip(&d).enumerate() {
            assert!((f - g / 4.0).abs() < 1e-15, "linear[{i}]");
        }
    }

    #[test]
    fn inv_freq_dynamic_ntk() {
        let (r, orig, factor) = (16, 2048, 2.0);
        let scaling = RopeScaling::Dynamic {
            factor,
            original_max_position_embeddings: orig,
        };
        let c = cfg(16, r, 10000.0, scaling);
        let (d, _) = cfg(16, r, 10000.0, RopeScaling::Default).inv_freq(0);
        assert_eq!(c.inv_freq(orig).0, d, "seq_len <= orig is the default");
        let seq = 3 * orig;
        let base = 10000.0 * (factor * 3.0 - (factor - 1.0)).powf(16.0 / 14.0);
        let (dy, _) = c.inv_freq(seq);
        assert!(dy[1] < d[1], "longer sequences slow the rotation");
        for (i, f) in dy.iter().enumerate() {
            let want = base.powf(-2.0 * i as f64 / r as f64);
            assert!((f - want).abs() < 1e-14, "dynamic[{i}]: {f} vs {want}");
        }
        // rope_tables uses seq_len = max(pos) + 1.
        let (cos, _) = rope_tables::<f64>(&c, &[0, seq as i64 - 1]);
        let want = ((seq - 1) as f64 * dy[1]).cos();
        assert!((cos[r / 2 + 1] - want).abs() < 1e-12);
    }

    #[test]
    fn inv_freq_llama3() {
        let (r, factor, low, high, orig) = (128, 8.0, 1.0, 4.0, 8192usize);
        let scaling = RopeScaling::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_position_embeddings: orig,
        };
        let (l, a) = cfg(128, r, 500000.0, scaling).inv_freq(1);
        let (d, _) = cfg(128, r, 500000.0, RopeScaling::Default).inv_freq(1);
        assert_eq!(a, 1.0);
        let (mut kept, mut scaled, mut mid) = (0, 0, 0);
        for i in 0..r / 2 {
            let wavelen = 2.0 * PI / d[i];
            if wavelen < orig as f64 / high {
                assert_eq!(l[i], d[i], "high freq [{i}] kept");
                kept += 1;
            } else if wavelen > orig as f64 / low {
                assert!(
                    (l[i] - d[i] / factor).abs() < 1e-18,
                    "low freq [{i}] scaled"
                );
                scaled += 1;
            } else {
                let s = (orig as f64 / wavelen - low) / (high - low);
                let want = ((1.0 - s) / factor + s) * d[i];
                assert!((l[i] - want).abs() < 1e-15 * d[i].max(1e-3), "mid [{i}]");
                assert!(
                    l[i] < d[i] && l[i] > d[i] / factor,
                    "mid [{i}] strictly between"
                );
                mid += 1;
            }
        }
        assert!(kept > 0 && scaled > 0 && mid > 0, "{kept} {scaled} {mid}");
    }

    #[test]
    fn inv_freq_yarn() {
        let (r, factor, orig) = (64, 4.0, 4096.0);
        let (y, a) = cfg(64, r, 10000.0, yarn(factor, None, None, None)).inv_freq(1);
        let (d, _) = cfg(64, r, 10000.0, RopeScaling::Default).inv_freq(1);
        assert!(
            (a - (0.1 * factor.ln() + 1.0)).abs() < 1e-15,
            "attention factor {a}"
        );
        let (mut kept, mut scaled, mut mid) = (0, 0, 0);
        for i in 0..r / 2 {
            // Full turns this dim makes over the original context.
            let turns = orig * d[i] / (2.0 * PI);
            if turns >= 32.0 {
                assert_eq!(y[i], d[i], "fast dim [{i}] kept");
                kept += 1;
            } else if turns <= 1.0 {
                assert!(
                    (y[i] - d[i] / factor).abs() < 1e-18,
                    "slow dim [{i}] scaled"
                );
                scaled += 1;
            } else {
                assert!(y[i] <= d[i] && y[i] >= d[i] / factor, "mid [{i}] in range");
                mid += 1;
            }
        }
        assert!(kept > 0 && scaled > 0 && mid > 0, "{kept} {scaled} {mid}");
        // DeepSeek-style mscale pair cancels; an explicit factor wins; factor 1 is neutral.
        let af = |s| cfg(64, r, 10000.0, s).inv_freq(1).1;
        assert_eq!(af(yarn(factor, Some(1.0), Some(1.0), None)), 1.0);
        let want = (0.1 * 0.707 * factor.ln() + 1.0) / (0.1 * 1.0 * factor.ln() + 1.0);
        assert!((af(yarn(factor, Some(0.707), Some(1.0), None)) - want).abs() < 1e-15);
        assert_eq!(af(yarn(factor, None, None, Some(1.25))), 1.25);
        assert_eq!(af(yarn(1.0, None, None, None)), 1.0);
        // The tables carry the attention factor: cos^2 + sin^2 = a^2.
        let (cos, sin) =
            rope_tables::<f64>(&cfg(64, r, 10000.0, yarn(factor, None, None, None)), &[77]);
        for (c, s) in cos.iter().zip(&sin) {
            assert!((c * c + s * s - a * a).abs() < 1e-12);
        }
    }
}
