//! GaLore (Zhao et al. 2024, "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
//! Projection") as `galore_torch.GaLoreAdamW` runs it under LLaMA-Factory:
//!
//! - each target weight `W: [m, n]` keeps its Adam moments in a rank-`r` subspace of its
//!   gradient: `R = G·Pᵀ` (`P = Vh[:r]`, "right") or `R = Pᵀ·G` (`P = U[:, :r]`, "left"), the
//!   side chosen by `proj_type` and the shape (std: right when `m ≥ n`);
//! - `P` comes from the thin SVD of the gradient, refreshed when the parameter's step count is a
//!   multiple of `update_interval` (its steps 1, 1 + gap, ...); the moments carry over a refresh
//!   unchanged;
//! - the Adam direction `N = m / (√v + eps)` is projected back (`N·P` or `P·N`) and scaled by
//!   `scale`.
//!
//! Every parameter (targets or not) is stepped by Hugging Face's old `AdamW` formula, which
//! galore_torch copies: `eps` on `√v` before bias correction, `step_size = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)`,
//! then decay on the updated weight, `p −= lr·wd·p` ([`hf_adamw_direction`]).
//!
//! Singular vectors have no preferred sign. lmf makes the largest-|entry| of each kept vector
//! positive; LAPACK picks whatever its algorithm gives, and after a refresh the old moments meet
//! the new basis, so the sign choice changes the trajectory. To replay a torch run exactly, the
//! test hook `LMF_GALORE_SVD_SIGNS` (a JSON list of `{param, opt_step, signs}`, what
//! `make_train.py` records) sets the sign of each vector at each refresh.

use std::collections::{BTreeSet, HashMap};

use faer::Mat;
use lmf_kernels::cpu::gemm::{matmul, MatMut, MatRef};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which side(s) of the gradient the projection multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// `R = G·Pᵀ`, `P: [r, n]`.
    Right,
    /// `R = Pᵀ·G`, `P: [m, r]`.
    Left,
    /// `R = P_Lᵀ·G·P_Rᵀ`.
    Full,
}

/// `galore_proj_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjType {
    /// Right when `m ≥ n`, else left.
    Std,
    /// Left when `m ≥ n`, else right.
    ReverseStd,
    /// Always right.
    Right,
    /// Always left.
    Left,
    /// Both sides.
    Full,
}

impl ProjType {
    /// The side for a `[m, n]` gradient.
    pub fn side(self, m: usize, n: usize) -> Side {
        match self {
            ProjType::Std if m >= n => Side::Right,
            ProjType::Std => Side::Left,
            ProjType::ReverseStd if m >= n => Side::Left,
            ProjType::ReverseStd => Side::Right,
            ProjType::Right => Side::Right,
            ProjType::Left => Side::Left,
            ProjType::Full => Side::Full,
        }
    }
}

/// GaLore's settings (LF's `galore_*` arguments) and the parameters it applies to.
#[derive(Clone, Debug)]
pub struct GaloreSettings {
    /// Projection rank.
    pub rank: usize,
    /// Steps between refreshes of `P`.
    pub update_interval: u64,
    /// Scale of the projected-back update.
    pub scale: f32,
    /// Projection side rule.
    pub proj_type: ProjType,
    /// The target parameters (HF names).
    pub targets: BTreeSet<String>,
    /// Replayed singular-vector signs by (parameter, step count after the refresh).
    pub signs: HashMap<(String, u64), Vec<f32>>,
    /// APOLLO instead of GaLore's update (see [`ApolloSettings`]).
    pub apollo: Option<ApolloSettings>,
    /// APOLLO's first projection seed of each target: its 1-based position among all the
    /// optimizer's parameters (apollo-torch numbers them in group order).
    pub seeds: HashMap<String, u64>,
}

/// APOLLO (Zhu et al. 2024, "APOLLO: SGD-like Memory, AdamW-level Performance"), as
/// `apollo_torch.APOLLOAdamW`: the low-rank Adam state of GaLore only sets a scale; the update
/// is the full gradient times `‖N‖ / ‖R‖` per row or column (`channel`, on the side the
/// projection keeps whole) or per tensor, through the norm-growth limiter, times `√scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApolloSettings {
    /// `apollo_proj: random` (`P = randn(seed) / √r`, torch's generator) or `svd` (GaLore's).
    pub random: bool,
    /// `apollo_scale_type: channel` (else `tensor`).
    pub channel: bool,
}

