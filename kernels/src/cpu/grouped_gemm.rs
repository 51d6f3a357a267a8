//! Grouped GEMM of mixture-of-experts layers: the rows of `x` are sorted by expert, and
//! rows `offsets[e] .. offsets[e + 1]` are multiplied by expert `e`'s own weight. One call
//! does a whole layer's expert products (forward, dx and dW), the experts in parallel.
//!
//! Shapes (E experts, M routed rows in total, weights stored `[E, N, K]` as a stack of
//! `nn.Linear` weights, `y = x·Wᵀ`):
//!
//! - forward  `y[M, N]  = x[M, K] · W_eᵀ` per group;
//! - backward `dx[M, K] = dy[M, N] · W_e` per group;
//! - backward `dW[E, N, K] = dy_eᵀ · x_e` per expert (zero for an expert with no rows).
//!
//! Each group's product is one [`gemm`] call on contiguous row slices, so a group's rows
//! get the same bits as the dense product of those rows alone.

use super::gemm::{gemm, MatMut, MatRef};
use crate::Real;
use rayon::prelude::*;

/// Checks that `offsets` is a non-decreasing partition of `0..m` into `e` groups.
pub(crate) fn check_offsets(offsets: &[usize], e: usize, m: usize) {
    assert_eq!(
        offsets.len(),
        e + 1,
        "grouped gemm: offsets must have E + 1 entries"
    );
    assert!(
        offsets[0] == 0 && offsets[e] == m,
        "grouped gemm: offsets must run from 0 to the row count"
    );
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "grouped gemm: offsets must not decrease"
    );
}

/// Splits a row-major `[m, width]` buffer into the groups' row slices.
fn split_rows<'a, T>(mut data: &'a mut [T], offsets: &[usize], width: usize) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(offsets.len() - 1);
    for w in offsets.windows(2) {
        let (head, tail) = data.split_at_mut((w[1] - w[0]) * width);
        out.push(head);
        data = tail;
    }
    out
}

/// Runs `f(g, rows, dst_g)` for every group `g` with rows, in parallel, `dst_g` being group
/// `g`'s rows of the row-major `[m, width]` buffer `dst`.
pub(crate) fn per_group<T: Real>(
    dst: &mut [T],
    offsets: &[usize],
    width: usize,
    f: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    split_rows(dst, offsets, width)
        .into_par_iter()
        .enumerate()
        .for_each(|(g, dst_g)| {
            let rows = offsets[g + 1] - offsets[g];
            if rows > 0 {
                f(g, rows, dst_g);
            }
        });
}

/// `dst[rows_e] = a[rows_e] · op(W_e)` for every expert `e`, `W_e: [n, k]` and `op` the
/// transpose when `transpose_w`: `a: [m, a_w]`, `dst: [m, dst_w]` (fully overwritten), with
/// `(a_w, dst_w)` = `(k, n)` transposed, `(n, k)` plain. The product both the forward and dx
/// are.
fn rows_times_expert<T: Real>(
    dst: &mut [T],
    a: &[T],
    w: &[T],
    offsets: &[usize],
    (n, k): (usize, usize),
    transpose_w: bool,
) {
    let e = offsets.len() - 1;
    let m = offsets[e];
    check_offsets(offsets, e, m);
    let (a_w, dst_w) = if transpose_w { (k, n) } else { (n, k) };
    assert!(a.len() == m * a_w && dst.len() == m * dst_w && w.len() == e * n * k);
    per_group(dst, offsets, dst_w, |g, rows, dst_g| {
        let a_g = MatRef::new(&a[offsets[g] * a_w..offsets[g + 1] * a_w], rows, a_w);
        let w_g = MatRef::new(&w[g * n * k..(g + 1) * n * k], n, k);
        let w_g = if transpose_w { w_g.t() } else { w_g };
        gemm(MatMut::new(dst_g, rows, dst_w), a_g, w_g, false, T::one());
    });
}

