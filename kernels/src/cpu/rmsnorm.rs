//! RMSNorm over the last dimension: `y = x · rstd · (w + offset)` with
//! `rstd[r] = 1 / sqrt(mean(x[r]²) + eps)`. `offset` is 0 for Llama and 1 for Gemma (whose
//! checkpoints store `w - 1`). The forward saves `rstd` so the backward needs no reduction
//! over `x²` again.

use rayon::prelude::*;

use crate::Real;

/// Rows per parallel task: fixed from `rows` alone (at most 64 tasks), so the partial `dw`
/// sums are reduced in the same order on any thread count (deterministic `dw`).
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(64).max(1)
}

/// RMSNorm forward: writes `y: [rows, dim]` and `rstd: [rows]` from `x: [rows, dim]`,
/// `w: [dim]`.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_forward<T: Real>(
    x: &[T],
    w: &[T],
    rows: usize,
    dim: usize,
    eps: f64,
    offset: f64,
    y: &mut [T],
    rstd: &mut [T],
) {
    assert!(
        x.len() == rows * dim && y.len() == x.len(),
        "rmsnorm: x/y length"
    );
    assert!(
        w.len() == dim && rstd.len() == rows,
        "rmsnorm: w/rstd length"
    );
    if rows == 0 || dim == 0 {
        rstd.iter_mut().for_each(|r| *r = T::of(1.0 / eps.sqrt()));
        return;
    }
    let (eps, off) = (T::of(eps), T::of(offset));
    let inv_dim = T::of(1.0 / dim as f64);
    y.par_chunks_mut(dim)
        .zip(rstd.par_iter_mut())
        .zip(x.par_chunks(dim))
        .for_each(|((yr, rs), xr)| {
            // x: [dim] one row
            let ms = xr.iter().map(|&v| v * v).sum::<T>() * inv_dim;
            let r = (ms + eps).sqrt().recip();
            *rs = r;
            for ((yo, &xv), &wv) in yr.iter_mut().zip(xr).zip(w) {
                *yo = xv * r * (wv + off);
            }
        });
}

