//! MXFP4 mixture-of-experts weights, as GPT-OSS checkpoints store them, and their grouped
//! dequant-matmul: the experts stay 4-bit and each group's product dequantizes tiles of its
//! expert on the fly ([`super::matmul`]).
//!
//! Layout (E experts, each `W_e: [rows, cols]`, rows = out features, `cols % 32 == 0`):
//!
//! - `blocks: [E, rows, cols/32, 16]` u8: two e2m1 codes per byte, element `2j` of a block
//!   in the low nibble of byte `j`, element `2j + 1` in the high nibble;
//! - `scales: [E, rows, cols/32]` u8: one shared exponent per block of 32 elements.
//!
//! `W_e[r, c] = FP4_VALUES[code(e, r, c)] · 2^(scale[e, r, c/32] − 127)` (transformers'
//! `convert_moe_packed_tensors`).

use super::matmul::{dequant_matmul, dequant_matmul_t, QuantMatrix};
use crate::cpu::grouped_gemm::{check_offsets, per_group};
use crate::Real;

/// Values of the 16 e2m1 codes (sign bit 3, then exponent and mantissa).
pub const FP4_VALUES: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// Elements per MXFP4 block (one scale each).
pub const MXFP4_BLOCK: usize = 32;

/// The scale of a block: `2^(s − 127)`.
#[inline]
fn unit(s: u8) -> f32 {
    2f32.powi(s as i32 - 127)
}

/// A stack of E MXFP4 matrices `[E, rows, cols]`, laid out exactly as the checkpoint's
/// `_blocks` / `_scales` (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Mxfp4Experts {
    /// Number of experts E.
    pub experts: usize,
    /// Out features of each expert.
    pub rows: usize,
    /// In features of each expert (a multiple of 32).
    pub cols: usize,
    /// Packed codes `[E, rows, cols/32, 16]`.
    pub blocks: Vec<u8>,
    /// Block exponents `[E, rows, cols/32]`.
    pub scales: Vec<u8>,
}

/// Expert `e` of an [`Mxfp4Experts`]: `W_e: [rows, cols]`, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Mxfp4Matrix<'a> {
    rows: usize,
    cols: usize,
    /// `[rows, cols/32, 16]`.
    blocks: &'a [u8],
    /// `[rows, cols/32]`.
    scales: &'a [u8],
}

impl Mxfp4Experts {
    /// The stack `[experts, rows, cols]` from its blocks and scales, checking their sizes.
    pub fn new(
        experts: usize,
        rows: usize,
        cols: usize,
        blocks: Vec<u8>,
        scales: Vec<u8>,
    ) -> Result<Self, String> {
        if !cols.is_multiple_of(MXFP4_BLOCK) {
            return Err(format!(
                "MXFP4 needs a multiple of {MXFP4_BLOCK} input features, got {cols}"
            ));
        }
        let nb = experts * rows * (cols / MXFP4_BLOCK);
        if blocks.len() != nb * 16 || scales.len() != nb {
            return Err(format!(
                "{} block bytes and {} scales for [{experts}, {rows}, {cols}] (want {} and {nb})",
                blocks.len(),
                scales.len(),
                nb * 16
            ));
        }
        Ok(Mxfp4Experts {
            experts,
            rows,
            cols,
            blocks,
            scales,
        })
    }

    /// Blocks per row.
    fn row_blocks(&self) -> usize {
        self.cols / MXFP4_BLOCK
    }

    /// Expert `e`'s matrix.
    pub fn expert(&self, e: usize) -> Mxfp4Matrix<'_> {
        assert!(e < self.experts, "mxfp4: expert {e} of {}", self.experts);
        let per = self.rows * self.row_blocks(); // blocks per expert
        Mxfp4Matrix {
            rows: self.rows,
            cols: self.cols,
            blocks: &self.blocks[e * per * 16..(e + 1) * per * 16],
            scales: &self.scales[e * per..(e + 1) * per],
        }
    }

    /// The same experts with rows reordered: row `j` of each result expert is row `perm[j]`
    /// of that expert here (whole rows of blocks and scales move, so this is exact).
    pub fn permute_rows(&self, perm: &[usize]) -> Mxfp4Experts {
        assert_eq!(perm.len(), self.rows, "mxfp4: permutation length");
        let nb = self.row_blocks();
        let (mut blocks, mut scales) = (
            Vec::with_capacity(self.blocks.len()),
            Vec::with_capacity(self.scales.len()),
        );
        for e in 0..self.experts {
            for &r in perm {
                let row = e * self.rows + r;
                blocks.extend_from_slice(&self.blocks[row * nb * 16..(row + 1) * nb * 16]);
                scales.extend_from_slice(&self.scales[row * nb..(row + 1) * nb]);
            }
        }
        Mxfp4Experts {
            blocks,
            scales,
            ..*self
        }
    }

    /// Every expert dequantized, `[E, rows, cols]` f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.experts * self.rows * self.cols];
        for (chunk, (block, &s)) in out
            .chunks_mut(MXFP4_BLOCK)
            .zip(self.blocks.chunks(16).zip(&self.scales))
        {
            decode_block(block, s, chunk);
        }
        out
    }

    /// Bytes the codes and scales take.
    pub fn bytes(&self) -> usize {
        self.blocks.len() + self.scales.len()
    }
}

