//! Group-wise integer weight quantization, the format of GPTQ and AWQ checkpoints once their
//! int32 words are unpacked: `W[o, i] = scale[g(i), o] · (q[o, i] − zero[g(i), o])`, with one
//! scale and zero point per group of input columns (`g(i) = g_idx[i]`, which GPTQ's act-order
//! permutes; `i / group_size` otherwise) and output row.
//!
//! The product is rounded to the scales' storage precision (`round`), as the checkpoints'
//! kernels compute it in that dtype. Codes are kept one per byte (2–8 bits each), so a row dequantizes with plain indexing;
//! the matmuls dequantize rows into tiles as for bitsandbytes' formats
//! ([`super::matmul`]).

use crate::Real;

/// A group-quantized matrix `W: [rows, cols]` (rows = out features).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupQuant {
    /// Out features.
    pub rows: usize,
    /// In features.
    pub cols: usize,
    /// Bits per code (the codes are `0 .. 2^bits`).
    pub bits: u32,
    /// Codes, row-major `[rows, cols]`.
    pub q: Vec<u8>,
    /// Zero points `[groups, rows]`, as the formula uses them (a GPTQ v1 checkpoint's stored
    /// zero plus one).
    pub zeros: Vec<u8>,
    /// Scales `[groups, rows]`.
    pub scales: Vec<f32>,
    /// Group of each input column, `[cols]`.
    pub g_idx: Vec<u32>,
    /// Number of groups.
    pub groups: usize,
    /// The precision each dequantized weight is rounded to: the scales' storage dtype, in
    /// which GPTQ/AWQ kernels compute `scale · (q − zero)` (GPTQModel's f16 models: f16).
    pub round: WeightRound,
}

/// Rounding of a dequantized weight (see [`GroupQuant::round`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightRound {
    /// Kept in f32.
    F32,
    /// Rounded to the nearest f16.
    F16,
    /// Rounded to the nearest bf16.
    Bf16,
}

impl WeightRound {
    /// `v` rounded to this precision (ties to even) and widened back.
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            WeightRound::F32 => v,
            WeightRound::F16 => half::f16::from_f32(v).to_f32(),
            WeightRound::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }
}

impl GroupQuant {
    /// Checks that the parts agree in size and the indices are in range.
    pub fn validate(&self) -> Result<(), String> {
        let (r, c, g) = (self.rows, self.cols, self.groups);
        if self.q.len() != r * c {
            return Err(format!("{} codes for a [{r}, {c}] weight", self.q.len()));
        }
        if self.zeros.len() != g * r || self.scales.len() != g * r {
            return Err(format!(
                "{} zeros / {} scales for {g} groups of {r} rows",
                self.zeros.len(),
                self.scales.len()
            ));
        }
        if self.g_idx.len() != c {
            return Err(format!(
                "g_idx has {} entries for {c} columns",
                self.g_idx.len()
            ));
        }
        if let Some(&bad) = self.g_idx.iter().find(|&&x| x as usize >= g) {
            return Err(format!("g_idx holds group {bad} of {g}"));
        }
        Ok(())
    }

    /// One weight: `round(scale · (q − zero))` of row `r` in group `g`.
    #[inline]
    fn weight(&self, r: usize, q: u8, g: u32) -> f32 {
        let k = g as usize * self.rows + r;
        self.round
            .apply(self.scales[k] * (q as f32 - self.zeros[k] as f32))
    }

    /// Dequantizes row `r` into `out: [cols]`.
    pub fn dequantize_row<T: Real>(&self, r: usize, out: &mut [T]) {
        let codes = &self.q[r * self.cols..(r + 1) * self.cols];
        for ((o, &q), &g) in out.iter_mut().zip(codes).zip(&self.g_idx) {
            *o = T::of(self.weight(r, q, g) as f64);
        }
    }

