//! Tests of the flash-style attention kernels against an independent naive reference that
//! materialises the `[sq, sk]` score matrix per sequence and head, and against f64 finite
//! differences.

use super::*;
use crate::testing::{check_grad, rand_vec, Lcg};

/// Prefix sums of `lens`, starting at 0.
fn cu(lens: &[usize]) -> Vec<usize> {
    let mut c = vec![0];
    for &n in lens {
        c.push(c[c.len() - 1] + n);
    }
    c
}

fn params(h: usize, kv: usize, d: usize, causal: bool) -> AttnParams {
    AttnParams {
        num_heads: h,
        num_kv_heads: kv,
        head_dim: d,
        causal,
        window: None,
        scale: 1.0 / (d as f64).sqrt(),
        softcap: None,
    }
}

/// Mask written out from the definitions (bottom-right causal, Mistral window).
fn naive_visible(i: usize, j: usize, sq: usize, sk: usize, p: &AttnParams) -> bool {
    let diag = i as i64 + sk as i64 - sq as i64;
    let causal_ok = !p.causal || (j as i64) <= diag;
    let window_ok = match p.window {
        Some(w) => diag - (j as i64) < w as i64,
        None => true,
    };
    causal_ok && window_ok
}

/// Per (sequence, head): softcapped, masked scores `c: [sq][sk]` (None where masked) and the
/// probabilities `P: [sq][sk]` (a row with no visible key is all zero), plus lse per row.
#[allow(clippy::type_complexity)]
fn naive_probs(
    q: &[f64],
    k: &[f64],
    (q0, sq, k0, sk): (usize, usize, usize, usize),
    h: usize,
    p: &AttnParams,
) -> (Vec<Vec<Option<f64>>>, Vec<Vec<f64>>, Vec<f64>) {
    let (hq, hk, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
    let g = h / (hq / hk);
    let mut c = vec![vec![None; sk]; sq];
    let mut pr = vec![vec![0.0; sk]; sq];
    let mut lse = vec![f64::NEG_INFINITY; sq];
    for i in 0..sq {
        for j in 0..sk {
            let mut s = 0.0;
            for e in 0..d {
                s += q[((q0 + i) * hq + h) * d + e] * k[((k0 + j) * hk + g) * d + e];
            }
            s *= p.scale;
            if let Some(cap) = p.softcap {
                s = cap * (s / cap).tanh();
            }
            if naive_visible(i, j, sq, sk, p) {
                c[i][j] = Some(s);
            }
        }
        let m = c[i]
            .iter()
            .flatten()
            .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        if m == f64::NEG_INFINITY {
            continue;
        }
        let z: f64 = c[i].iter().flatten().map(|&s| (s - m).exp()).sum();
        for j in 0..sk {
            if let Some(s) = c[i][j] {
                pr[i][j] = (s - m).exp() / z;
            }
        }
        lse[i] = m + z.ln();
    }
    (c, pr, lse)
}

/// softmax(mask(softcap(scale · QKᵀ))) V per sequence and head: `(out, lse [H, total_q])`.
fn naive_forward(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    cu_q: &[usize],
    cu_k: &[usize],
    p: &AttnParams,
) -> (Vec<f64>, Vec<f64>) {
    let (hq, hk, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
    let total_q = cu_q[cu_q.len() - 1];
    let mut out = vec![0.0; q.len()];
    let mut lse = vec![0.0; total_q * hq];
    for b in 0..cu_q.len() - 1 {
        let (q0, k0) = (cu_q[b], cu_k[b]);
        let (sq, sk) = (cu_q[b + 1] - q0, cu_k[b + 1] - k0);
        for h in 0..hq {
            let g = h / (hq / hk);
            let (_, pr, l) = naive_probs(q, k, (q0, sq, k0, sk), h, p);
            for i in 0..sq {
                lse[h * total_q + q0 + i] = l[i];
                for j in 0..sk {
                    for e in 0..d {
                        out[((q0 + i) * hq + h) * d + e] +=
                            pr[i][j] * v[((k0 + j) * hk + g) * d + e];
                    }
                }
            }
        }
    }
    (out, lse)
}

/// Backward of [`naive_forward`] by the plain softmax rule `dS = P ⊙ (dP − rowsum(P ⊙ dP))`.
fn naive_backward(
    dout: &[f64],
    q: &[f64],
    k: &[f64],
    v: &[f64],
    cu_q: &[usize],
    cu_k: &[usize],
    p: &AttnParams,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (hq, hk, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    for b in 0..cu_q.len() - 1 {
        let (q0, k0) = (cu_q[b], cu_k[b]);
        let (sq, sk) = (cu_q[b + 1] - q0, cu_k[b + 1] - k0);
        for h in 0..hq {
            let g = h / (hq / hk);
            let (c, pr, _) = naive_probs(q, k, (q0, sq, k0, sk), h, p);
            let qi = |i: usize, e: usize| ((q0 + i) * hq + h) * d + e;
            let kj = |j: usize, e: usize| ((k0 + j) * hk + g) * d + e;
            for i in 0..sq {
                let dp: Vec<f64> = (0..sk)
                    .map(|j| (0..d).map(|e| dout[qi(i, e)] * v[kj(j, e)]).sum())
                    .collect();
                let pdp: f64 = (0..sk).map(|j| pr[i][j] * dp[j]).sum();
                for j in 0..sk {
                    let Some(cv) = c[i][j] else { continue };
                    let mut ds = pr[i][j] * (dp[j] - pdp);
                    if let Some(cap) = p.softcap {
                        ds *= 1.0 - (cv / cap).powi(2);
                    }
                    for e in 0..d {
                        dv[kj(j, e)] += pr[i][j] * dout[qi(i, e)];
                        dq[qi(i, e)] += p.scale * ds * k[kj(j, e)];
                        dk[kj(j, e)] += p.scale * ds * q[qi(i, e)];
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

/// Random `(q, k, v)` for the given packed lengths.
fn inputs(rng: &mut Lcg, tq: usize, tk: usize, p: &AttnParams) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let q = rand_vec(rng, tq * p.num_heads * p.head_dim, 1.5);
    let k = rand_vec(rng, tk * p.num_kv_heads * p.head_dim, 1.5);
    let v = rand_vec(rng, tk * p.num_kv_heads * p.head_dim, 1.0);
    (q, k, v)
}

fn flash<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    cu_q: &[usize],
    cu_k: &[usize],
    p: &AttnParams,
) -> (Vec<T>, Vec<T>) {
    let mut out = vec![T::of(f64::NAN); q.len()];
    let mut lse = vec![T::of(f64::NAN); q.len() / p.head_dim];
    attention_forward(q, k, v, cu_q, cu_k, p, &mut out, &mut lse);
    (out, lse)
}

/// Max abs difference; -inf == -inf counts as 0, any NaN as infinite.
fn max_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            if x == y {
                0.0
            } else if (x - y).is_nan() {
                f64::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f64::max)
}

fn to32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Checks the forward (f64 and f32) against the naive reference on packed lengths.
fn check_forward(seed: u64, lens_q: &[usize], lens_k: &[usize], p: &AttnParams) {
    let (cu_q, cu_k) = (cu(lens_q), cu(lens_k));
    let mut rng = Lcg::new(seed);
    let (q, k, v) = inputs(&mut rng, cu_q[lens_q.len()], cu_k[lens_k.len()], p);
    let (want, want_lse) = naive_forward(&q, &k, &v, &cu_q, &cu_k, p);
    let (got, lse) = flash(&q, &k, &v, &cu_q, &cu_k, p);
    assert!(
        max_err(&got, &want) <= 1e-10,
        "f64 out err {} ({p:?})",
        max_err(&got, &want)
    );
    assert!(
        max_err(&lse, &want_lse) <= 1e-10,
        "f64 lse err {}",
        max_err(&lse, &want_lse)
    );
    let (got32, lse32) = flash(&to32(&q), &to32(&k), &to32(&v), &cu_q, &cu_k, p);
    let (e, el) = (
        max_err(&to64(&got32), &want),
        max_err(&to64(&lse32), &want_lse),
    );
    assert!(
        e <= 1e-5 && el <= 1e-5,
        "f32 out err {e}, lse err {el} ({p:?})"
    );
}

/// Checks the backward (f64 and f32) against the naive backward on packed lengths.
fn check_backward(seed: u64, lens_q: &[usize], lens_k: &[usize], p: &AttnParams) {
    let (cu_q, cu_k) = (cu(lens_q), cu(lens_k));
    let mut rng = Lcg::new(seed);
    let (q, k, v) = inputs(&mut rng, cu_q[lens_q.len()], cu_k[lens_k.len()], p);
    let dout: Vec<f64> = rand_vec(&mut rng, q.len(), 1.0);
    let want = naive_backward(&dout, &q, &k, &v, &cu_q, &cu_k, p);
    let (out, lse) = flash(&q, &k, &v, &cu_q, &cu_k, p);
    let (mut dq, mut dk, mut dv) = (
        vec![f64::NAN; q.len()],
        vec![f64::NAN; k.len()],
        vec![f64::NAN; v.len()],
    );
    attention_backward(
        &dout, &q, &k, &v, &out, &lse, &cu_q, &cu_k, p, &mut dq, &mut dk, &mut dv,
    );
    for (name, g, w) in [
        ("dq", &dq, &want.0),
        ("dk", &dk, &want.1),
        ("dv", &dv, &want.2),
    ] {
        assert!(
            max_err(g, w) <= 1e-10,
            "f64 {name} err {} ({p:?})",
            max_err(g, w)
        );
    }
    let (q32, k32, v32, do32) = (to32(&q), to32(&k), to32(&v), to32(&dout));
    let (out32, lse32) = flash(&q32, &k32, &v32, &cu_q, &cu_k, p);
    let (mut dq, mut dk, mut dv) = (
        vec![0f32; q.len()],
        vec![0f32; k.len()],
        vec![0f32; v.len()],
    );
    attention_backward(
        &do32, &q32, &k32, &v32, &out32, &lse32, &cu_q, &cu_k, p, &mut dq, &mut dk, &mut dv,
    );
    for (name, g, w) in [
        ("dq", &dq, &want.0),
        ("dk", &dk, &want.1),
        ("dv", &dv, &want.2),
    ] {
        let e = max_err(&to64(g), w);
        assert!(e <= 1e-4, "f32 {name} err {e} ({p:?})");
    }
}

#[test]
fn forward_matches_naive_gqa_causal_and_not() {
    for (h, kv) in [(3, 1), (9, 3)] {
        for causal in [false, true] {
            check_forward(1, &[37], &[37], &params(h, kv, 16, causal));
        }
    }
}

#[test]
fn forward_varlen_batch_matches_naive_per_sequence() {
    let lens = [5, 37, 1, 20];
    let cu_l = cu(&lens);
    for causal in [false, true] {
        let p = params(3, 1, 16, causal);
        let mut rng = Lcg::new(2);
        let (q, k, v) = inputs(&mut rng, cu_l[4], cu_l[4], &p);
        let (got, lse) = flash(&q, &k, &v, &cu_l, &cu_l, &p);
        let total = cu_l[4];
        // The naive reference sees one sequence at a time, sliced out of the packed batch.
        for (b, &n) in lens.iter().enumerate() {
            let rows = |x: &[f64], w: usize| x[cu_l[b] * w..(cu_l[b] + n) * w].to_vec();
            let (wq, wk) = (3 * 16, 16);
            let (want, want_lse) = naive_forward(
                &rows(&q, wq),
                &rows(&k, wk),
                &rows(&v, wk),
                &[0, n],
                &[0, n],
                &p,
            );
            assert!(max_err(&rows(&got, wq), &want) <= 1e-10, "seq {b} out");
            for h in 0..3 {
                let l = &lse[h * total + cu_l[b]..][..n];
                assert!(
                    max_err(l, &want_lse[h * n..][..n]) <= 1e-10,
                    "seq {b} lse head {h}"
                );
            }
        }
        check_forward(3, &lens, &lens, &p);
    }
}

#[test]
fn forward_sliding_window() {
    let mut p = params(3, 1, 16, true);
    p.window = Some(7);
    check_forward(4, &[37], &[37], &p);
    check_forward(5, &[5, 37, 1, 20], &[5, 37, 1, 20], &p);
    // Window larger than a tile, over several tiles, so whole key tiles are skipped.
    p.window = Some(70);
    check_forward(6, &[150], &[150], &p);
    // Window without causal: only the left bound applies.
    p.causal = false;
    p.window = Some(7);
    check_forward(7, &[37, 20], &[37, 20], &p);
}

#[test]
fn forward_seqlen_q_differs_from_k_bottom_right() {
    let p = params(3, 1, 16, true);
    check_forward(8, &[3], &[20], &p);
    // Mixed batch; the second sequence has more queries than keys, so its first rows see
    // no key at all.
    check_forward(9, &[3, 20, 7], &[20, 3, 7], &p);
    let mut pw = p;
    pw.window = Some(4);
    check_forward(10, &[3, 20, 7], &[20, 3, 7], &pw);
}

#[test]
fn forward_rows_without_keys_are_zero_with_neg_inf_lse() {
    let p = params(3, 1, 16, true);
    let (cu_q, cu_k) = (cu(&[20, 4]), cu(&[3, 0]));
    let mut rng = Lcg::new(11);
    let (q, k, v) = inputs(&mut rng, 24, 3, &p);
    let (out, lse) = flash(&q, &k, &v, &cu_q, &cu_k, &p);
    // Sequence 0: query i sees keys j <= i - 17, so rows 0..17 see nothing; sequence 1 has
    // no keys at all.
    for row in (0..17).chain(20..24) {
        assert!(
            out[row * 48..(row + 1) * 48].iter().all(|&x| x == 0.0),
            "row {row} out"
        );
        assert!(
            (0..3).all(|h| lse[h * 24 + row] == f64::NEG_INFINITY),
            "row {row} lse"
        );
    }
    assert!(out[17 * 48..20 * 48]
        .iter()
        .all(|&x| x.is_finite() && x != 0.0));
    let dout: Vec<f64> = rand_vec(&mut rng, out.len(), 1.0);
    let (mut dq, mut dk, mut dv) = (
        vec![f64::NAN; q.len()],
        vec![f64::NAN; k.len()],
        vec![f64::NAN; v.len()],
    );
    attention_backward(
        &dout, &q, &k, &v, &out, &lse, &cu_q, &cu_k, &p, &mut dq, &mut dk, &mut dv,
    );
    assert!(
        dq.iter().chain(&dk).chain(&dv).all(|x| x.is_finite()),
        "NaN in grads"
    );
    assert!(
        dq[..17 * 48].iter().all(|&x| x == 0.0),
        "dq of rows without keys"
    );
    let want = naive_backward(&dout, &q, &k, &v, &cu_q, &cu_k, &p);
    assert!(
        max_err(&dq, &want.0) <= 1e-10
            && max_err(&dk, &want.1) <= 1e-10
            && max_err(&dv, &want.2) <= 1e-10
    );
}

#[test]
fn forward_softcap() {
    let mut p = params(3, 1, 16, true);
    p.scale = 1.0; // large scores, so the cap actually bends them
    p.softcap = Some(2.5);
    check_forward(12, &[37], &[37], &p);
    p.causal = false;
    check_forward(13, &[5, 37, 1, 20], &[5, 37, 1, 20], &p);
}

#[test]
fn forward_multiple_tiles_online_rescaling() {
    for causal in [false, true] {
        check_forward(14, &[150], &[150], &params(9, 3, 16, causal));
        check_forward(15, &[150, 3], &[200, 130], &params(3, 1, 16, causal));
    }
}

/// Runs the f64 gradient check of loss = sum(out ⊙ W) on q, k and v.
fn grad_check(seed: u64, lens_q: &[usize], lens_k: &[usize], p: &AttnParams) {
    let (cu_q, cu_k) = (cu(lens_q), cu(lens_k));
    let mut rng = Lcg::new(seed);
    let (q, k, v) = inputs(&mut rng, cu_q[lens_q.len()], cu_k[lens_k.len()], p);
    let w: Vec<f64> = rand_vec(&mut rng, q.len(), 1.0);
    let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
        let (out, _) = flash(q, k, v, &cu_q, &cu_k, p);
        out.iter().zip(&w).map(|(a, b)| a * b).sum()
    };
    let (out, lse) = flash(&q, &k, &v, &cu_q, &cu_k, p);
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    attention_backward(
        &w, &q, &k, &v, &out, &lse, &cu_q, &cu_k, p, &mut dq, &mut dk, &mut dv,
    );
    check_grad("dq", &q, &dq, |x| loss(x, &k, &v));
    check_grad("dk", &k, &dk, |x| loss(&q, x, &v));
    check_grad("dv", &v, &dv, |x| loss(&q, &k, x));
}

#[test]
fn grad_check_seq37_gqa_causal() {
    grad_check(16, &[37], &[37], &params(3, 1, 16, true));
}

#[test]
fn grad_check_varlen_window_softcap() {
    let mut p = params(4, 2, 8, true);
    p.window = Some(5);
    p.softcap = Some(1.5);
    p.scale = 0.8;
    grad_check(17, &[6, 11, 1], &[9, 11, 2], &p);
}

#[test]
fn backward_matches_naive_backward() {
    check_backward(18, &[37], &[37], &params(3, 1, 16, true));
    check_backward(19, &[150, 5, 70], &[150, 5, 90], &params(9, 3, 16, true));
    check_backward(20, &[150, 1, 40], &[130, 1, 40], &params(6, 2, 16, false));
    let mut p = params(6, 3, 16, true);
    p.window = Some(70);
    p.softcap = Some(3.0);
    p.scale = 0.5;
    check_backward(21, &[150, 20, 3], &[150, 3, 20], &p);
}

#[test]
fn per_seq_key_buffers_give_the_packed_forward_bitwise() {
    // decode (1 query per sequence over a long cache) and chunked prefill (several queries),
    // GQA, a window and a soft-cap: each sequence's keys in its own buffer must give exactly
    // the bits of the packed forward
    let mut rng = Lcg::new(17);
    let mut p = params(4, 2, 8, true);
    for (lens_q, lens_k, window, softcap) in [
        (vec![1, 1, 1], vec![5, 70, 33], None, None),
        (vec![3, 1, 9], vec![3, 80, 40], Some(16), Some(20.0)),
    ] {
        p.window = window;
        p.softcap = softcap;
        let (cq, ck) = (cu(&lens_q), cu(&lens_k));
        let (tq, tk) = (cq[cq.len() - 1], ck[ck.len() - 1]);
        let (q, k, v) = inputs(&mut rng, tq, tk, &p);
        let (q, k, v) = (to32(&q), to32(&k), to32(&v));
        let row = p.num_kv_heads * p.head_dim;
        let mut out = vec![0f32; q.len()];
        let mut lse = vec![0f32; tq * p.num_heads];
        attention_forward(&q, &k, &v, &cq, &ck, &p, &mut out, &mut lse);
        // each sequence's rows copied into a buffer of its own
        let own = |x: &[f32]| -> Vec<Vec<f32>> {
            (0..lens_k.len())
                .map(|b| x[ck[b] * row..ck[b + 1] * row].to_vec())
                .collect()
        };
        let (ks, vs) = (own(&k), own(&v));
        let kr: Vec<&[f32]> = ks.iter().map(|x| x.as_slice()).collect();
        let vr: Vec<&[f32]> = vs.iter().map(|x| x.as_slice()).collect();
        let mut out2 = vec![0f32; q.len()];
        let mut lse2 = vec![0f32; lse.len()];
        attention_forward_per_seq(&q, &kr, &vr, &cq, &p, &mut out2, &mut lse2);
        let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&out2), "{lens_q:?} {lens_k:?}");
        assert_eq!(bits(&lse), bits(&lse2));
    }
}