/// Decodes one block (`block: [16]` bytes, scale `s`) into `out: [32]`.
#[inline]
fn decode_block<T: Real>(block: &[u8], s: u8, out: &mut [T]) {
    let u = unit(s);
    for (pair, &byte) in out.chunks_exact_mut(2).zip(block) {
        pair[0] = T::of((FP4_VALUES[(byte & 0x0f) as usize] * u) as f64);
        pair[1] = T::of((FP4_VALUES[(byte >> 4) as usize] * u) as f64);
    }
}

impl QuantMatrix for Mxfp4Matrix<'_> {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn dequant_row<T: Real>(&self, r: usize, out: &mut [T]) {
        let nb = self.cols / MXFP4_BLOCK;
        let (blocks, scales) = (
            &self.blocks[r * nb * 16..(r + 1) * nb * 16],
            &self.scales[r * nb..(r + 1) * nb],
        );
        for ((chunk, block), &s) in out
            .chunks_exact_mut(MXFP4_BLOCK)
            .zip(blocks.chunks_exact(16))
            .zip(scales)
        {
            decode_block(block, s, chunk);
        }
    }

    fn row_dot<T: Real>(&self, r: usize, x: &[T]) -> T {
        let nb = self.cols / MXFP4_BLOCK;
        let (blocks, scales) = (
            &self.blocks[r * nb * 16..(r + 1) * nb * 16],
            &self.scales[r * nb..(r + 1) * nb],
        );
        let mut acc = T::zero();
        for ((xb, block), &s) in x
            .chunks_exact(MXFP4_BLOCK)
            .zip(blocks.chunks_exact(16))
            .zip(scales)
        {
            // Σ x·code over the block, then one multiply by the power-of-two scale
            let mut part = T::zero();
            for (xp, &byte) in xb.chunks_exact(2).zip(block) {
                part += xp[0] * T::of(FP4_VALUES[(byte & 0x0f) as usize] as f64)
                    + xp[1] * T::of(FP4_VALUES[(byte >> 4) as usize] as f64);
            }
            acc += part * T::of(unit(s) as f64);
        }
        acc
    }
}

/// `y[rows_e] = x[rows_e] · dequant(W_e)ᵀ` for every expert `e`: `x: [m, cols]`,
/// `w: [E, rows, cols]`, `y: [m, rows]` (fully overwritten); `offsets: [E + 1]` from 0 to `m`.
pub fn grouped_dequant_matmul<T: Real>(y: &mut [T], x: &[T], w: &Mxfp4Experts, offsets: &[usize]) {
    let (n, k, m) = (w.rows, w.cols, offsets.last().copied().unwrap_or(0));
    check_offsets(offsets, w.experts, m);
    assert!(
        x.len() == m * k && y.len() == m * n,
        "grouped dequant matmul: x / y shapes"
    );
    per_group(y, offsets, n, |e, rows, y_e| {
        let x_e = &x[offsets[e] * k..offsets[e + 1] * k];
        dequant_matmul(x_e, &w.expert(e), rows, y_e);
    });
}

