//! Attention backward, FlashAttention-2 style: the probabilities are recomputed tile by
//! tile from q, k and the saved lse (never stored), with
//! `D_i = rowsum(dO_i ⊙ O_i)`, `P = exp(S - lse)`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − D)`,
//! `dV += Pᵀ dO`, `dK += scale · dSᵀ Q`, `dQ += scale · dS K` (dS taken through the softcap).
//!
//! Deterministic and lock-free on CPU: pass 1 runs one task per key tile (it owns its rows
//! of dK and dV, for every kv head, summing over the query heads of each group); pass 2 runs
//! one task per query tile (it owns its rows of dQ). Pass 2 recomputes S and dP rather than
//! keeping per-task dQ partials, so extra memory stays O(seq) (a few tiles per task).

use rayon::prelude::*;

use super::{head_view, head_view_mut, score_tile, split_rows, tiles, AttnParams, KeysT, BK, BQ};
use crate::cpu::gemm::{MatMut, MatRef};
use crate::cpu::simd::{softmax_grad_row, tile_gemm};
use crate::Real;

/// Flash-style attention backward: overwrites `dq: [total_q, num_heads, head_dim]` and
/// `dk`, `dv: [total_k, num_kv_heads, head_dim]` from `dout`, the forward inputs, its `out`
/// and its `lse: [num_heads, total_q]`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dout: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    out: &[T],
    lse: &[T],
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    p: &AttnParams,
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
) {
    let (h_q, h_kv, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
    let total_q = q.len() / (h_q * d).max(1);
    let total_k = k.len() / (h_kv * d).max(1);
    assert!(q.len() == total_q * h_q * d, "attention: q length");
    assert!(
        out.len() == q.len() && dout.len() == q.len() && dq.len() == q.len(),
        "attention: out/dout/dq length"
    );
    assert!(
        k.len() == total_k * h_kv * d && v.len() == k.len(),
        "attention: k/v length"
    );
    assert!(
        dk.len() == k.len() && dv.len() == k.len(),
        "attention: dk/dv length"
    );
    assert!(lse.len() == total_q * h_q, "attention: lse length");
    p.check(cu_seqlens_q, cu_seqlens_k, total_q, total_k);

    // delta: [total_q, num_heads], D = rowsum(dO ⊙ O) per (row, head)
    let mut delta = vec![T::zero(); total_q * h_q];
    delta
        .par_chunks_mut(h_q.max(1))
        .enumerate()
        .for_each(|(row, dl)| {
            for (h, x) in dl.iter_mut().enumerate() {
                let at = (row * h_q + h) * d;
                *x = dout[at..at + d]
                    .iter()
                    .zip(&out[at..at + d])
                    .map(|(&a, &b)| a * b)
                    .sum();
            }
        });
    // kᵀ and vᵀ per kv head, the right operands of S = Q·Kᵀ and dP = dO·Vᵀ
    let kt = KeysT::new(|b| (k, cu_seqlens_k[b]), cu_seqlens_k, h_kv, d);
    let vt = KeysT::new(|b| (v, cu_seqlens_k[b]), cu_seqlens_k, h_kv, d);
    let ctx = Ctx {
        dout,
        q,
        k,
        kt: &kt,
        vt: &vt,
        lse,
        delta: &delta,
        cu_q: cu_seqlens_q,
        cu_k: cu_seqlens_k,
        p,
        total_q,
    };

    // Pass 1: dK, dV, one task per (sequence, key tile), all kv heads.
    let kt = tiles(cu_seqlens_k, BK);
    let dk_chunks = split_rows(dk, h_kv * d, &kt);
    let dv_chunks = split_rows(dv, h_kv * d, &kt);
    dk_chunks
        .into_par_iter()
        .zip(dv_chunks)
        .zip(kt.par_iter())
        .for_each(|((dk_t, dv_t), t)| {
            dk_t.fill(T::zero());
            dv_t.fill(T::zero());
            let mut bufs = (vec![T::zero(); BQ * BK], vec![T::zero(); BQ * BK]);
            for g in 0..h_kv {
                for h in g * p.group()..(g + 1) * p.group() {
                    ctx.key_tile_head(t.seq, t.r0, t.len, h, dk_t, dv_t, &mut bufs);
                }
            }
        });

    // Pass 2: dQ, one task per (sequence, query tile), all heads.
    let qt = tiles(cu_seqlens_q, BQ);
    let dq_chunks = split_rows(dq, h_q * d, &qt);
    dq_chunks
        .into_par_iter()
        .zip(qt.par_iter())
        .for_each(|(dq_t, t)| {
            dq_t.fill(T::zero());
            let mut bufs = (vec![T::zero(); BQ * BK], vec![T::zero(); BQ * BK]);
            for h in 0..h_q {
                ctx.query_tile_head(t.seq, t.r0, t.len, h, dq_t, &mut bufs);
            }
        });
}

/// The read-only inputs shared by every backward task.
struct Ctx<'a, T> {
    dout: &'a [T],
    q: &'a [T],
    k: &'a [T],
    kt: &'a KeysT<T>,
    vt: &'a KeysT<T>,
    lse: &'a [T],
    delta: &'a [T],
    cu_q: &'a [usize],
    cu_k: &'a [usize],
    p: &'a AttnParams,
    total_q: usize,
}

