//! Blockwise 4-bit quantization in bitsandbytes' layout (`quantize_4bit` / `dequantize_4bit`).
//!
//! The flattened tensor is cut into blocks of `blocksize` elements (64 by default); each
//! block keeps its absmax, and each element the 4-bit code nearest to `x / absmax`. Two
//! codes share a byte, the first element in the high nibble (bnb: `q[0::2] << 4 | q[1::2]`);
//! an odd count pads the last low nibble with the code of 0. With double quantization (bnb
//! `compress_statistics=True`) the absmax vector is offset by its mean and quantized again,
//! 8-bit blockwise (blocksize 256) with the signed dynamic map.

use super::blockwise8::{dequantize_blockwise_8bit, quantize_blockwise_8bit};
use super::codes::{dynamic_map_signed, nearest, FP4_BOUNDS, FP4_CODE, FP4_ORDER, NF4_CODE};
use super::torch_mean::{torch_mean_f32, TORCH_SUM_LANES};
use crate::Real;
use rayon::prelude::*;

/// Blocksize of the nested 8-bit quantization of the absmax (bnb's fixed 256).
pub const NESTED_BLOCKSIZE: usize = 256;

/// Midpoints of the (sorted) NF4 code: the thresholds of nearest-code rounding.
const NF4_BOUNDS: [f32; 15] = {
    let mut b = [0f32; 15];
    let mut i = 0;
    while i < 15 {
        b[i] = (NF4_CODE[i] + NF4_CODE[i + 1]) / 2.0;
        i += 1;
    }
    b
};

/// The two 4-bit data types of bitsandbytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FourBit {
    /// NormalFloat4 (QLoRA): quantiles of N(0, 1).
    Nf4,
    /// bnb's FP4: sign + 2-bit exponent + 1-bit mantissa.
    Fp4,
}

impl FourBit {
    /// The 16 code values in [−1, 1], indexed by the 4-bit code (bnb's `quant_map`).
    pub fn code(self) -> &'static [f32; 16] {
        match self {
            FourBit::Nf4 => &NF4_CODE,
            FourBit::Fp4 => &FP4_CODE,
        }
    }

    /// bnb's `quant_type` string.
    pub fn name(self) -> &'static str {
        match self {
            FourBit::Nf4 => "nf4",
            FourBit::Fp4 => "fp4",
        }
    }

    /// The code of `v` (already scaled into [−1, 1]) as bitsandbytes quantizes on the CPU
    /// (`torch.bucketize` over the midpoints of the sorted code, a value on a midpoint going
    /// to the lower code): the nearest code; for FP4 `(0, 0.0026]` gets code 8 (−0) and
    /// `(−0.0026, 0]` code 0 (see [`FP4_BOUNDS`]).
    #[inline]
    pub fn encode(self, v: f32) -> u8 {
        match self {
            FourBit::Nf4 => nearest(&NF4_BOUNDS, v) as u8,
            FourBit::Fp4 => FP4_ORDER[nearest(&FP4_BOUNDS, v)],
        }
    }
}

/// The per-block absmax of a 4-bit tensor, plain or double-quantized.
#[derive(Clone, Debug, PartialEq)]
pub enum Absmax {
    /// One f32 per block (bnb `absmax` with `compress_statistics=False`).
    Plain(Vec<f32>),
    /// Double quantization: `absmax[b] = nested_code[q[b]]·nested_absmax[b / nested_blocksize]
    /// + offset` (bnb state: `absmax` u8, `nested_absmax`, `nested_quant_map`,
    /// `nested_offset`, `nested_blocksize`).
    Double {
        /// 8-bit codes of `absmax − offset`, one per 4-bit block.
        q: Vec<u8>,
        /// f32 absmax of each nested block of `nested_blocksize` codes.
        nested_absmax: Vec<f32>,
        /// The 256-value code of `q` (the signed dynamic map when quantized here).
        nested_code: Vec<f32>,
        /// Mean of the original absmax, subtracted before the nested quantization.
        offset: f32,
        /// Elements per nested block (256 in bnb).
        nested_blocksize: usize,
    },
}

impl Absmax {
    /// Number of 4-bit blocks described.
    pub fn len(&self) -> usize {
        match self {
            Absmax::Plain(v) => v.len(),
            Absmax::Double { q, .. } => q.len(),
        }
    }

    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The (dequantized) absmax of block `b`.
    #[inline]
    pub fn block(&self, b: usize) -> f32 {
        match self {
            Absmax::Plain(v) => v[b],
            Absmax::Double {
                q,
                nested_absmax,
                nested_code,
                offset,
                nested_blocksize,
            } => nested_code[q[b] as usize] * nested_absmax[b / nested_blocksize] + offset,
        }
    }

