//! bnb `quantize_blockwise` / `dequantize_blockwise`: 8-bit codes into a sorted 256-value
//! code (the dynamic map by default), one f32 absmax per block of `blocksize` elements.
//!
//! Used for the double quantization of the 4-bit absmax (blocksize 256). The quantizer is
//! bitsandbytes' CPU kernel (`csrc/cpu_ops.cpp`, `quantize_cpu_impl`), whose codes every
//! double-quantized checkpoint made on a CPU carries: not the exact nearest code, but a
//! 65536-bin lookup table over [−1, 1] (bin `i` centred on `−1 + 2i/65535`, holding the code
//! whose midpoint interval contains that centre), indexed by
//! `⌊fma((v + 1)·0.5, 65535, 0.5)⌋` (the build contracts the multiply-add). A value within
//! half a bin (1.5e-5) of a midpoint can get the farther of the two codes.

use rayon::prelude::*;

/// Bins of bnb's quantization lookup table.
const LUT_SIZE: usize = 65536;

/// bnb's `build_quantize_lut`: bin `i` → the first code whose upper midpoint is not below
/// the bin centre.
fn build_lut(code: &[f32]) -> Vec<u8> {
    let mid: Vec<f32> = code.windows(2).map(|p| 0.5 * (p[0] + p[1])).collect();
    let mut lut = vec![0u8; LUT_SIZE];
    let mut c = 0usize;
    for (i, slot) in lut.iter_mut().enumerate() {
        let centre = -1.0f32 + (2.0 * i as f32) / (LUT_SIZE - 1) as f32;
        while c < code.len() - 1 && mid[c] < centre {
            c += 1;
        }
        *slot = c as u8;
    }
    lut
}

/// bnb's `norm_to_lut_index` for a value already scaled by the block's reciprocal absmax.
#[inline]
fn lut_index(v: f32) -> usize {
    let v = v.clamp(-1.0, 1.0);
    ((v + 1.0) * 0.5).mul_add((LUT_SIZE - 1) as f32, 0.5) as u16 as usize
}

/// 8-bit blockwise quantization of `x` against the sorted `code` (256 values in [−1, 1]), as
/// bitsandbytes' CPU kernel does it (see the module header).
///
/// Returns `(q: [len], absmax: [ceil(len / blocksize)])`: per block `absmax = max|x|`, and
/// `q = lut[index(x · (1/absmax))]`; an all-zero block gets code index 0.
pub fn quantize_blockwise_8bit(x: &[f32], code: &[f32], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    assert!(blocksize > 0, "quantize_blockwise_8bit: blocksize 0");
    assert_eq!(
        code.len(),
        256,
        "quantize_blockwise_8bit: code is not 256 values"
    );
    let lut = build_lut(code);
    let absmax: Vec<f32> = x
        .par_chunks(blocksize)
        .map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect();
    let mut q = vec![0u8; x.len()];
    q.par_chunks_mut(blocksize)
        .zip(x.par_chunks(blocksize))
        .zip(absmax.par_iter())
        .for_each(|((qb, xb), &am)| {
            if am == 0.0 {
                return; // bnb writes code index 0
            }
            let inv = 1.0 / am;
            for (o, &v) in qb.iter_mut().zip(xb) {
                *o = lut[lut_index(v * inv)];
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
        // plus the lookup table's resolution (one bin, 2/65535)
        let half_gap = half_gap.max(1.0 + code[0]) + 2.0 / 65535.0;
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
        // negative max goes to its smallest code); 0 falls in the table's bin 32768, centred
        // on 1.5e-5, whose code is the one nearest that centre; an all-zero block gets code
        // index 0, times an absmax of 0
        let (q, am) = quantize_blockwise_8bit(&[0.0, 3.0, 0.0, -3.0], &code, 4);
        assert_eq!(am, vec![3.0]);
        let y = dequantize_blockwise_8bit(&q, &am, &code, 4);
        let centre = -1.0f32 + 65536.0 / 65535.0;
        let near = code
            .iter()
            .copied()
            .min_by(|a, b| (a - centre).abs().total_cmp(&(b - centre).abs()))
            .unwrap();
        assert_eq!(y, [near * 3.0, 3.0, near * 3.0, code[0] * 3.0]);
        let (q, am) = quantize_blockwise_8bit(&[0.0; 5], &code, 4);
        assert_eq!(dequantize_blockwise_8bit(&q, &am, &code, 4), vec![0.0; 5]);
    }
}