impl<T: Real> Ctx<'_, T> {
    /// Recomputes one `[rows, cols]` tile for head `h`: queries `i0..` against keys `j0..`
    /// of sequence `seq`. On return `s` holds `P` and `ds` holds `dS` (w.r.t. the
    /// pre-softcap scaled scores).
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        seq: usize,
        h: usize,
        (i0, rows): (usize, usize),
        (j0, cols): (usize, usize),
        s: &mut [T],
        ds: &mut [T],
    ) {
        let p = self.p;
        let (h_q, d) = (p.num_heads, p.head_dim);
        let g = h / p.group();
        let (q0, k0) = (self.cu_q[seq], self.cu_k[seq]);
        let sq = self.cu_q[seq + 1] - q0;
        let sk = self.cu_k[seq + 1] - k0;
        let off = sk as isize - sq as isize;
        // s: [rows, cols] masked (softcapped) scores
        score_tile(
            s,
            head_view(self.q, q0 + i0, rows, h_q, h, d),
            self.kt.view(k0 + j0, cols, g),
            p,
            i0,
            j0,
            off,
        );
        // ds: [rows, cols] = dP = dO [rows, d] · vᵀ [d, cols]
        let dot = head_view(self.dout, q0 + i0, rows, h_q, h, d);
        let vt = self.vt.view(k0 + j0, cols, g);
        tile_gemm(MatMut::new(ds, rows, cols), dot, vt, false, T::one());
        for r in 0..rows {
            let row = q0 + i0 + r;
            let lse = self.lse[h * self.total_q + row];
            let dl = self.delta[row * h_q + h];
            let (srow, dsrow) = (&mut s[r * cols..][..cols], &mut ds[r * cols..][..cols]);
            if lse == T::neg_infinity() {
                // a row that sees no key: P = 0 and dS = 0
                srow.fill(T::zero());
                dsrow.fill(T::zero());
                continue;
            }
            let Some(cap) = p.softcap else {
                softmax_grad_row(srow, dsrow, lse, dl);
                continue;
            };
            let ic = T::of(1.0 / cap);
            for (x, y) in srow.iter_mut().zip(dsrow.iter_mut()) {
                // P = exp(S - lse); masked entries (S = -inf) give P = 0, and then dS = 0
                // exactly (this also keeps tanh' of -inf out).
                let pr = (*x - lse).exp();
                *y = if pr == T::zero() {
                    T::zero()
                } else {
                    // d(cap·tanh(s/cap))/ds = 1 - tanh² = 1 - (capped / cap)²
                    pr * (*y - dl) * (T::one() - (*x * ic) * (*x * ic))
                };
                *x = pr;
            }
        }
    }

    /// Pass 1 for key rows `j0..j0+cols` of `seq` and query head `h`: adds its share to the
    /// task's `dk_t`, `dv_t: [cols, num_kv_heads, head_dim]` blocks.
    #[allow(clippy::too_many_arguments)]
    fn key_tile_head(
        &self,
        seq: usize,
        j0: usize,
        cols: usize,
        h: usize,
        dk_t: &mut [T],
        dv_t: &mut [T],
        (s, ds): &mut (Vec<T>, Vec<T>),
    ) {
        let p = self.p;
        let (h_q, h_kv, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
        let g = h / p.group();
        let q0 = self.cu_q[seq];
        let sq = self.cu_q[seq + 1] - q0;
        let sk = self.cu_k[seq + 1] - self.cu_k[seq];
        let (lo, hi) = p.query_range(j0, j0 + cols, sq, sk as isize - sq as isize);
        for i0 in (lo..hi).step_by(BQ) {
            let rows = BQ.min(hi - i0);
            let (s, ds) = (&mut s[..rows * cols], &mut ds[..rows * cols]);
            self.tile(seq, h, (i0, rows), (j0, cols), s, ds);
            // dV [cols, d] += Pᵀ [cols, rows] · dO [rows, d]
            let dot = head_view(self.dout, q0 + i0, rows, h_q, h, d);
            tile_gemm(
                head_view_mut(dv_t, 0, cols, h_kv, g, d),
                MatRef::new(s, rows, cols).t(),
                dot,
                true,
                T::one(),
            );
            // dK [cols, d] += scale · dSᵀ [cols, rows] · Q [rows, d]
            let qt = head_view(self.q, q0 + i0, rows, h_q, h, d);
            tile_gemm(
                head_view_mut(dk_t, 0, cols, h_kv, g, d),
                MatRef::new(ds, rows, cols).t(),
                qt,
                true,
                T::of(p.scale),
            );
        }
    }

    /// Pass 2 for query rows `i0..i0+rows` of `seq` and head `h`: writes head `h` of the
    /// task's `dq_t: [rows, num_heads, head_dim]` block.
    fn query_tile_head(
        &self,
        seq: usize,
        i0: usize,
        rows: usize,
        h: usize,
        dq_t: &mut [T],
        (s, ds): &mut (Vec<T>, Vec<T>),
    ) {
        let p = self.p;
        let (h_q, h_kv, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
        let g = h / p.group();
        let k0 = self.cu_k[seq];
        let sq = self.cu_q[seq + 1] - self.cu_q[seq];
        let sk = self.cu_k[seq + 1] - k0;
        let (lo, hi) = p.key_range(i0, i0 + rows, sk, sk as isize - sq as isize);
        for j0 in (lo..hi).step_by(BK) {
            let cols = BK.min(hi - j0);
            let (s, ds) = (&mut s[..rows * cols], &mut ds[..rows * cols]);
            self.tile(seq, h, (i0, rows), (j0, cols), s, ds);
            // dQ [rows, d] += scale · dS [rows, cols] · K [cols, d]
            let kt = head_view(self.k, k0 + j0, cols, h_kv, g, d);
            tile_gemm(
                head_view_mut(dq_t, 0, rows, h_q, h, d),
                MatRef::new(ds, rows, cols),
                kt,
                true,
                T::of(p.scale),
            );
        }
    }
}