    /// All block absmax values, dequantized.
    pub fn to_vec(&self) -> Vec<f32> {
        match self {
            Absmax::Plain(v) => v.clone(),
            Absmax::Double {
                q,
                nested_absmax,
                nested_code,
                offset,
                nested_blocksize,
            } => {
                let mut v =
                    dequantize_blockwise_8bit(q, nested_absmax, nested_code, *nested_blocksize);
                v.iter_mut().for_each(|a| *a += offset);
                v
            }
        }
    }
}

/// A 4-bit quantized tensor in bitsandbytes' layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Quant4 {
    /// NF4 or FP4.
    pub kind: FourBit,
    /// Elements per absmax block (64 by default; bnb allows 32..4096).
    pub blocksize: usize,
    /// Two codes per byte, first element in the high nibble: `[ceil(numel / 2)]`.
    pub packed: Vec<u8>,
    /// One absmax per block: `[ceil(numel / blocksize)]`.
    pub absmax: Absmax,
    /// The original tensor shape (a weight is `[out, in]`).
    pub shape: Vec<usize>,
}

impl Quant4 {
    /// Number of elements (product of the shape).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The 4-bit code of element `k` of the flattened tensor.
    #[inline]
    pub fn code_at(&self, k: usize) -> u8 {
        let byte = self.packed[k / 2];
        if k & 1 == 0 {
            byte >> 4
        } else {
            byte & 0x0f
        }
    }

    /// Dequantizes the flattened elements `start .. start + out.len()` into `out`.
    pub fn dequantize_range<T: Real>(&self, start: usize, out: &mut [T]) {
        assert!(
            start + out.len() <= self.numel(),
            "dequantize_range: past the end"
        );
        let code = self.kind.code();
        let bs = self.blocksize;
        let mut k = start;
        let mut rest = out;
        while !rest.is_empty() {
            // one segment = the part of a block inside the range
            let len = (bs - k % bs).min(rest.len());
            let (seg, tail) = rest.split_at_mut(len);
            let am = self.absmax.block(k / bs);
            for (j, o) in seg.iter_mut().enumerate() {
                *o = T::of((code[self.code_at(k + j) as usize] * am) as f64);
            }
            k += len;
            rest = tail;
        }
    }

    /// `Σ_i x[i]·W[k0 + i]` over `x.len()` flattened elements from `k0`, dequantizing on the
    /// fly (the GEMV inner product of one weight row).
    pub fn dot_range<T: Real>(&self, k0: usize, x: &[T]) -> T {
        let code = self.kind.code();
        let bs = self.blocksize;
        let (mut k, mut acc) = (k0, T::zero());
        let mut rest = x;
        while !rest.is_empty() {
            let len = (bs - k % bs).min(rest.len());
            let (seg, tail) = rest.split_at(len);
            // Σ x·code within the block, then one multiply by the block's absmax.
            let mut s = T::zero();
            for (j, &xv) in seg.iter().enumerate() {
                s += xv * T::of(code[self.code_at(k + j) as usize] as f64);
            }
            acc += s * T::of(self.absmax.block(k / bs) as f64);
            k += len;
            rest = tail;
        }
        acc
    }
}

/// Quantizes `x` (of `shape`) to 4 bits in blocks of `blocksize`, optionally with double
/// quantization of the absmax (bnb `compress_statistics`).
pub fn quantize_4bit(
    x: &[f32],
    shape: &[usize],
    kind: FourBit,
    blocksize: usize,
    double_quant: bool,
) -> Quant4 {
    let n = x.len();
    assert_eq!(
        n,
        shape.iter().product::<usize>(),
        "quantize_4bit: x does not match shape"
    );
    assert!(
        blocksize >= 2 && blocksize & 1 == 0,
        "quantize_4bit: blocksize {blocksize}"
    );
    let absmax: Vec<f32> = x
        .par_chunks(blocksize)
        .map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect();
    // bnb (CPU): full blocks multiply by the reciprocal of the absmax clamped at 1e-38 (a
    // zero block → the code of 0), the trailing partial block divides by it.
    let full = n / blocksize;
    let inv: Vec<f32> = absmax.iter().map(|a| 1.0 / a.max(1e-38)).collect();
    let enc = |k: usize| {
        let b = k / blocksize;
        let s = if b < full {
            x[k] * inv[b]
        } else {
            x[k] / absmax[b].max(1e-38)
        };
        kind.encode(s.clamp(-1.0, 1.0))
    };
    let pad = kind.encode(0.0);
    let packed: Vec<u8> = (0..n.div_ceil(2))
        .into_par_iter()
        .map(|j| {
            let lo = if 2 * j + 1 < n { enc(2 * j + 1) } else { pad };
            (enc(2 * j) << 4) | lo
        })
        .collect();
    let absmax = if double_quant {
        double_quantize(&absmax)
    } else {
        Absmax::Plain(absmax)
    };
    Quant4 {
        kind,
        blocksize,
        packed,
        absmax,
        shape: shape.to_vec(),
    }
}

