//! bnb `quantize_blockwise` / `dequantize_blockwise`: 8-bit codes into a sorted 256-value
//! code (the dynamic map by default), one f32 absmax per block of `blocksize` elements.
//!
//! Used for the double quantization of the 4-bit absmax (blocksize 256).

use super::codes::{midpoints, nearest};
use rayon::prelude::*;

/// 8-bit blockwise quantization of `x` against the sorted `code` (256 values in [−1, 1]).
///
/// Returns `(q: [len], absmax: [ceil(len / blocksize)])`: per block `absmax = max|x|`, and
/// `q = nearest(code, x/absmax)` (ties to the lower code, as bnb's `bucketize`).
pub fn quantize_blockwise_8bit(x: &[f32], code: &[f32], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    assert!(blocksize > 0, "quantize_blockwise_8bit: blocksize 0");
    assert_eq!(
        code.len(),
        256,
        "quantize_blockwise_8bit: code is not 256 values"
    );
    let bounds = midpoints(code);
    let absmax: Vec<f32> = x
        .par_chunks(blocksize)
        .map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect();
    let mut q = vec![0u8; x.len()];
    q.par_chunks_mut(blocksize)
        .zip(x.par_chunks(blocksize))
        .zip(absmax.par_iter())
        .for_each(|((qb, xb), &am)| {
            // bnb clamps the divisor at 1e-38 so an all-zero block quantizes to the 0 code.
            let inv = 1.0 / am.max(1e-38);
            for (o, &v) in qb.iter_mut().zip(xb) {
                *o = nearest(&bounds, (v * inv).clamp(-1.0, 1.0)) as u8;
            }
        });
    (q, absmax)
}

/// Inverse of [`quantize_blockwise_8bit`]: `x[k] = code[q[k]] · absmax[k / blocksize]`.
pub fn dequantize_blockwise_8bit(
    q: &[u8],
    absmax: &[f32],
    code: &[f32],
    blocksize: usize,
) -> Vec<f32> {
    assert!(blocksize > 0, "dequantize_blockwise_8bit: blocksize 0");
    assert_eq!(
        code.len(),
        256,
        "dequantize_blockwise_8bit: code is not 256 values"
    );
    assert_eq!(
        absmax.len(),
        q.len().div_ceil(blocksize),
        "dequantize_blockwise_8bit: absmax length"
    );
    q.iter()
        .enumerate()
        .map(|(k, &c)| code[c as usize] * absmax[k / blocksize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::quant::codes::dynamic_map_signed;
    use crate::testing::Lcg;

    #[test]
    fn round_trip_within_half_gap_of_dynamic_map() {
        let code = dynamic_map_signed();
        // worst case: half the largest gap, or −1 clamped to the smallest code (no −1 code)
        let half_gap = code.windows(2).map(|p| p[1] - p[0]).fold(0f32, f32::max) / 2.0;
        let half_gap = half_gap.max(1.0 + code[0]);
        let mut rng = Lcg::new(5);
        // 700 = two full blocks of 256 and a partial one; magnitudes spread over decades.
        let x: Vec<f32> = (0..700)
            .map(|_| (rng.sym(1.0) * 10f64.powf(rng.sym(2.0))) as f32)
            .collect();
        let (q, absmax) = quantize_blockwise_8bit(&x, &code, 256);
        assert_eq!(absmax.len(), 3);
        let y = dequantize_blockwise_8bit(&q, &absmax, &code, 256);
        for (k, (a, b)) in x.iter().zip(&y).enumerate() {
            let am = absmax[k / 256];
            assert!(
                (a - b).abs() <= am * half_gap * (1.0 + 1e-5),
                "[{k}] {a} vs {b}"
            );
        }
        // a positive block max hits the code 1.0 exactly (the signed map has no −1: a
        // negative max goes to its smallest code); zeros stay zero
        let (q, am) = quantize_blockwise_8bit(&[0.0, 3.0, 0.0, -3.0], &code, 4);
        assert_eq!(am, vec![3.0]);
        let y = dequantize_blockwise_8bit(&q, &am, &code, 4);
        assert_eq!(y, [0.0, 3.0, 0.0, code[0] * 3.0]);
        let (q, am) = quantize_blockwise_8bit(&[0.0; 5], &code, 4);
        assert_eq!(dequantize_blockwise_8bit(&q, &am, &code, 4), vec![0.0; 5]);
    }
}