/// RMSNorm backward: from `dy: [rows, dim]` writes `dx: [rows, dim]` and ACCUMULATES
/// `dw: [dim]` (`+=`), using the `rstd` saved by the forward.
///
/// With `g = w + offset`, `r = rstd`, `c = Σ_i dy_i g_i x_i` per row:
/// `dx_j = r · (dy_j g_j − x_j · r² · c / dim)` and `dw_j += Σ_rows dy_j x_j r`.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward<T: Real>(
    dy: &[T],
    x: &[T],
    w: &[T],
    rstd: &[T],
    rows: usize,
    dim: usize,
    offset: f64,
    dx: &mut [T],
    dw: &mut [T],
) {
    assert!(x.len() == rows * dim, "rmsnorm: x length");
    assert!(
        dy.len() == x.len() && dx.len() == x.len(),
        "rmsnorm: dy/dx length"
    );
    assert!(w.len() == dim && dw.len() == dim, "rmsnorm: w/dw length");
    assert!(rstd.len() == rows, "rmsnorm: rstd length");
    if rows == 0 || dim == 0 {
        return;
    }
    let off = T::of(offset);
    let inv_dim = T::of(1.0 / dim as f64);
    let rpt = rows_per_task(rows);
    // One task per block of rows: it writes its rows of dx and returns its partial dw.
    let partials: Vec<Vec<T>> = dx
        .par_chunks_mut(rpt * dim)
        .zip(dy.par_chunks(rpt * dim))
        .zip(x.par_chunks(rpt * dim))
        .zip(rstd.par_chunks(rpt))
        .map(|(((dxb, dyb), xb), rb)| {
            let mut dw_part = vec![T::zero(); dim];
            for (((dxr, dyr), xr), &r) in dxb
                .chunks_mut(dim)
                .zip(dyb.chunks(dim))
                .zip(xb.chunks(dim))
                .zip(rb)
            {
                // c = Σ_i dy_i (w_i + offset) x_i
                let c: T = dyr
                    .iter()
                    .zip(xr)
                    .zip(w)
                    .map(|((&d, &xv), &wv)| d * (wv + off) * xv)
                    .sum();
                let k = r * r * c * inv_dim;
                for ((((dxo, &d), &xv), &wv), dwp) in dxr
                    .iter_mut()
                    .zip(dyr)
                    .zip(xr)
                    .zip(w)
                    .zip(dw_part.iter_mut())
                {
                    *dxo = r * (d * (wv + off) - xv * k);
                    *dwp += d * xv * r;
                }
            }
            dw_part
        })
        .collect();
    // Reduce the partials in task order: deterministic.
    for part in &partials {
        for (d, &p) in dw.iter_mut().zip(part) {
            *d += p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, Lcg};

    const ROWS: usize = 37;
    const DIM: usize = 48;
    const EPS: f64 = 1e-6;

    /// Scalar loss `Σ y ⊙ wts` of the forward, in f64.
    fn loss(x: &[f64], w: &[f64], wts: &[f64], offset: f64) -> f64 {
        let (mut y, mut r) = (vec![0.0; x.len()], vec![0.0; ROWS]);
        rmsnorm_forward(x, w, ROWS, DIM, EPS, offset, &mut y, &mut r);
        y.iter().zip(wts).map(|(a, b)| a * b).sum()
    }

    #[test]
    fn forward_matches_definition() {
        let mut rng = Lcg::new(1);
        let x: Vec<f64> = rand_vec(&mut rng, ROWS * DIM, 2.0);
        let w: Vec<f64> = rand_vec(&mut rng, DIM, 1.0);
        for offset in [0.0, 1.0] {
            let (mut y, mut r) = (vec![0.0; x.len()], vec![0.0; ROWS]);
            rmsnorm_forward(&x, &w, ROWS, DIM, EPS, offset, &mut y, &mut r);
            let mut want = vec![0.0; x.len()];
            for i in 0..ROWS {
                let row = &x[i * DIM..(i + 1) * DIM];
                let ms: f64 = row.iter().map(|v| v * v).sum::<f64>() / DIM as f64;
                let rs = 1.0 / (ms + EPS).sqrt();
                assert!((r[i] - rs).abs() < 1e-12 * rs, "rstd[{i}]");
                for j in 0..DIM {
                    want[i * DIM + j] = row[j] * rs * (w[j] + offset);
                }
            }
            assert_close("y", &y, &want, 1e-12, 1e-12);
        }
    }

    #[test]
    fn f32_close_to_f64() {
        let mut rng = Lcg::new(2);
        let x: Vec<f64> = rand_vec(&mut rng, ROWS * DIM, 3.0);
        let w: Vec<f64> = rand_vec(&mut rng, DIM, 1.0);
        let (mut y, mut r) = (vec![0.0; x.len()], vec![0.0; ROWS]);
        rmsnorm_forward(&x, &w, ROWS, DIM, EPS, 1.0, &mut y, &mut r);
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let wf: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let (mut yf, mut rf) = (vec![0f32; x.len()], vec![0f32; ROWS]);
        rmsnorm_forward(&xf, &wf, ROWS, DIM, EPS, 1.0, &mut yf, &mut rf);
        let yf: Vec<f64> = yf.iter().map(|&v| v as f64).collect();
        assert_close("y f32", &yf, &y, 1e-5, 1e-5);
    }

    #[test]
    fn grad_check_x_and_w_both_offsets() {
        for offset in [0.0, 1.0] {
            let mut rng = Lcg::new(3 + offset as u64);
            let x: Vec<f64> = rand_vec(&mut rng, ROWS * DIM, 1.5);
            let w: Vec<f64> = rand_vec(&mut rng, DIM, 1.0);
            let wts: Vec<f64> = rand_vec(&mut rng, ROWS * DIM, 1.0);
            let (mut y, mut r) = (vec![0.0; x.len()], vec![0.0; ROWS]);
            rmsnorm_forward(&x, &w, ROWS, DIM, EPS, offset, &mut y, &mut r);
            let mut dx = vec![0.0; x.len()];
            let mut dw = vec![0.0; DIM];
            rmsnorm_backward(&wts, &x, &w, &r, ROWS, DIM, offset, &mut dx, &mut dw);
            check_grad("rmsnorm dx", &x, &dx, |xp| loss(xp, &w, &wts, offset));
            check_grad("rmsnorm dw", &w, &dw, |wp| loss(&x, wp, &wts, offset));
        }
    }

    #[test]
    fn dw_accumulates() {
        let mut rng = Lcg::new(5);
        let x: Vec<f64> = rand_vec(&mut rng, ROWS * DIM, 1.0);
        let w: Vec<f64> = rand_vec(&mut rng, DIM, 1.0);
        let dy: Vec<f64> = rand_vec(&mut rng, ROWS * DIM, 1.0);
        let (mut y, mut r) = (vec![0.0; x.len()], vec![0.0; ROWS]);
        rmsnorm_forward(&x, &w, ROWS, DIM, EPS, 0.0, &mut y, &mut r);
        let mut dx = vec![0.0; x.len()];
        let mut once = vec![0.0; DIM];
        rmsnorm_backward(&dy, &x, &w, &r, ROWS, DIM, 0.0, &mut dx, &mut once);
        let mut twice = vec![0.5; DIM];
        rmsnorm_backward(&dy, &x, &w, &r, ROWS, DIM, 0.0, &mut dx, &mut twice);
        rmsnorm_backward(&dy, &x, &w, &r, ROWS, DIM, 0.0, &mut dx, &mut twice);
        let want: Vec<f64> = once.iter().map(|v| 0.5 + 2.0 * v).collect();
        assert_close("dw +=", &twice, &want, 1e-12, 1e-12);
        assert!(
            once.iter().any(|&v| v.abs() > 1e-3),
            "dw not trivially zero"
        );
    }

    #[test]
    fn many_rows_parallel_matches_serial_rows() {
        // rows > 64 so several rows share a task; compare against one-row calls.
        let (rows, dim) = (203, 33);
        let mut rng = Lcg::new(6);
        let x: Vec<f64> = rand_vec(&mut rng, rows * dim, 1.0);
        let w: Vec<f64> = rand_vec(&mut rng, dim, 1.0);
        let dy: Vec<f64> = rand_vec(&mut rng, rows * dim, 1.0);
        let (mut y, mut r) = (vec![0.0; x.len()], vec![0.0; rows]);
        rmsnorm_forward(&x, &w, rows, dim, EPS, 1.0, &mut y, &mut r);
        let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; dim]);
        rmsnorm_backward(&dy, &x, &w, &r, rows, dim, 1.0, &mut dx, &mut dw);
        let mut dw1 = vec![0.0; dim];
        for i in 0..rows {
            let s = i * dim..(i + 1) * dim;
            let (mut y1, mut r1) = (vec![0.0; dim], vec![0.0; 1]);
            rmsnorm_forward(&x[s.clone()], &w, 1, dim, EPS, 1.0, &mut y1, &mut r1);
            assert_close("y row", &y[s.clone()], &y1, 0.0, 0.0);
            let mut dx1 = vec![0.0; dim];
            let xr = &x[s.clone()];
            rmsnorm_backward(&dy[s.clone()], xr, &w, &r1, 1, dim, 1.0, &mut dx1, &mut dw1);
            assert_close("dx row", &dx[s], &dx1, 0.0, 0.0);
        }
        assert_close("dw", &dw, &dw1, 1e-12, 1e-12);
    }
}
