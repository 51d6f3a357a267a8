//! Flash-style attention on CPU over packed variable-length sequences (like
//! `flash_attn_varlen_func`): the CPU twin of the CUDA FlashAttention-2 kernel.
//!
//! Layouts (row-major, packed over the batch):
//! - `q`, `out`, `dout`, `dq`: `[total_q, num_heads, head_dim]`
//! - `k`, `v`, `dk`, `dv`: `[total_k, num_kv_heads, head_dim]`
//! - `lse`: `[num_heads, total_q]` (natural log of the softmax denominator, as flash-attn)
//! - `cu_seqlens_q`, `cu_seqlens_k`: `[batch + 1]` prefix sums starting at 0; sequence `b`
//!   owns query rows `cu_q[b]..cu_q[b+1]` and key rows `cu_k[b]..cu_k[b+1]`, and never
//!   attends across sequences.
//!
//! Masking, for query `i` and key `j` counted within their sequence, `off = sk - sq`:
//! - causal (bottom-right aligned, flash-attn >= 2.1): `j <= i + off`;
//! - sliding window `W` (Mistral / HF): `(i + off) - j < W`, i.e. the W keys ending at the
//!   diagonal. Without `causal` only this left bound applies (flash-attn `(W - 1, -1)`).
//!
//! Scores are `s = scale · q·k`, then `s = cap · tanh(s / cap)` with a softcap (Gemma 2),
//! then masked. A row that sees no key gets `out = 0` and `lse = -inf`.
//!
//! The kernels never build a `[seq, seq]` matrix: they walk `BQ x BK` tiles with an online
//! softmax (forward) and recompute probabilities from the saved `lse` (backward).

mod backward;
mod forward;
pub mod sinks;
#[cfg(test)]
mod tests;

pub use backward::attention_backward;
pub use forward::{attention_forward, attention_forward_per_seq};
pub use sinks::{fold_sinks, sinks_backward};

use crate::cpu::gemm::{MatMut, MatRef};
use crate::cpu::simd::{softcap_in_place, tile_gemm};
use crate::Real;

/// Query rows per tile (the `Br` of FlashAttention-2).
pub(crate) const BQ: usize = 64;
/// Key rows per tile (the `Bc` of FlashAttention-2).
pub(crate) const BK: usize = 64;

/// Shape and masking parameters of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnParams {
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (divides `num_heads`; query head h uses kv head h / group).
    pub num_kv_heads: usize,
    /// Size of each head.
    pub head_dim: usize,
    /// Causal mask, bottom-right aligned when seqlen_q != seqlen_k.
    pub causal: bool,
    /// Sliding window: a query sees at most this many keys ending at its diagonal.
    pub window: Option<usize>,
    /// Softmax scale applied to q·k (usually 1/sqrt(head_dim)).
    pub scale: f64,
    /// Logit softcap: s = cap·tanh(s/cap) before masking (Gemma 2).
    pub softcap: Option<f64>,
}

impl AttnParams {
    /// Query heads per kv head.
    fn group(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Whether query `i` may see key `j` (both within their sequence), `off = sk - sq`.
    #[inline(always)]
    fn visible(&self, i: usize, j: usize, off: isize) -> bool {
        let diag = i as isize + off;
        let j = j as isize;
        (!self.causal || j <= diag) && self.window.is_none_or(|w| diag - j < w as isize)
    }

    /// Keys `lo..hi` that any query in `i0..i1` may see (a superset: tiles still mask).
    fn key_range(&self, i0: usize, i1: usize, sk: usize, off: isize) -> (usize, usize) {
        let clamp = |x: isize| x.clamp(0, sk as isize) as usize;
        let hi = if self.causal {
            clamp(i1 as isize + off)
        } else {
            sk
        };
        let lo = match self.window {
            Some(w) => clamp(i0 as isize + off - w as isize + 1),
            None => 0,
        };
        (lo, hi.max(lo))
    }

    /// Queries `lo..hi` (of `sq`) that may see any key in `j0..j1` (a superset).
    fn query_range(&self, j0: usize, j1: usize, sq: usize, off: isize) -> (usize, usize) {
        let clamp = |x: isize| x.clamp(0, sq as isize) as usize;
        let lo = if self.causal {
            clamp(j0 as isize - off)
        } else {
            0
        };
        let hi = match self.window {
            Some(w) => clamp(j1 as isize - 1 - off + w as isize),
            None => sq,
        };
        (lo, hi.max(lo))
    }

    /// Panics on inconsistent shapes (a caller bug: the runtime validates user shapes).
    fn check(&self, cu_q: &[usize], cu_k: &[usize], total_q: usize, total_k: usize) {
        // checked_rem also rejects num_kv_heads == 0 (and keeps the 1.85 MSRV).
        assert!(
            self.num_heads.checked_rem(self.num_kv_heads) == Some(0),
            "attention: num_kv_heads must divide num_heads"
        );
        assert!(self.window != Some(0), "attention: window must be >= 1");
        assert!(
            self.softcap.is_none_or(|c| c > 0.0),
            "attention: softcap must be > 0"
        );
        assert!(
            cu_q.len() == cu_k.len() && !cu_q.is_empty(),
            "attention: cu_seqlens lengths"
        );
        assert!(
            cu_q[0] == 0 && cu_k[0] == 0,
            "attention: cu_seqlens must start at 0"
        );
        assert!(
            cu_q.windows(2).all(|w| w[0] <= w[1]),
            "attention: cu_seqlens_q not sorted"
        );
        assert!(
            cu_k.windows(2).all(|w| w[0] <= w[1]),
            "attention: cu_seqlens_k not sorted"
        );
        assert!(
            cu_q[cu_q.len() - 1] == total_q,
            "attention: cu_seqlens_q vs total_q"
        );
        assert!(
            cu_k[cu_k.len() - 1] == total_k,
            "attention: cu_seqlens_k vs total_k"
        );
    }
}

/// One tile of rows of one sequence: rows `start + r0 .. start + r0 + len` of the packed
/// tensor, i.e. rows `r0..r0 + len` within sequence `seq`.
#[derive(Clone, Copy, Debug)]
struct Tile {
    seq: usize,
    r0: usize,
    len: usize,
}

/// Cuts every sequence of `cu` into tiles of at most `size` rows, in packed-row order.
fn tiles(cu: &[usize], size: usize) -> Vec<Tile> {
    let mut out = Vec::new();
    for (seq, w) in cu.windows(2).enumerate() {
        let n = w[1] - w[0];
        out.extend((0..n).step_by(size).map(|r0| Tile {
            seq,
            r0,
            len: size.min(n - r0),
        }));
    }
    out
}

/// Splits `buf: [rows, row_len]` into the disjoint row blocks of `tiles` (which cover it in
/// order), so each tile can be written by its own rayon task.
fn split_rows<'a, T>(mut buf: &'a mut [T], row_len: usize, tiles: &[Tile]) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(tiles.len());
    for t in tiles {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(t.len * row_len);
        out.push(head);
        buf = tail;
    }
    out
}

