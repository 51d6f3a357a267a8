//! LLM.int8 inference matmul (Dettmers et al. 2022), bitsandbytes' `MatMul8bitLt` forward:
//! `y = x · dequant(W)ᵀ + b` with the activations quantized too, except their outlier columns.
//!
//! For `x: [n, in]` (f32) and a row-wise int8 weight `W: [out, in]` ([`Int8Rows`]):
//! 1. `x16 = fp16(x)`; with `threshold > 0`, every element with `|x16| ≥ threshold` is an
//!    outlier and its column an outlier column; the outlier elements are zeroed;
//! 2. per row `s_r = max|x16[r]|`, `ca = round(x16 · ((1/s_r) · 127))` (int8; an all-zero row → 0),
//!    and with more than one row the outlier columns of `ca` are zeroed;
//! 3. `acc = ca · qᵀ` in exact integers, `y = f32(acc) · (s_r · absmax_c) · 6.200124e-05 + b`
//!    (bnb's `int8_mm_dequant`; the constant is 1/127² in f32);
//! 4. the outlier columns in full precision: `y += x[:, cols] · (q[:, cols] · absmax · 1/127)ᵀ`.
//!
//! bnb uses this path in eval mode (chat, evaluation); training forwards on the CPU dequantize
//! the weight instead (`MatMul8bitFp`, see [`Int8Rows::dequantize_row`]).

use super::int8::{round_f16, Int8Rows};
use rayon::prelude::*;

/// bnb's `int8_mm_dequant` constant, 1/127² as bnb writes it.
const INV127_SQ: f32 = 6.200124e-05;
/// bnb's `int8_vectorwise_dequant` constant, 1/127 (written 7.874015718698502e-3 there).
const INV127: f32 = 1.0 / 127.0;

/// The LLM.int8 product `y: [n, out] = x · Wᵀ (+ bias)` described in the module header.
pub fn llm_int8_matmul(
    x: &[f32],
    n: usize,
    w: &Int8Rows,
    bias: Option<&[f32]>,
    threshold: f32,
    y: &mut [f32],
) {
    let (out_f, in_f) = (w.rows, w.cols);
    assert_eq!(x.len(), n * in_f, "llm_int8_matmul: x is not [n, in]");
    assert_eq!(y.len(), n * out_f, "llm_int8_matmul: y is not [n, out]");
    if let Some(b) = bias {
        assert_eq!(b.len(), out_f, "llm_int8_matmul: bias is not [out]");
    }
    // 1. fp16 activations, outliers found and zeroed
    let mut x16: Vec<f32> = x.iter().map(|&v| round_f16(v)).collect();
    let mut outlier_col = vec![false; in_f];
    if threshold > 0.0 {
        for row in x16.chunks_mut(in_f.max(1)) {
            for (c, v) in row.iter_mut().enumerate() {
                if v.abs() >= threshold {
                    outlier_col[c] = true;
                    *v = 0.0;
                }
            }
        }
    }
    let cols: Vec<usize> = (0..in_f).filter(|&c| outlier_col[c]).collect();
    // 2. row-wise int8 activations
    let mut ca = vec![0i8; n * in_f];
    let mut row_stats = vec![0f32; n];
    for r in 0..n {
        let row = &x16[r * in_f..(r + 1) * in_f];
        let s = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        row_stats[r] = s;
        if s > 0.0 {
            let k = (1.0 / s) * 127.0; // torch's `127.0 / t`: a reciprocal, then the product
            for (o, &v) in ca[r * in_f..(r + 1) * in_f].iter_mut().zip(row) {
                *o = (v * k).round_ties_even() as i8;
            }
        }
        if n > 1 {
            for &c in &cols {
                ca[r * in_f + c] = 0;
            }
        }
    }
    // 3. integer product, dequantized; 4. the outlier columns added in f32
    let sub_w: Vec<f32> = (0..out_f)
        .flat_map(|o| {
            cols.iter()
                .map(move |&c| w.q[o * in_f + c] as f32 * w.absmax[o] * INV127)
        })
        .collect();
    y.par_chunks_mut(out_f.max(1))
        .enumerate()
        .for_each(|(r, yr)| {
            let a = &ca[r * in_f..(r + 1) * in_f];
            for (o, yo) in yr.iter_mut().enumerate() {
                let q = &w.q[o * in_f..(o + 1) * in_f];
                let acc: i32 = a.iter().zip(q).map(|(&p, &v)| p as i32 * v as i32).sum();
                let mut v = acc as f32 * (row_stats[r] * w.absmax[o]) * INV127_SQ;
                if let Some(b) = bias {
                    v += b[o];
                }
                let sw = &sub_w[o * cols.len()..(o + 1) * cols.len()];
                let extra: f32 = cols
                    .iter()
                    .zip(sw)
                    .map(|(&c, &wv)| x[r * in_f + c] * wv)
                    .sum();
                *yo = v + extra;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::quant::int8::quantize_int8_rows;
    use crate::testing::Lcg;

    #[test]
    fn close_to_the_float_product_and_exact_on_outlier_columns() {
        let mut rng = Lcg::new(21);
        let (n, in_f, out_f) = (5, 40, 7);
        let w: Vec<f32> = (0..out_f * in_f).map(|_| rng.sym(0.5) as f32).collect();
        let mut x: Vec<f32> = (0..n * in_f).map(|_| rng.sym(1.0) as f32).collect();
        x[3] = 9.0; // column 3 is an outlier column
        x[2 * in_f + 17] = -6.0; // on the threshold: an outlier too
        let q = quantize_int8_rows(&w, out_f, in_f);
        let wd = crate::cpu::quant::dequantize_int8_rows(&q);
        let mut y = vec![0f32; n * out_f];
        llm_int8_matmul(&x, n, &q, None, 6.0, &mut y);
        for r in 0..n {
            for o in 0..out_f {
                let exact: f32 = (0..in_f).map(|c| x[r * in_f + c] * wd[o * in_f + c]).sum();
                // only the non-outlier columns carry the activations' int8 error
                let err_bound = 40.0 * 0.5 * (1.0 / 127.0) + 1e-4;
                let got = y[r * out_f + o];
                assert!(
                    (got - exact).abs() < err_bound,
                    "[{r},{o}] {got} vs {exact}"
                );
            }
        }
        // with every activation an outlier, the product is the dequantized float product
        let mut y2 = vec![0f32; n * out_f];
        llm_int8_matmul(&x, n, &q, None, 1e-9, &mut y2);
        for r in 0..n {
            for o in 0..out_f {
                let exact: f32 = (0..in_f).map(|c| x[r * in_f + c] * wd[o * in_f + c]).sum();
                assert!((y2[r * out_f + o] - exact).abs() < 1e-5);
            }
        }
    }
}