/// `dx[rows_e] = dy[rows_e] · dequant(W_e)`: `dy: [m, rows]`, `w: [E, rows, cols]`,
/// `dx: [m, cols]` (fully overwritten): the backward of [`grouped_dequant_matmul`] to its
/// input (the experts are frozen).
pub fn grouped_dequant_matmul_t<T: Real>(
    dx: &mut [T],
    dy: &[T],
    w: &Mxfp4Experts,
    offsets: &[usize],
) {
    let (n, k, m) = (w.rows, w.cols, offsets.last().copied().unwrap_or(0));
    check_offsets(offsets, w.experts, m);
    assert!(
        dy.len() == m * n && dx.len() == m * k,
        "grouped dequant matmul: dy / dx shapes"
    );
    per_group(dx, offsets, k, |e, rows, dx_e| {
        let dy_e = &dy[offsets[e] * n..offsets[e + 1] * n];
        dequant_matmul_t(dy_e, &w.expert(e), rows, dx_e);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, rand_vec, Lcg};

    /// A random stack with scales around 2^0 (exponents 124..=130).
    fn random(experts: usize, rows: usize, cols: usize, rng: &mut Lcg) -> Mxfp4Experts {
        let nb = experts * rows * cols / MXFP4_BLOCK;
        let blocks = (0..nb * 16).map(|_| rng.below(256) as u8).collect();
        let scales = (0..nb).map(|_| 124 + rng.below(7) as u8).collect();
        Mxfp4Experts::new(experts, rows, cols, blocks, scales).unwrap()
    }

    /// Element `(e, r, c)` by the definition: the nibble of byte `c/2` of its block.
    fn element(w: &Mxfp4Experts, e: usize, r: usize, c: usize) -> f64 {
        let b = (e * w.rows + r) * (w.cols / 32) + c / 32;
        let byte = w.blocks[b * 16 + (c % 32) / 2];
        let code = if c.is_multiple_of(2) {
            byte & 0x0f
        } else {
            byte >> 4
        };
        FP4_VALUES[code as usize] as f64 * 2f64.powi(w.scales[b] as i32 - 127)
    }

    #[test]
    fn dequantize_and_rows_follow_the_definition() {
        let mut rng = Lcg::new(5);
        let w = random(3, 5, 64, &mut rng);
        let d = w.dequantize();
        let mut row = vec![0f64; 64];
        for e in 0..3 {
            for r in 0..5 {
                w.expert(e).dequant_row(r, &mut row);
                for c in 0..64 {
                    let want = element(&w, e, r, c);
                    assert_eq!(d[(e * 5 + r) * 64 + c] as f64, want, "({e}, {r}, {c})");
                    assert_eq!(row[c], want);
                }
                let x: Vec<f64> = rand_vec(&mut rng, 64, 1.0);
                let dot = w.expert(e).row_dot(r, &x);
                let want: f64 = (0..64).map(|c| x[c] * element(&w, e, r, c)).sum();
                assert!((dot - want).abs() < 1e-12, "row_dot {dot} vs {want}");
            }
        }
        assert!(Mxfp4Experts::new(1, 1, 48, vec![0; 24], vec![0; 1]).is_err());
        assert!(Mxfp4Experts::new(1, 2, 32, vec![0; 16], vec![0; 2]).is_err());
    }

    #[test]
    fn permuted_rows_are_the_rows_of_the_permutation() {
        let mut rng = Lcg::new(6);
        let w = random(2, 4, 64, &mut rng);
        let perm = [0, 2, 1, 3];
        let p = w.permute_rows(&perm);
        for e in 0..2 {
            for (j, &r) in perm.iter().enumerate() {
                for c in 0..64 {
                    assert_eq!(element(&p, e, j, c), element(&w, e, r, c));
                }
            }
        }
    }

    #[test]
    fn grouped_products_match_the_definition_with_an_empty_expert() {
        let mut rng = Lcg::new(7);
        let (e, n, k) = (4, 6, 64);
        let w = random(e, n, k, &mut rng);
        // expert 2 gets no rows; expert 3 one row (the dequantizing GEMV path)
        let offsets = [0usize, 3, 8, 8, 9];
        let m = 9;
        let x: Vec<f32> = rand_vec(&mut rng, m * k, 1.0);
        let dy: Vec<f32> = rand_vec(&mut rng, m * n, 1.0);
        let (mut y, mut dx) = (vec![f32::NAN; m * n], vec![f32::NAN; m * k]);
        grouped_dequant_matmul(&mut y, &x, &w, &offsets);
        grouped_dequant_matmul_t(&mut dx, &dy, &w, &offsets);
        let (mut want_y, mut want_dx) = (vec![0f64; m * n], vec![0f64; m * k]);
        for g in 0..e {
            for r in offsets[g]..offsets[g + 1] {
                for j in 0..n {
                    want_y[r * n + j] = (0..k)
                        .map(|c| x[r * k + c] as f64 * element(&w, g, j, c))
                        .sum();
                }
                for c in 0..k {
                    want_dx[r * k + c] = (0..n)
                        .map(|j| dy[r * n + j] as f64 * element(&w, g, j, c))
                        .sum();
                }
            }
        }
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        assert_close("y", &f64s(&y), &want_y, 1e-4, 1e-5);
        assert_close("dx", &f64s(&dx), &want_dx, 1e-4, 1e-5);
    }
}