/// A `[rows, head_dim]` view of head `h` of rows `row0..` of a `[_, heads, head_dim]` tensor.
fn head_view<T>(
    x: &[T],
    row0: usize,
    rows: usize,
    heads: usize,
    h: usize,
    d: usize,
) -> MatRef<'_, T> {
    let off = (row0 * heads + h) * d;
    let data = if rows == 0 { &x[..0] } else { &x[off..] };
    MatRef {
        data,
        rows,
        cols: d,
        rs: heads * d,
        cs: 1,
    }
}

/// Mutable twin of [`head_view`].
fn head_view_mut<T>(
    x: &mut [T],
    row0: usize,
    rows: usize,
    heads: usize,
    h: usize,
    d: usize,
) -> MatMut<'_, T> {
    let off = (row0 * heads + h) * d;
    let data = if rows == 0 {
        &mut x[..0]
    } else {
        &mut x[off..]
    };
    MatMut {
        data,
        rows,
        cols: d,
        rs: heads * d,
        cs: 1,
    }
}

/// Fills `s: [rows, cols]` with the scores of queries `qt: [rows, d]` (rows `i0..` of their
/// sequence) against keys `kt: [cols, d]` (keys `j0..`): `scale · q·kᵀ`, softcapped, and
/// `-inf` where masked.
/// Queries per tile from which a tile's score product reads a transposed copy of the keys
/// (see [`KeysT`]); smaller tiles (decode steps) read the keys where they are, so a decode
/// step never copies its cache.
pub(crate) const MIN_ROWS_T: usize = 16;

/// Keys (or values) transposed per kv head, `[num_kv_heads, head_dim, total_k]`: the right
/// operand of `q · kᵀ` with unit column stride, which the tile product wants. Built once per
/// call, O(total_k · kv width), against O(seq²) for the tiles that read it.
pub(crate) struct KeysT<T> {
    data: Vec<T>,
    total: usize,
    d: usize,
}

impl<T: Real> KeysT<T> {
    /// The transpose of the rows of sequence after sequence: `rows(b) = (buffer, first row)`
    /// holds sequence `b`'s rows `cu[b]..cu[b + 1]`, each `[heads, d]`.
    pub(crate) fn new<'a>(
        rows: impl Fn(usize) -> (&'a [T], usize),
        cu: &[usize],
        heads: usize,
        d: usize,
    ) -> Self {
        let total = cu[cu.len() - 1];
        let mut data = vec![T::zero(); heads * d * total];
        for b in 0..cu.len() - 1 {
            let (x, r0) = rows(b);
            for t in 0..cu[b + 1] - cu[b] {
                let src = &x[(r0 + t) * heads * d..][..heads * d];
                for (c, &val) in src.iter().enumerate() {
                    data[c * total + cu[b] + t] = val;
                }
            }
        }
        KeysT { data, total, d }
    }

    /// `[d, cols]`: rows `row0..row0 + cols` (packed numbering) of kv head `g`, transposed.
    pub(crate) fn view(&self, row0: usize, cols: usize, g: usize) -> MatRef<'_, T> {
        let off = g * self.d * self.total + row0;
        MatRef {
            data: if cols == 0 {
                &self.data[..0]
            } else {
                &self.data[off..]
            },
            rows: self.d,
            cols,
            rs: self.total,
            cs: 1,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn score_tile<T: Real>(
    s: &mut [T],
    qt: MatRef<'_, T>,
    kt: MatRef<'_, T>,
    p: &AttnParams,
    i0: usize,
    j0: usize,
    off: isize,
) {
    let (rows, cols) = (qt.rows, kt.cols);
    // s: [rows, cols] = scale · q [rows, d] · kᵀ [d, cols]
    tile_gemm(MatMut::new(s, rows, cols), qt, kt, false, T::of(p.scale));
    if let Some(cap) = p.softcap {
        softcap_in_place(s, cap);
    }
    // The visible set is a band in j - i, so the two extreme corners decide whether the
    // tile is fully visible; only tiles straddling the band edge need per-element tests.
    let all_visible = p.visible(i0, j0 + cols - 1, off) && p.visible(i0 + rows - 1, j0, off);
    if !all_visible {
        for (r, row) in s.chunks_mut(cols).enumerate() {
            for (c, x) in row.iter_mut().enumerate() {
                if !p.visible(i0 + r, j0 + c, off) {
                    *x = T::neg_infinity();
                }
            }
        }
    }
}
