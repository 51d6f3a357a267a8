//! Attention forward, FlashAttention-2 style: per query tile, walk the visible key tiles
//! with an online softmax (running max `m`, running sum `l`, rescaled accumulator), and
//! save `lse = m + ln l` for the backward. Extra memory: one `[BQ, BK]` score tile and
//! `m`, `l` per task.

use rayon::prelude::*;

use super::{
    head_view, head_view_mut, score_tile, split_rows, tiles, AttnParams, KeysT, BK, BQ, MIN_ROWS_T,
};
use crate::cpu::gemm::MatRef;
use crate::cpu::simd::{exp_shift_sum, max_of, tile_gemm};
use crate::Real;

/// Flash-style attention forward over packed varlen sequences: writes `out: [total_q,
/// num_heads, head_dim]` and `lse: [num_heads, total_q]` (see the module doc for layouts).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    p: &AttnParams,
    out: &mut [T],
    lse: &mut [T],
) {
    let (h_kv, d) = (p.num_kv_heads, p.head_dim);
    let total_k = k.len() / (h_kv * d).max(1);
    assert!(
        k.len() == total_k * h_kv * d && v.len() == k.len(),
        "attention: k/v length"
    );
    // sequence b's keys: rows cu_k[b].. of the packed k and v
    let keys = |b: usize| (k, v, cu_seqlens_k[b]);
    forward_over(q, keys, cu_seqlens_q, cu_seqlens_k, total_k, p, out, lse);
}

/// [`attention_forward`] with each sequence's keys and values in a buffer of its own
/// (`k_seqs[b], v_seqs[b]: [len_b, num_kv_heads, head_dim]`), as a KV cache holds them: a
/// decode step reads the cache where it is instead of packing it first. Same tiles, same
/// order of operations: bitwise the packed forward's output.
pub fn attention_forward_per_seq<T: Real>(
    q: &[T],
    k_seqs: &[&[T]],
    v_seqs: &[&[T]],
    cu_seqlens_q: &[usize],
    p: &AttnParams,
    out: &mut [T],
    lse: &mut [T],
) {
    let row = (p.num_kv_heads * p.head_dim).max(1);
    assert!(
        k_seqs.len() == v_seqs.len() && k_seqs.len() + 1 == cu_seqlens_q.len(),
        "attention: one k and v buffer per sequence"
    );
    let mut cu_k = vec![0];
    for (kb, vb) in k_seqs.iter().zip(v_seqs) {
        assert!(
            kb.len() % row == 0 && vb.len() == kb.len(),
            "attention: k/v length"
        );
        cu_k.push(cu_k[cu_k.len() - 1] + kb.len() / row);
    }
    let total_k = cu_k[cu_k.len() - 1];
    let keys = |b: usize| (k_seqs[b], v_seqs[b], 0);
    forward_over(q, keys, cu_seqlens_q, &cu_k, total_k, p, out, lse);
}

/// The forward, with `keys(b)` = (k, v, first row of sequence `b` in them).
#[allow(clippy::too_many_arguments)]
fn forward_over<'a, T: Real>(
    q: &[T],
    keys: impl Fn(usize) -> (&'a [T], &'a [T], usize) + Sync,
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    total_k: usize,
    p: &AttnParams,
    out: &mut [T],
    lse: &mut [T],
) {
    let (h_q, d) = (p.num_heads, p.head_dim);
    let total_q = q.len() / (h_q * d).max(1);
    assert!(
        q.len() == total_q * h_q * d && out.len() == q.len(),
        "attention: q/out length"
    );
    assert!(lse.len() == total_q * h_q, "attention: lse length");
    p.check(cu_seqlens_q, cu_seqlens_k, total_q, total_k);

    // One task per (sequence, query tile), all heads: it owns rows of `out` and returns its
    // lse block `[num_heads, rows]`, scattered below (lse is head-major, rows are not).
    let qt = tiles(cu_seqlens_q, BQ);
    // tiles of MIN_ROWS_T queries or more read the keys transposed (decode steps do not)
    let kt = qt.iter().any(|t| t.len >= MIN_ROWS_T).then(|| {
        KeysT::new(
            |b| {
                let (k, _, k0) = keys(b);
                (k, k0)
            },
            cu_seqlens_k,
            p.num_kv_heads,
            d,
        )
    });
    let chunks = split_rows(out, h_q * d, &qt);
    let lse_blocks: Vec<Vec<T>> = chunks
        .into_par_iter()
        .zip(qt.par_iter())
        .map(|(o, t)| {
            let (k, v, k0) = keys(t.seq);
            let q0 = cu_seqlens_q[t.seq];
            let sq = cu_seqlens_q[t.seq + 1] - q0;
            let sk = cu_seqlens_k[t.seq + 1] - cu_seqlens_k[t.seq];
            let mut lse_t = vec![T::zero(); h_q * t.len];
            let mut s = vec![T::zero(); BQ * BK];
            let (mut m, mut l) = (vec![T::zero(); t.len], vec![T::zero(); t.len]);
            let kt = kt.as_ref().filter(|_| t.len >= MIN_ROWS_T);
            for h in 0..h_q {
                tile_head(
                    (q, k, v),
                    kt.map(|kt| (kt, cu_seqlens_k[t.seq])),
                    p,
                    (q0 + t.r0, k0),
                    (t.r0, t.len, sq, sk),
                    h,
                    (&mut s, &mut m, &mut l),
                    o,
                    &mut lse_t[h * t.len..(h + 1) * t.len],
                );
            }
            lse_t
        })
        .collect();
    for (t, blk) in qt.iter().zip(&lse_blocks) {
        let row0 = cu_seqlens_q[t.seq] + t.r0;
        for h in 0..h_q {
            lse[h * total_q + row0..][..t.len].copy_from_slice(&blk[h * t.len..][..t.len]);
        }
    }
}