    /// `x · W[r]`, dequantizing on the fly.
    pub fn dot_row<T: Real>(&self, r: usize, x: &[T]) -> T {
        let codes = &self.q[r * self.cols..(r + 1) * self.cols];
        let mut acc = T::zero();
        for ((&xv, &q), &g) in x.iter().zip(codes).zip(&self.g_idx) {
            acc += xv * T::of(self.weight(r, q, g) as f64);
        }
        acc
    }

    /// The whole matrix dequantized, `[rows, cols]` f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_mut(self.cols.max(1)).enumerate() {
            self.dequantize_row(r, row);
        }
        out
    }
}

/// Unpacks `bits`-bit fields from little-endian int32 words, lowest bits first (GPTQ's
/// packing): word `w` holds fields `w·(32/bits) ..` in order.
pub fn unpack_words(words: &[u32], bits: u32) -> Vec<u8> {
    let per = (32 / bits) as usize;
    let mask = (1u32 << bits) - 1;
    let mut out = Vec::with_capacity(words.len() * per);
    for &w in words {
        for j in 0..per {
            out.push(((w >> (bits as usize * j)) & mask) as u8);
        }
    }
    out
}

/// Packs `bits`-bit fields into int32 words, lowest bits first: the inverse of
/// [`unpack_words`] (`fields.len()` a multiple of `32 / bits`; higher bits of a field are
/// dropped).
pub fn pack_words(fields: &[u8], bits: u32) -> Vec<u32> {
    let per = (32 / bits) as usize;
    let mask = (1u32 << bits) - 1;
    fields
        .chunks(per)
        .map(|c| {
            c.iter().enumerate().fold(0u32, |w, (j, &f)| {
                w | ((f as u32 & mask) << (bits as usize * j))
            })
        })
        .collect()
}

/// AWQ's packing order within a 4-bit word: field `j` holds column `AWQ_ORDER[j]` of its
/// block of 8.
pub const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Unpacks AWQ words `[n, cols/8]` (4-bit, [`AWQ_ORDER`] within each word) to `[n, cols]`.
pub fn unpack_awq(words: &[u32], n: usize, cols: usize) -> Vec<u8> {
    let mut out = vec![0u8; n * cols];
    for (k, &w) in words.iter().enumerate() {
        let (row, block) = (k / (cols / 8), k % (cols / 8));
        for (j, &col) in AWQ_ORDER.iter().enumerate() {
            out[row * cols + block * 8 + col] = ((w >> (4 * j)) & 0xf) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacking_orders() {
        // GPTQ: lowest nibble first
        assert_eq!(
            unpack_words(&[0x7654_3210], 4),
            vec![0, 1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(unpack_words(&[0x0403_0201], 8), vec![1, 2, 3, 4]);
        // AWQ: nibble j is column AWQ_ORDER[j]
        let w = (0..8u32).fold(0u32, |acc, j| {
            acc | ((AWQ_ORDER[j as usize] as u32) << (4 * j))
        });
        assert_eq!(unpack_awq(&[w], 1, 8), vec![0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn dequantizes_by_group_index() {
        // 2 rows, 4 columns, 2 groups; act-order g_idx [1, 0, 1, 0]
        let g = GroupQuant {
            rows: 2,
            cols: 4,
            bits: 4,
            q: vec![8, 9, 10, 11, 0, 15, 8, 7],
            zeros: vec![8, 8, 7, 9],
            scales: vec![0.5, 2.0, 0.25, 1.0],
            g_idx: vec![1, 0, 1, 0],
            groups: 2,
            round: WeightRound::F32,
        };
        g.validate().unwrap();
        // row 0: group 1 → (scale 0.25, zero 7); group 0 → (0.5, 8)
        assert_eq!(g.dequantize()[..4], [0.25, 0.5, 0.75, 1.5]);
        // row 1: group 1 → (1.0, 9); group 0 → (2.0, 8)
        assert_eq!(g.dequantize()[4..], [-9.0, 14.0, -1.0, -2.0]);
        let x = [1.0f64, 2.0, 3.0, 4.0];
        assert_eq!(g.dot_row(1, &x), -9.0 + 28.0 - 3.0 - 8.0);
    }
}