impl GaloreSettings {
    /// Reads the sign replay file named by `LMF_GALORE_SVD_SIGNS`, when set.
    pub fn load_sign_hook(&mut self) -> Result<()> {
        let Ok(path) = std::env::var("LMF_GALORE_SVD_SIGNS") else {
            return Ok(());
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Msg(format!("LMF_GALORE_SVD_SIGNS: {path}: {e}")))?;
        #[derive(Deserialize)]
        struct Entry {
            param: String,
            opt_step: u64,
            signs: Vec<f32>,
        }
        let entries: Vec<Entry> = serde_json::from_str(&text)
            .map_err(|e| Error::Msg(format!("LMF_GALORE_SVD_SIGNS: {path}: {e}")))?;
        for e in entries {
            self.signs.insert((e.param, e.opt_step), e.signs);
        }
        Ok(())
    }
}

/// One weight's projection: `left: [m, r]` and/or `right: [r, n]` (row-major f32).
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// Which of the two matrices apply.
    pub side: Side,
    /// Rows of the gradient.
    pub m: usize,
    /// Columns of the gradient.
    pub n: usize,
    /// Kept rank (`min(rank, m, n)`).
    pub r: usize,
    /// `U[:, :r]` (`[m, r]`), empty unless left or full.
    pub left: Vec<f32>,
    /// `Vh[:r]` (`[r, n]`), empty unless right or full.
    pub right: Vec<f32>,
}

impl Projection {
    /// The projection of gradient `g: [m, n]` on `side`, from its thin SVD (in f64), each kept
    /// vector signed so that its largest-|entry| is positive, times `signs[i]` when given.
    pub fn fit(
        g: &[f32],
        m: usize,
        n: usize,
        rank: usize,
        side: Side,
        signs: Option<&[f32]>,
    ) -> Result<Projection> {
        let a = Mat::<f64>::from_fn(m, n, |i, j| g[i * n + j] as f64);
        let svd = a
            .thin_svd()
            .map_err(|e| Error::Msg(format!("GaLore: SVD of a [{m}, {n}] gradient: {e:?}")))?;
        let r = rank.min(m).min(n);
        let (u, v) = (svd.U(), svd.V());
        let sign_of = |k: usize, vec: &dyn Fn(usize) -> f64, len: usize| -> f64 {
            let (mut best, mut at) = (-1.0f64, 0usize);
            for i in 0..len {
                if vec(i).abs() > best {
                    best = vec(i).abs();
                    at = i;
                }
            }
            let s = if vec(at) < 0.0 { -1.0 } else { 1.0 };
            s * signs.and_then(|s| s.get(k)).copied().unwrap_or(1.0) as f64
        };
        let mut left = vec![];
        let mut right = vec![];
        if matches!(side, Side::Left | Side::Full) {
            left = vec![0f32; m * r];
            for k in 0..r {
                let s = sign_of(k, &|i| u[(i, k)], m);
                for i in 0..m {
                    left[i * r + k] = (s * u[(i, k)]) as f32;
                }
            }
        }
        if matches!(side, Side::Right | Side::Full) {
            right = vec![0f32; r * n];
            for k in 0..r {
                // row k of Vh = column k of V
                let s = sign_of(k, &|j| v[(j, k)], n);
                for j in 0..n {
                    right[k * n + j] = (s * v[(j, k)]) as f32;
                }
            }
        }
        Ok(Projection {
            side,
            m,
            n,
            r,
            left,
            right,
        })
    }

    /// APOLLO's random projection on `side`: `torch.randn(shape, seed) / √rank` in f32.
    pub fn random(m: usize, n: usize, rank: usize, side: Side, seed: u64) -> Result<Projection> {
        let div = (rank as f64).sqrt() as f32;
        let draw = |len: usize| -> Result<Vec<f32>> {
            if len < 16 {
                return Err(Error::Msg(format!(
                    "APOLLO: a {len}-value projection is below the 16 values lmf draws as torch does"
                )));
            }
            Ok(super::torch_randn::randn(len, seed)
                .into_iter()
                .map(|v| v / div)
                .collect())
        };
        let (left, right) = match side {
            Side::Right => (vec![], draw(rank * n)?),
            Side::Left => (draw(m * rank)?, vec![]),
            Side::Full => {
                return Err(Error::Msg(
                    "APOLLO: full rank projection is not implemented yet".into(),
                ))
            }
        };
        Ok(Projection {
            side,
            m,
            n,
            r: rank,
            left,
            right,
        })
    }

