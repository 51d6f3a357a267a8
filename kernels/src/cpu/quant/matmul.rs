//! Dequant-matmul, the CPU twin of the 4/8-bit GPU kernels: `y = x·dequant(W)ᵀ` without
//! ever dequantizing the whole `W: [out, in]`.
//!
//! Batches (n > 1) dequantize a tile of rows of W into a small buffer (about 1 MB in f32)
//! and hand it to the gemm; a single row (n == 1, decoding) is a GEMV that dequantizes on
//! the fly inside each dot product. The backward to the input, `dx = dy·dequant(W)`, uses
//! the same tiles.

use super::four_bit::Quant4;
use super::group::GroupQuant;
use super::int8::Int8Rows;
use crate::cpu::gemm::{gemm, MatMut, MatRef};
use crate::Real;
use rayon::prelude::*;

/// Elements of W dequantized at once (1 MB in f32): small next to W, big enough for gemm.
const TILE_ELEMS: usize = 1 << 18;

/// A quantized matrix `W: [rows, cols]` (rows = out features) that can dequantize rows.
pub trait QuantMatrix: Sync {
    /// `(rows, cols)` of W.
    fn dims(&self) -> (usize, usize);
    /// Dequantizes row `r` into `out: [cols]`.
    fn dequant_row<T: Real>(&self, r: usize, out: &mut [T]);
    /// `x · W[r]` with `x: [cols]`, dequantizing on the fly.
    fn row_dot<T: Real>(&self, r: usize, x: &[T]) -> T;
}

impl QuantMatrix for Quant4 {
    fn dims(&self) -> (usize, usize) {
        assert_eq!(
            self.shape.len(),
            2,
            "dequant matmul: 4-bit weight is not 2-D"
        );
        (self.shape[0], self.shape[1])
    }
    fn dequant_row<T: Real>(&self, r: usize, out: &mut [T]) {
        self.dequantize_range(r * self.shape[1], out);
    }
    fn row_dot<T: Real>(&self, r: usize, x: &[T]) -> T {
        self.dot_range(r * self.shape[1], x)
    }
}

impl QuantMatrix for Int8Rows {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    fn dequant_row<T: Real>(&self, r: usize, out: &mut [T]) {
        self.dequantize_row(r, out);
    }
    fn row_dot<T: Real>(&self, r: usize, x: &[T]) -> T {
        self.dot_row(r, x)
    }
}

impl QuantMatrix for GroupQuant {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    fn dequant_row<T: Real>(&self, r: usize, out: &mut [T]) {
        self.dequantize_row(r, out);
    }
    fn row_dot<T: Real>(&self, r: usize, x: &[T]) -> T {
        self.dot_row(r, x)
    }
}

/// Rows of W per tile for `cols` columns.
fn tile_rows(rows: usize, cols: usize) -> usize {
    (TILE_ELEMS / cols.max(1)).clamp(1, rows.max(1))
}

/// Dequantizes rows `r0 .. r0 + buf.len()/cols` of `w` into `buf`, in parallel over rows.
fn dequant_tile<T: Real, Q: QuantMatrix>(w: &Q, r0: usize, cols: usize, buf: &mut [T]) {
    buf.par_chunks_mut(cols)
        .enumerate()
        .for_each(|(i, row)| w.dequant_row(r0 + i, row));
}

/// `y = x·dequant(W)ᵀ` with `x: [n, in]`, `W: [out, in]`, `y: [n, out]` (overwritten).
pub fn dequant_matmul<T: Real, Q: QuantMatrix>(x: &[T], w: &Q, n: usize, y: &mut [T]) {
    let (out_f, in_f) = w.dims();
    let tile = tile_rows(out_f, in_f);
    dequant_matmul_tiled(x, w, n, y, tile);
}

fn dequant_matmul_tiled<T: Real, Q: QuantMatrix>(
    x: &[T],
    w: &Q,
    n: usize,
    y: &mut [T],
    tile: usize,
) {
    let (out_f, in_f) = w.dims();
    assert_eq!(x.len(), n * in_f, "dequant_matmul: x is not [n, in]");
    assert_eq!(y.len(), n * out_f, "dequant_matmul: y is not [n, out]");
    if n == 1 {
        // GEMV: one dot product per output, W decoded on the fly, no buffer.
        y.par_iter_mut()
            .enumerate()
            .for_each(|(o, yo)| *yo = w.row_dot(o, x));
        return;
    }
    if in_f == 0 {
        y.fill(T::zero());
        return;
    }
    let xm = MatRef::new(x, n, in_f);
    let mut buf = vec![T::zero(); tile.min(out_f) * in_f]; // W tile: [rows, in]
    for r0 in (0..out_f).step_by(tile.max(1)) {
        let rows = tile.min(out_f - r0);
        let wt = &mut buf[..rows * in_f];
        dequant_tile(w, r0, in_f, wt);
        // y[:, r0..r0+rows] = x · W_tileᵀ: [n, in]·[in, rows], a strided column block of y
        let dst = MatMut {
            data: &mut y[r0..],
            rows: n,
            cols: rows,
            rs: out_f,
            cs: 1,
        };
        gemm(dst, xm, MatRef::new(wt, rows, in_f).t(), false, T::one());
    }
}

/// `dx = dy·dequant(W)` with `dy: [n, out]`, `W: [out, in]`, `dx: [n, in]` (overwritten): the
/// backward of [`dequant_matmul`] to its input (W is frozen, so there is no dW).
pub fn dequant_matmul_t<T: Real, Q: QuantMatrix>(dy: &[T], w: &Q, n: usize, dx: &mut [T]) {
    let (out_f, in_f) = w.dims();
    let tile = tile_rows(out_f, in_f);
    dequant_matmul_t_tiled(dy, w, n, dx, tile);
}