/// `y[rows_e] = x[rows_e] · W_eᵀ` for every expert `e`: `x: [m, k]`, `w: [e, n, k]`,
/// `y: [m, n]` (fully overwritten).
pub fn grouped_gemm_forward<T: Real>(
    y: &mut [T],
    x: &[T],
    w: &[T],
    offsets: &[usize],
    (n, k): (usize, usize),
) {
    rows_times_expert(y, x, w, offsets, (n, k), true);
}

/// `dx[rows_e] = dy[rows_e] · W_e`: `dy: [m, n]`, `w: [e, n, k]`, `dx: [m, k]` (overwritten).
pub fn grouped_gemm_backward_x<T: Real>(
    dx: &mut [T],
    dy: &[T],
    w: &[T],
    offsets: &[usize],
    (n, k): (usize, usize),
) {
    rows_times_expert(dx, dy, w, offsets, (n, k), false);
}

/// `dW_e = dy[rows_e]ᵀ · x[rows_e]`: `dy: [m, n]`, `x: [m, k]`, `dw: [e, n, k]`
/// (overwritten; zero for experts without rows).
pub fn grouped_gemm_backward_w<T: Real>(
    dw: &mut [T],
    dy: &[T],
    x: &[T],
    offsets: &[usize],
    (n, k): (usize, usize),
) {
    let e = offsets.len() - 1;
    let m = offsets[e];
    check_offsets(offsets, e, m);
    assert!(dw.len() == e * n * k && dy.len() == m * n && x.len() == m * k);
    dw.par_chunks_mut(n * k).enumerate().for_each(|(g, dwg)| {
        let rows = offsets[g + 1] - offsets[g];
        if rows == 0 {
            dwg.fill(T::zero());
            return;
        }
        let dyg = &dy[offsets[g] * n..offsets[g + 1] * n];
        let xg = &x[offsets[g] * k..offsets[g + 1] * k];
        gemm(
            MatMut::new(dwg, n, k),
            MatRef::new(dyg, rows, n).t(),
            MatRef::new(xg, rows, k),
            false,
            T::one(),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain triple loops over each group (the definition).
    fn reference(x: &[f64], w: &[f64], offsets: &[usize], n: usize, k: usize) -> Vec<f64> {
        let m = *offsets.last().unwrap();
        let mut y = vec![0.0; m * n];
        for g in 0..offsets.len() - 1 {
            for r in offsets[g]..offsets[g + 1] {
                for j in 0..n {
                    y[r * n + j] = (0..k).map(|t| x[r * k + t] * w[(g * n + j) * k + t]).sum();
                }
            }
        }
        y
    }

    fn data(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f64 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn forward_and_backward_match_the_definition() {
        // 4 experts, one with no rows, uneven groups
        let offsets = [0usize, 3, 3, 10, 12];
        let (m, n, k, e) = (12, 5, 7, 4);
        let x = data(m * k, 1);
        let w = data(e * n * k, 2);
        let dy = data(m * n, 3);
        let mut y = vec![f64::NAN; m * n];
        grouped_gemm_forward(&mut y, &x, &w, &offsets, (n, k));
        let want = reference(&x, &w, &offsets, n, k);
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        // dx = dy·W_e ; dW_e = dyᵀ·x via the definition
        let mut dx = vec![f64::NAN; m * k];
        grouped_gemm_backward_x(&mut dx, &dy, &w, &offsets, (n, k));
        let mut dw = vec![f64::NAN; e * n * k];
        grouped_gemm_backward_w(&mut dw, &dy, &x, &offsets, (n, k));
        for g in 0..e {
            for r in offsets[g]..offsets[g + 1] {
                for t in 0..k {
                    let want: f64 = (0..n).map(|j| dy[r * n + j] * w[(g * n + j) * k + t]).sum();
                    assert!((dx[r * k + t] - want).abs() < 1e-12);
                }
            }
            for j in 0..n {
                for t in 0..k {
                    let want: f64 = (offsets[g]..offsets[g + 1])
                        .map(|r| dy[r * n + j] * x[r * k + t])
                        .sum();
                    assert!((dw[(g * n + j) * k + t] - want).abs() < 1e-12);
                }
            }
        }
        assert!(
            dw[n * k..2 * n * k].iter().all(|&v| v == 0.0),
            "empty expert"
        );
    }
}