    /// Shape of the projected gradient.
    pub fn low_shape(&self) -> (usize, usize) {
        match self.side {
            Side::Right => (self.m, self.r),
            Side::Left => (self.r, self.n),
            Side::Full => (self.r, self.r),
        }
    }

    /// `G: [m, n]` → the projected gradient.
    pub fn project(&self, g: &[f32]) -> Vec<f32> {
        let (m, n, r) = (self.m, self.n, self.r);
        let right_t = |x: &[f32], rows: usize| {
            // x: [rows, n] · Pᵀ ([n, r])
            let mut out = vec![0f32; rows * r];
            lmf_kernels::cpu::gemm::gemm(
                MatMut::new(&mut out, rows, r),
                MatRef::new(x, rows, n),
                MatRef::new(&self.right, r, n).t(),
                false,
                1.0,
            );
            out
        };
        let left_t = |x: &[f32], cols: usize| {
            // P_Lᵀ ([r, m]) · x: [m, cols]
            let mut out = vec![0f32; r * cols];
            lmf_kernels::cpu::gemm::gemm(
                MatMut::new(&mut out, r, cols),
                MatRef::new(&self.left, m, r).t(),
                MatRef::new(x, m, cols),
                false,
                1.0,
            );
            out
        };
        match self.side {
            Side::Right => right_t(g, m),
            Side::Left => left_t(g, n),
            Side::Full => right_t(&left_t(g, n), r),
        }
    }

    /// The low-rank `x` back to `[m, n]`, times `scale`.
    pub fn project_back(&self, x: &[f32], scale: f32) -> Vec<f32> {
        let (m, n, r) = (self.m, self.n, self.r);
        let mut out = match self.side {
            Side::Right => matmul(x, &self.right, m, r, n),
            Side::Left => matmul(&self.left, x, m, r, n),
            Side::Full => matmul(&matmul(&self.left, x, m, r, r), &self.right, m, r, n),
        };
        out.iter_mut().for_each(|v| *v *= scale);
        out
    }
}

/// One step of Hugging Face's old AdamW moments on `g`: `m = β₁m + (1−β₁)g`,
/// `v = β₂v + (1−β₂)g²` (the `1 − β` factors taken in f64, then f32, as torch takes Python
/// scalars); returns the direction `m / (√v + eps)`.
pub fn hf_adamw_direction(
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    beta1: f64,
    beta2: f64,
    eps: f64,
) -> Vec<f32> {
    let (b1, b2, e) = (beta1 as f32, beta2 as f32, eps as f32);
    let (a1, a2) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32);
    g.iter()
        .zip(m.iter_mut())
        .zip(v.iter_mut())
        .map(|((&g, m), v)| {
            *m = *m * b1 + g * a1;
            *v = *v * b2 + a2 * g * g;
            *m / (v.sqrt() + e)
        })
        .collect()
}

/// `p −= step_size · dir`, then `p −= lr·wd·p` (HF's old AdamW order).
pub fn hf_adamw_apply(p: &mut [f32], dir: &[f32], step_size: f64, lr: f64, wd: f64) {
    let s = -(step_size as f32);
    for (p, &d) in p.iter_mut().zip(dir) {
        *p += s * d;
    }
    if wd > 0.0 {
        let k = -(lr * wd) as f32;
        for p in p.iter_mut() {
            *p += k * *p;
        }
    }
}

/// The L2 norm of `x` (f64 sum, then f32).
fn norm(x: impl Iterator<Item = f32>) -> f32 {
    x.map(|v| v as f64 * v as f64).sum::<f64>().sqrt() as f32
}