fn dequant_matmul_t_tiled<T: Real, Q: QuantMatrix>(
    dy: &[T],
    w: &Q,
    n: usize,
    dx: &mut [T],
    tile: usize,
) {
    let (out_f, in_f) = w.dims();
    assert_eq!(dy.len(), n * out_f, "dequant_matmul_t: dy is not [n, out]");
    assert_eq!(dx.len(), n * in_f, "dequant_matmul_t: dx is not [n, in]");
    dx.fill(T::zero());
    if in_f == 0 || n == 0 {
        return;
    }
    let mut buf = vec![T::zero(); tile.min(out_f) * in_f];
    for r0 in (0..out_f).step_by(tile.max(1)) {
        let rows = tile.min(out_f - r0);
        let wt = &mut buf[..rows * in_f];
        dequant_tile(w, r0, in_f, wt);
        // dx += dy[:, r0..r0+rows] · W_tile: [n, rows]·[rows, in]
        let dyt = MatRef {
            data: &dy[r0..],
            rows: n,
            cols: rows,
            rs: out_f,
            cs: 1,
        };
        gemm(
            MatMut::new(dx, n, in_f),
            dyt,
            MatRef::new(wt, rows, in_f),
            true,
            T::one(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::quant::four_bit::{dequantize_4bit, quantize_4bit, FourBit};
    use crate::cpu::quant::int8::{dequantize_int8_rows, quantize_int8_rows};
    use crate::testing::{assert_close, rand_vec, Lcg};

    /// Naive `x·Wᵀ` in f64 over an already dequantized W.
    fn naive(x: &[f32], w: &[f32], n: usize, in_f: usize, out_f: usize) -> Vec<f64> {
        let mut y = vec![0.0; n * out_f];
        for t in 0..n {
            for o in 0..out_f {
                y[t * out_f + o] = (0..in_f)
                    .map(|i| x[t * in_f + i] as f64 * w[o * in_f + i] as f64)
                    .sum();
            }
        }
        y
    }

    fn naive_t(dy: &[f32], w: &[f32], n: usize, in_f: usize, out_f: usize) -> Vec<f64> {
        let mut dx = vec![0.0; n * in_f];
        for t in 0..n {
            for i in 0..in_f {
                dx[t * in_f + i] = (0..out_f)
                    .map(|o| dy[t * out_f + o] as f64 * w[o * in_f + i] as f64)
                    .sum();
            }
        }
        dx
    }

    fn check<Q: QuantMatrix>(what: &str, q: &Q, wd: &[f32], rng: &mut Lcg) {
        let (out_f, in_f) = q.dims();
        for n in [1, 2, 37] {
            let x: Vec<f32> = rand_vec(rng, n * in_f, 1.0);
            let want = naive(&x, wd, n, in_f, out_f);
            let dy: Vec<f32> = rand_vec(rng, n * out_f, 1.0);
            let want_t = naive_t(&dy, wd, n, in_f, out_f);
            // default tiles, and tiny tiles (3 rows: several tiles, the last one partial)
            for tile in [tile_rows(out_f, in_f), 3] {
                let mut y = vec![f32::NAN; n * out_f];
                dequant_matmul_tiled(&x, q, n, &mut y, tile);
                let y: Vec<f64> = y.iter().map(|&v| v as f64).collect();
                assert_close(
                    &format!("{what} y n={n} tile={tile}"),
                    &y,
                    &want,
                    1e-4,
                    1e-4,
                );
                let mut dx = vec![f32::NAN; n * in_f];
                dequant_matmul_t_tiled(&dy, q, n, &mut dx, tile);
                let dx: Vec<f64> = dx.iter().map(|&v| v as f64).collect();
                assert_close(
                    &format!("{what} dx n={n} tile={tile}"),
                    &dx,
                    &want_t,
                    1e-4,
                    1e-4,
                );
            }
        }
        let x: Vec<f32> = rand_vec(rng, 5 * in_f, 1.0);
        let (mut y, mut y2) = (vec![0.0; 5 * out_f], vec![0.0; 5 * out_f]);
        dequant_matmul(&x, q, 5, &mut y);
        dequant_matmul_tiled(&x, q, 5, &mut y2, 1);
        assert_close(
            what,
            &y.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &y2.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            1e-5,
            1e-5,
        );
    }

    #[test]
    fn four_bit_matmul_and_gemv_equal_dequantized_product() {
        let mut rng = Lcg::new(21);
        let (out_f, in_f) = (23, 100); // 100 % 64 != 0: blocks straddle rows
        let w: Vec<f32> = rand_vec(&mut rng, out_f * in_f, 0.5);
        for kind in [FourBit::Nf4, FourBit::Fp4] {
            for dq in [false, true] {
                let q = quantize_4bit(&w, &[out_f, in_f], kind, 64, dq);
                let wd = dequantize_4bit(&q);
                check(&format!("{kind:?} dq={dq}"), &q, &wd, &mut rng);
            }
        }
    }

    #[test]
    fn int8_matmul_and_gemv_equal_dequantized_product() {
        let mut rng = Lcg::new(22);
        let (out_f, in_f) = (29, 47);
        let w: Vec<f32> = rand_vec(&mut rng, out_f * in_f, 0.5);
        let q = quantize_int8_rows(&w, out_f, in_f);
        let wd = dequantize_int8_rows(&q);
        check("int8", &q, &wd, &mut rng);
    }
}
