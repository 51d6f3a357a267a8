//! LLM.int8 vector-wise (row-wise) int8 quantization of a weight, as bitsandbytes' `Int8Params`
//! does it: the weight is first cast to fp16, then bnb's `int8_vectorwise_quant` (no outlier
//! threshold for weights): per row `absmax` (bnb's `SCB`, of the fp16 values),
//! `q = round(x16 · ((1/absmax) · 127))` in f32 (torch's `127.0 / t`) (round half to even, as torch), and back
//! `x ≈ q · (absmax · (1/127))` (bnb's `MatMul8bitFp`, the product in that order).

use crate::Real;
use rayon::prelude::*;

/// A row-wise int8 matrix `[rows, cols]` with one f32 absmax per row.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Rows {
    /// Codes, row-major `[rows, cols]` (bnb `weight` / `CB`).
    pub q: Vec<i8>,
    /// Per-row absmax `[rows]` (bnb `SCB`).
    pub absmax: Vec<f32>,
    /// Number of rows (out features for a weight).
    pub rows: usize,
    /// Number of columns (in features for a weight).
    pub cols: usize,
}

/// 1/127 in f32, the dequantization factor (bnb writes it as 7.874015718698502e-3, the same
/// f32 value).
const INV127: f32 = 1.0 / 127.0;

/// Quantizes `x: [rows, cols]` row-wise to int8 (through fp16, as bnb).
pub fn quantize_int8_rows(x: &[f32], rows: usize, cols: usize) -> Int8Rows {
    assert_eq!(
        x.len(),
        rows * cols,
        "quantize_int8_rows: x is not [rows, cols]"
    );
    let x: Vec<f32> = x.par_iter().map(|&v| round_f16(v)).collect();
    let x = &x[..];
    let absmax: Vec<f32> = x
        .par_chunks(cols.max(1))
        .map(|r| r.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect();
    let mut q = vec![0i8; rows * cols];
    if cols > 0 {
        q.par_chunks_mut(cols)
            .zip(x.par_chunks(cols))
            .zip(&absmax)
            .for_each(|((qr, xr), &am)| {
                // torch evaluates bnb's `127.0 / absmax` as `absmax.reciprocal() * 127`.
                // An all-zero row stays zero (bnb would divide by zero here).
                let s = if am > 0.0 { (1.0 / am) * 127.0 } else { 0.0 };
                for (o, &v) in qr.iter_mut().zip(xr) {
                    *o = (v * s).round_ties_even().clamp(-127.0, 127.0) as i8;
                }
            });
    }
    Int8Rows {
        q,
        absmax: absmax[..rows].to_vec(),
        rows,
        cols,
    }
}

impl Int8Rows {
    /// Dequantizes row `r` into `out: [cols]`: `q · (absmax · (1/127))` in f32.
    pub fn dequantize_row<T: Real>(&self, r: usize, out: &mut [T]) {
        let s = self.absmax[r] * INV127;
        let row = &self.q[r * self.cols..(r + 1) * self.cols];
        for (o, &c) in out.iter_mut().zip(row) {
            *o = T::of((c as f32 * s) as f64);
        }
    }

    /// `x · row r` dequantizing on the fly: `(Σ x·q)·absmax/127`.
    pub fn dot_row<T: Real>(&self, r: usize, x: &[T]) -> T {
        let row = &self.q[r * self.cols..(r + 1) * self.cols];
        let s: T = x.iter().zip(row).map(|(&a, &c)| a * T::of(c as f64)).sum();
        s * T::of((self.absmax[r] * INV127) as f64)
    }
}

/// `v` rounded to the nearest fp16 (ties to even) and back, as torch's `.to(torch.float16)`.
pub fn round_f16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// The whole matrix dequantized, `[rows, cols]` f32.
pub fn dequantize_int8_rows(q: &Int8Rows) -> Vec<f32> {
    let mut out = vec![0f32; q.rows * q.cols];
    if q.cols > 0 {
        out.par_chunks_mut(q.cols)
            .enumerate()
            .for_each(|(r, o)| q.dequantize_row(r, o));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Lcg;

    #[test]
    fn error_within_absmax_over_254() {
        let mut rng = Lcg::new(12);
        let (rows, cols) = (37, 53);
        let x: Vec<f32> = (0..rows * cols)
            .map(|k| (rng.sym(1.0) * (1 + k / cols) as f64) as f32)
            .collect();
        let q = quantize_int8_rows(&x, rows, cols);
        let y = dequantize_int8_rows(&q);
        for r in 0..rows {
            let am = x[r * cols..(r + 1) * cols]
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(q.absmax[r], round_f16(am));
            // the fp16 rounding (up to am·2^-11 = am·0.124/254) adds to the int8 step
            let am = am * 1.13;
            for c in 0..cols {
                let k = r * cols + c;
                assert!(
                    (x[k] - y[k]).abs() <= am / 254.0 * (1.0 + 1e-5),
                    "[{r},{c}] {} vs {}",
                    x[k],
                    y[k]
                );
            }
            // the row max maps to ±127
            assert!(q.q[r * cols..(r + 1) * cols]
                .iter()
                .any(|&c| c.abs() == 127));
        }
    }

    #[test]
    fn rounding_half_to_even_and_zero_rows() {
        // absmax 127 → q = round(x): 0.5 → 0, 1.5 → 2, 2.5 → 2, −0.5 → 0 (all exact in fp16)
        let q = quantize_int8_rows(&[127.0, 0.5, 1.5, 2.5, -0.5, -127.0], 1, 6);
        assert_eq!(q.q, vec![127, 0, 2, 2, 0, -127]);
        let z = quantize_int8_rows(&[0.0; 4], 2, 2);
        assert_eq!(z.q, vec![0; 4]);
        assert_eq!(dequantize_int8_rows(&z), vec![0.0; 4]);
    }
}