/// APOLLO's update direction from the full gradient `g: [m, n]`, the projected gradient `r`
/// and the low-rank Adam direction `dir` (both `low: (rows, cols)`): `g` scaled by
/// `‖dir‖ / (‖r‖ + 1e-8)` per row (`m ≥ n`) or column (`m < n`) or per tensor, then the
/// norm-growth limiter against `prev` (the last scaled norm, updated), times `√scale`.
#[allow(clippy::too_many_arguments)]
pub fn apollo_direction(
    g: &[f32],
    m: usize,
    n: usize,
    r: &[f32],
    dir: &[f32],
    low: (usize, usize),
    channel: bool,
    scale: f32,
    prev: &mut Option<f32>,
) -> Result<Vec<f32>> {
    let (lr_, lc) = low;
    let mut s = g.to_vec();
    if !channel {
        let f = norm(dir.iter().copied()) / (norm(r.iter().copied()) + 1e-8);
        s.iter_mut().for_each(|v| *v *= f);
    } else if m >= n {
        // norms along dim 1 of the [m, r] projection: one factor per row of g
        if lr_ != m {
            return Err(Error::Msg(format!(
                "APOLLO channel scaling: a [{m}, {n}] weight needs its projection on the right                  (the `std` side); apollo-torch fails here with a size mismatch"
            )));
        }
        for i in 0..m {
            let row = |x: &[f32]| norm(x[i * lc..(i + 1) * lc].iter().copied());
            let f = row(dir) / (row(r) + 1e-8);
            s[i * n..(i + 1) * n].iter_mut().for_each(|v| *v *= f);
        }
    } else {
        // norms along dim 0 of the [r, n] projection: one factor per column of g
        if lc != n {
            return Err(Error::Msg(format!(
                "APOLLO channel scaling: a [{m}, {n}] weight needs its projection on the left                  (the `std` side); apollo-torch fails here with a size mismatch"
            )));
        }
        for j in 0..n {
            let col = |x: &[f32]| norm((0..lr_).map(|k| x[k * n + j]));
            let f = col(dir) / (col(r) + 1e-8);
            for i in 0..m {
                s[i * n + j] *= f;
            }
        }
    }
    let sn = norm(s.iter().copied());
    match prev {
        Some(p) => {
            let c = (sn / (*p + 1e-8)).max(1.01) / 1.01;
            s.iter_mut().for_each(|v| *v /= c);
            *prev = Some(sn / c);
        }
        None => *prev = Some(sn),
    }
    let k = (scale as f64).sqrt() as f32;
    s.iter_mut().for_each(|v| *v *= k);
    Ok(s)
}

/// `lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ)` (Python floats).
pub fn hf_step_size(lr: f64, beta1: f64, beta2: f64, t: u64) -> f64 {
    let t = t as i32;
    lr * (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_roundtrip_on_a_rank_r_matrix() {
        // G = a·bᵀ + c·dᵀ has rank 2: projecting on r = 2 and back recovers it.
        let (m, n) = (6, 4);
        let a = [1.0f32, -2.0, 0.5, 3.0, 0.0, 1.0];
        let b = [0.3f32, 1.0, -1.0, 2.0];
        let c = [0.0f32, 1.0, 1.0, -1.0, 2.0, 0.5];
        let d = [1.0f32, 0.0, 0.5, -0.5];
        let g: Vec<f32> = (0..m * n)
            .map(|k| a[k / n] * b[k % n] + c[k / n] * d[k % n])
            .collect();
        for side in [Side::Left, Side::Right, Side::Full] {
            let p = Projection::fit(&g, m, n, 2, side, None).unwrap();
            let back = p.project_back(&p.project(&g), 1.0);
            for (x, y) in back.iter().zip(&g) {
                assert!((x - y).abs() < 1e-5, "{side:?}: {x} vs {y}");
            }
        }
        // sign convention: the largest |entry| of every kept vector is positive
        let p = Projection::fit(&g, m, n, 2, Side::Right, None).unwrap();
        for k in 0..2 {
            let row = &p.right[k * n..(k + 1) * n];
            let big = row
                .iter()
                .fold(0f32, |b, &x| if x.abs() > b.abs() { x } else { b });
            assert!(big > 0.0);
        }
        assert_eq!(ProjType::Std.side(6, 4), Side::Right);
        assert_eq!(ProjType::Std.side(4, 6), Side::Left);
        assert_eq!(ProjType::ReverseStd.side(6, 4), Side::Left);
    }

    #[test]
    fn hf_adamw_first_step() {
        // t = 1: m = 0.1 g, v = 0.001 g², dir = 0.1 g / (√0.001 |g| + eps),
        // step_size = lr·√0.001/0.1, so the move is ≈ lr·sign(g).
        let g = [0.5f32, -2.0];
        let (mut m, mut v) = ([0f32; 2], [0f32; 2]);
        let dir = hf_adamw_direction(&g, &mut m, &mut v, 0.9, 0.999, 1e-8);
        let mut p = [1.0f32, 1.0];
        hf_adamw_apply(&mut p, &dir, hf_step_size(1e-3, 0.9, 0.999, 1), 1e-3, 0.1);
        assert!((p[0] - (1.0 - 1e-3) * (1.0 - 1e-4)).abs() < 1e-6, "{p:?}");
        assert!((p[1] - (1.0 + 1e-3) * (1.0 - 1e-4)).abs() < 1e-6, "{p:?}");
    }
}