/// bnb's `compress_statistics`: offset the absmax by its mean (torch's own f32 mean, so the
/// stored offset has the same bits), quantize 8-bit blockwise.
fn double_quantize(absmax: &[f32]) -> Absmax {
    let offset = torch_mean_f32(absmax, TORCH_SUM_LANES);
    let centered: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
    let nested_code = dynamic_map_signed();
    let (q, nested_absmax) = quantize_blockwise_8bit(&centered, &nested_code, NESTED_BLOCKSIZE);
    Absmax::Double {
        q,
        nested_absmax,
        nested_code,
        offset,
        nested_blocksize: NESTED_BLOCKSIZE,
    }
}

/// The whole tensor dequantized (flattened, f32); the matmuls dequantize tiles instead.
pub fn dequantize_4bit(q: &Quant4) -> Vec<f32> {
    let mut out = vec![0f32; q.numel()];
    // Parallel over chunks of whole blocks; each chunk decodes independently.
    let chunk = q.blocksize * 64;
    out.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(c, o)| q.dequantize_range(c * chunk, o));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Lcg;

    /// Half the largest gap between adjacent sorted codes: the nearest-rounding error bound
    /// relative to the block absmax.
    fn half_gap(code: &[f32]) -> f32 {
        let mut c = code.to_vec();
        c.sort_by(f32::total_cmp);
        c.windows(2).map(|p| p[1] - p[0]).fold(0f32, f32::max) / 2.0
    }

    #[test]
    fn packing_order_first_element_in_high_nibble() {
        // NF4: 1 → 15, −1 → 0, 0 → 7, 0.5626 → 13; one (partial) block with absmax 1.
        let q = quantize_4bit(
            &[1.0, -1.0, 0.0, NF4_CODE[13]],
            &[4],
            FourBit::Nf4,
            64,
            false,
        );
        assert_eq!(q.packed, vec![0xF0, 0x7D]);
        assert_eq!(q.absmax, Absmax::Plain(vec![1.0]));
        // FP4: 1 → 0b0011, −0.5 → 0b1101, 0 → 0b0000, 0.25 → 0b0111
        let q = quantize_4bit(&[1.0, -0.5, 0.0, 0.25], &[2, 2], FourBit::Fp4, 64, false);
        assert_eq!(q.packed, vec![0x3D, 0x07]);
        // odd count: the last low nibble is the code of 0
        let q = quantize_4bit(&[2.0, 0.0, -2.0], &[3], FourBit::Nf4, 64, false);
        assert_eq!(q.packed, vec![0xF7, 0x07]);
        assert_eq!((q.code_at(0), q.code_at(1), q.code_at(2)), (15, 7, 0));
        assert_eq!(dequantize_4bit(&q), vec![2.0, 0.0, -2.0]);
    }

    #[test]
    fn encode_is_nearest_code() {
        let mut rng = Lcg::new(9);
        for kind in [FourBit::Nf4, FourBit::Fp4] {
            let code = kind.code();
            for _ in 0..2000 {
                let v = rng.sym(1.0) as f32;
                let got = code[kind.encode(v) as usize];
                let best = code.iter().map(|c| (c - v).abs()).fold(f32::MAX, f32::min);
                assert!(((got - v).abs() - best).abs() < 1e-7, "{kind:?} {v}: {got}");
            }
        }
    }

    #[test]
    fn round_trip_error_within_half_gap() {
        let mut rng = Lcg::new(4);
        let (rows, cols) = (37, 41); // 1517 elements: odd, last block partial
        let x: Vec<f32> = (0..rows * cols)
            .map(|_| (rng.sym(1.0) * 2.0) as f32)
            .collect();
        for kind in [FourBit::Nf4, FourBit::Fp4] {
            let hg = half_gap(kind.code());
            for bs in [64, 128, 256] {
                let q = quantize_4bit(&x, &[rows, cols], kind, bs, false);
                assert_eq!(q.packed.len(), (rows * cols).div_ceil(2));
                assert_eq!(q.absmax.len(), (rows * cols).div_ceil(bs));
                let y = dequantize_4bit(&q);
                for (k, (a, b)) in x.iter().zip(&y).enumerate() {
                    let am = q.absmax.block(k / bs);
                    assert!(
                        (a - b).abs() <= am * hg + 1e-6,
                        "{kind:?} bs {bs} [{k}] {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn double_quant_error_accounts_for_the_absmax_error() {
        let mut rng = Lcg::new(6);
        // 300 blocks of 64 → two nested blocks (256 + 44); block scales vary 0.1..3
        let n = 300 * 64 + 17;
        let x: Vec<f32> = (0..n)
            .map(|k| (rng.sym(1.0) * (0.1 + 2.9 * ((k / 64) % 13) as f64 / 12.0)) as f32)
            .collect();
        let dyn_code = dynamic_map_signed();
        let dyn_half_gap = half_gap(&dyn_code).max(1.0 + dyn_code[0]);
        for kind in [FourBit::Nf4, FourBit::Fp4] {
            let plain = quantize_4bit(&x, &[n], kind, 64, false);
            let q = quantize_4bit(&x, &[n], kind, 64, true);
            assert_eq!(q.packed, plain.packed, "the codes use the exact absmax");
            let Absmax::Double {
                nested_absmax,
                offset,
                nested_blocksize,
                ..
            } = &q.absmax
            else {
                panic!("not double-quantized")
            };
            assert_eq!((*nested_blocksize, nested_absmax.len()), (256, 2));
            let Absmax::Plain(exact) = &plain.absmax else {
                unreachable!()
            };
            let mean = exact.iter().map(|&a| a as f64).sum::<f64>() / exact.len() as f64;
            assert!((*offset as f64 - mean).abs() < 1e-6);
            // the absmax's own 8-bit error, per block
            let am_err: Vec<f32> = (0..exact.len())
                .map(|b| nested_absmax[b / 256] * dyn_half_gap * (1.0 + 1e-5) + 1e-6)
                .collect();
            for (b, (&e, d)) in exact.iter().zip(q.absmax.to_vec()).enumerate() {
                assert!((e - d).abs() <= am_err[b], "absmax[{b}] {e} vs {d}");
                assert_eq!(d, q.absmax.block(b));
            }
            let hg = half_gap(kind.code());
            let y = dequantize_4bit(&q);
            for (k, (a, b)) in x.iter().zip(&y).enumerate() {
                let bound = exact[k / 64] * hg + am_err[k / 64] + 1e-6;
                assert!(
                    (a - b).abs() <= bound,
                    "{kind:?} [{k}] {a} vs {b} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn codes_times_absmax_round_trip_exactly() {
        for kind in [FourBit::Nf4, FourBit::Fp4] {
            let code = kind.code();
            for am in [0.37f32, 1.0, 12.5] {
                // every code once per block, the ±1 code pins the absmax to `am` exactly
                let x: Vec<f32> = (0..64).map(|k| code[k % 16] * am).collect();
                let q = quantize_4bit(&x, &[64], kind, 64, false);
                assert_eq!(q.absmax, Absmax::Plain(vec![am]));
                assert_eq!(dequantize_4bit(&q), x, "{kind:?} absmax {am}");
                for k in 0..64 {
                    assert_eq!(code[q.code_at(k) as usize], code[k % 16]);
                }
            }
        }
        // an all-zero block dequantizes to zeros
        let q = quantize_4bit(&[0.0; 70], &[70], FourBit::Nf4, 64, false);
        assert!(dequantize_4bit(&q).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn range_and_dot_agree_with_full_dequant() {
        let mut rng = Lcg::new(8);
        let x: Vec<f32> = (0..500).map(|_| rng.sym(1.0) as f32).collect();
        let q = quantize_4bit(&x, &[500], FourBit::Nf4, 64, true);
        let full = dequantize_4bit(&q);
        let mut part = vec![0f64; 150];
        q.dequantize_range(33, &mut part);
        for (a, &b) in part.iter().zip(&full[33..183]) {
            assert_eq!(*a, b as f64);
        }
        let v: Vec<f64> = (0..150).map(|_| rng.sym(1.0)).collect();
        let want: f64 = v
            .iter()
            .zip(&full[33..183])
            .map(|(a, &b)| a * b as f64)
            .sum();
        assert!((q.dot_range(33, &v) - want).abs() < 1e-5);
    }
}