/// One query tile × one head: `o` is the task's `[rows, num_heads, head_dim]` block of
/// `out`; head `h`'s slice of it is the accumulator, normalised at the end. `kt`: the
/// transposed keys and the packed row of this sequence's first key, when the tile reads
/// them.
#[allow(clippy::too_many_arguments)]
fn tile_head<T: Real>(
    (q, k, v): (&[T], &[T], &[T]),
    kt: Option<(&KeysT<T>, usize)>,
    p: &AttnParams,
    (qrow, k0): (usize, usize),
    (i0, rows, sq, sk): (usize, usize, usize, usize),
    h: usize,
    (s, m, l): (&mut [T], &mut [T], &mut [T]),
    o: &mut [T],
    lse_h: &mut [T],
) {
    let (h_q, h_kv, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
    let g = h / p.group();
    let off = sk as isize - sq as isize;
    // qt: [rows, d], acc: [rows, d] (strided views into q and this head of `o`)
    let qt = head_view(q, qrow, rows, h_q, h, d);
    m.fill(T::neg_infinity());
    l.fill(T::zero());
    {
        let acc = head_view_mut(o, 0, rows, h_q, h, d);
        for r in 0..rows {
            acc.data[r * acc.rs..][..d].fill(T::zero());
        }
    }
    let (lo, hi) = p.key_range(i0, i0 + rows, sk, off);
    for j0 in (lo..hi).step_by(BK) {
        let cols = BK.min(hi - j0);
        let s = &mut s[..rows * cols];
        // s: [rows, cols] masked scores of this tile
        // kᵀ [d, cols]: from the transposed copy, or a strided view of the keys
        let ktile = match kt {
            Some((kt, c0)) => kt.view(c0 + j0, cols, g),
            None => head_view(k, k0 + j0, cols, h_kv, g, d).t(),
        };
        score_tile(s, qt, ktile, p, i0, j0, off);
        let acc = head_view_mut(o, 0, rows, h_q, h, d);
        for (r, row) in s.chunks_mut(cols).enumerate() {
            let m_new = max_of(row, m[r]);
            if m_new == T::neg_infinity() {
                // Nothing visible in this row yet: p = 0, and acc, l stay 0.
                row.fill(T::zero());
                continue;
            }
            // alpha rescales what was accumulated under the old max (0 when m was -inf).
            let alpha = (m[r] - m_new).exp();
            let sum = exp_shift_sum(row, m_new);
            l[r] = l[r] * alpha + sum;
            m[r] = m_new;
            if alpha != T::one() {
                acc.data[r * acc.rs..][..d]
                    .iter_mut()
                    .for_each(|a| *a *= alpha);
            }
        }
        // acc [rows, d] += p [rows, cols] · v [cols, d]
        let pv = MatRef::new(s, rows, cols);
        tile_gemm(
            acc,
            pv,
            head_view(v, k0 + j0, cols, h_kv, g, d),
            true,
            T::one(),
        );
    }
    let acc = head_view_mut(o, 0, rows, h_q, h, d);
    for r in 0..rows {
        let row = &mut acc.data[r * acc.rs..][..d];
        if l[r] > T::zero() {
            let inv = T::one() / l[r];
            row.iter_mut().for_each(|a| *a *= inv);
            lse_h[r] = m[r] + l[r].ln();
        } else {
            // No visible key: out = 0 (acc never touched), lse = -inf.
            row.fill(T::zero());
            lse_h[r] = T::neg_infinity();
        }
    }
}
