//! The top-r singular triplets of a weight matrix for PiSSA: the exact thin SVD (faer), or
//! the randomized low-rank SVD of Halko et al. 2009 (Alg. 4.4 + 5.1, as `torch.svd_lowrank`:
//! q = r columns, `niter` subspace iterations, QR after every product), on f64 host copies.

use crate::{Error, Result};
use faer::Mat;
use lmf_runtime::{DType, Device, Tensor};

/// `W ≈ U · diag(S) · Vᵀ` restricted to r triplets, row-major.
#[derive(Clone, Debug)]
pub struct TopSvd {
    /// `U: [m, r]`.
    pub u: Vec<f64>,
    /// `S: [r]`, descending.
    pub s: Vec<f64>,
    /// `V: [n, r]`.
    pub v: Vec<f64>,
}

fn to_mat(w: &[f64], m: usize, n: usize) -> Mat<f64> {
    Mat::from_fn(m, n, |i, j| w[i * n + j])
}

fn from_mat(a: &Mat<f64>, cols: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.nrows() * cols);
    for i in 0..a.nrows() {
        for j in 0..cols {
            out.push(a[(i, j)]);
        }
    }
    out
}

/// Thin SVD of `a` cut to `r` triplets.
fn thin_top(a: &Mat<f64>, r: usize) -> Result<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    let svd = a
        .thin_svd()
        .map_err(|e| Error::msg(format!("pissa: SVD did not converge ({e:?})")))?;
    let s = svd.S().column_vector();
    let k = r.min(s.nrows());
    let sv: Vec<f64> = (0..k).map(|i| s[i]).collect();
    let u = Mat::from_fn(a.nrows(), k, |i, j| svd.U()[(i, j)]);
    let v = Mat::from_fn(a.ncols(), k, |i, j| svd.V()[(i, j)]);
    Ok((u, sv, v))
}

/// Exact top-`r` SVD of the row-major `w: [m, n]` (PEFT `init_lora_weights="pissa"`).
pub fn svd_top(w: &[f64], m: usize, n: usize, r: usize) -> Result<TopSvd> {
    check(w, m, n, r)?;
    let (u, s, v) = thin_top(&to_mat(w, m, n), r)?;
    Ok(TopSvd {
        u: from_mat(&u, s.len()),
        v: from_mat(&v, s.len()),
        s,
    })
}

/// Randomized top-`r` SVD with `niter` subspace iterations (PEFT `"pissa_niter_{niter}"`);
/// the Gaussian test matrix comes from our Philox stream `seed`.
pub fn svd_lowrank(
    w: &[f64],
    m: usize,
    n: usize,
    r: usize,
    niter: usize,
    seed: u64,
) -> Result<TopSvd> {
    check(w, m, n, r)?;
    // Work on the tall orientation, as torch does.
    let wide = m < n;
    let a = if wide {
        to_mat(w, m, n).transpose().to_owned()
    } else {
        to_mat(w, m, n)
    };
    let cols = a.ncols();
    let q = r.min(cols);
    let g = Tensor::randn(seed, 0, &[cols, q], DType::F64, Device::Cpu)?.to_vec::<f64>()?;
    let g = to_mat(&g, cols, q);
    let orth = |x: Mat<f64>| x.qr().compute_thin_Q();
    let mut basis = orth(&a * &g);
    for _ in 0..niter {
        let z = orth(a.transpose() * &basis);
        basis = orth(&a * &z);
    }
    // B = Qᵀ·A: [q, cols]; its SVD lifts back through Q.
    let b = basis.transpose() * &a;
    let (ub, s, v) = thin_top(&b, q)?;
    let u = &basis * &ub;
    let (u, v) = if wide { (v, u) } else { (u, v) };
    Ok(TopSvd {
        u: from_mat(&u, s.len()),
        v: from_mat(&v, s.len()),
        s,
    })
}

fn check(w: &[f64], m: usize, n: usize, r: usize) -> Result<()> {
    if w.len() != m * n || m == 0 || n == 0 {
        return Err(Error::msg(format!(
            "pissa: weight of {} values is not [{m}, {n}]",
            w.len()
        )));
    }
    if r > m.min(n) {
        return Err(Error::msg(format!(
            "pissa: rank {r} is larger than the weight [{m}, {n}] allows"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `U·diag(S)·Vᵀ` as row-major `[m, n]`.
    fn rebuild(t: &TopSvd, m: usize, n: usize) -> Vec<f64> {
        let k = t.s.len();
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|c| t.u[i * k + c] * t.s[c] * t.v[j * k + c])
                    .sum();
            }
        }
        out
    }

    /// A rank-3 `[m, n]` matrix with known singular values 5, 3, 1 (plus tiny noise rank).
    fn low_rank(m: usize, n: usize) -> Vec<f64> {
        let f = |i: usize, j: usize, k: usize| ((i * 7 + j * 3 + k * 11) % 13) as f64 - 6.0;
        let mut w = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                w[i * n + j] = (0..3).map(|k| f(i, k, 1) * f(j, k, 2) * 0.1).sum();
            }
        }
        w
    }

    #[test]
    fn exact_top_rank_reconstructs_a_low_rank_matrix() {
        for (m, n) in [(9, 6), (5, 12)] {
            let w = low_rank(m, n);
            let t = svd_top(&w, m, n, 3).unwrap();
            assert!(t.s.windows(2).all(|p| p[0] >= p[1]));
            let back = rebuild(&t, m, n);
            let err = w
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-9, "{m}x{n}: {err}");
        }
    }

    #[test]
    fn randomized_matches_exact_on_a_low_rank_matrix() {
        for (m, n) in [(20, 8), (8, 20)] {
            let w = low_rank(m, n);
            let exact = svd_top(&w, m, n, 3).unwrap();
            let fast = svd_lowrank(&w, m, n, 3, 2, 5).unwrap();
            for (a, b) in exact.s.iter().zip(&fast.s) {
                assert!((a - b).abs() < 1e-8 * a.max(1.0), "{a} vs {b}");
            }
            let back = rebuild(&fast, m, n);
            let err = w
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-8, "{m}x{n}: {err}");
        }
    }

    #[test]
    fn bad_rank_is_an_error() {
        assert!(svd_top(&[1.0; 6], 2, 3, 3).is_err());
    }
}
