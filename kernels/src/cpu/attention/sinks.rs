//! Attention sinks (GPT-OSS): one learned logit `sink_h` per head joins every row's softmax
//! denominator as a key whose value is zero. Applied to a finished attention row, so the
//! flash kernels stay unchanged; the CPU twin of `kernels/cuda/attn_sinks.cu`.
//!
//! Layouts as the attention kernels: `out`, `dout: [tokens, heads, d]`, `lse: [heads, tokens]`,
//! `sinks`, `dsink: [heads]`.
//!
//! ```text
//! fold:     lse' = logaddexp(lse, sink_h),  out' = out · exp(lse − lse')
//! backward: dsink_h = −Σ_rows exp(sink_h − lse'_row) · rowsum(dout ⊙ out')
//! ```
//!
//! The backward of q, k, v is the standard flash backward run with `out'` and `lse'`: its
//! probabilities `exp(S − lse')` are the true ones and `rowsum(dout ⊙ out')` already counts
//! the sink, whose value (and so `dP`) is zero.

use crate::Real;

/// Folds the sinks into finished rows: `lse` becomes `lse'` and `out` becomes `out'` in place.
/// A row that saw no key (`lse = −∞`, `out = 0`) gets `lse' = sink`, `out' = 0`.
pub fn fold_sinks<T: Real>(out: &mut [T], lse: &mut [T], sinks: &[T], d: usize) {
    let h = sinks.len();
    let tokens = lse.len() / h.max(1);
    assert_eq!(
        out.len(),
        tokens * h * d,
        "fold_sinks: out is not [tokens, heads, d]"
    );
    for (hh, &sink) in sinks.iter().enumerate() {
        for t in 0..tokens {
            let l = lse[hh * tokens + t];
            let m = if l > sink { l } else { sink };
            let new = m + ((l - m).exp() + (sink - m).exp()).ln();
            let f = (l - new).exp();
            lse[hh * tokens + t] = new;
            out[(t * h + hh) * d..][..d]
                .iter_mut()
                .for_each(|x| *x *= f);
        }
    }
}

/// `dsink_h = −Σ_t exp(sink_h − lse'[h, t]) · Σ_i dout[t, h, i]·out'[t, h, i]` (overwrites
/// `dsink`), from the folded `out'` and `lse'`.
pub fn sinks_backward<T: Real>(
    dout: &[T],
    out: &[T],
    lse: &[T],
    sinks: &[T],
    d: usize,
    dsink: &mut [T],
) {
    let h = sinks.len();
    let tokens = lse.len() / h.max(1);
    assert!(
        dout.len() == tokens * h * d && out.len() == dout.len() && dsink.len() == h,
        "sinks_backward: shapes"
    );
    for (hh, ds) in dsink.iter_mut().enumerate() {
        let mut acc = T::zero();
        for t in 0..tokens {
            let at = (t * h + hh) * d;
            let dd: T = dout[at..at + d]
                .iter()
                .zip(&out[at..at + d])
                .map(|(&a, &b)| a * b)
                .sum();
            acc -= (sinks[hh] - lse[hh * tokens + t]).exp() * dd;
        }
        *ds = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One head, one token, d = 2: the fold equals the softmax with the sink as an extra
    /// zero-valued key; a row without keys stays zero.
    #[test]
    fn fold_matches_the_softmax_with_an_extra_key() {
        // scores 0.3 and −1.2 over values (1, 2) and (3, −1)
        let (s1, s2, sink) = (0.3f64, -1.2f64, 0.7f64);
        let z = s1.exp() + s2.exp();
        let mut out = vec![
            (s1.exp() * 1.0 + s2.exp() * 3.0) / z,
            (s1.exp() * 2.0 - s2.exp()) / z,
        ];
        let mut lse = vec![z.ln()];
        fold_sinks(&mut out, &mut lse, &[sink], 2);
        let zs = z + sink.exp();
        assert!((lse[0] - zs.ln()).abs() < 1e-12);
        assert!((out[0] - (s1.exp() + 3.0 * s2.exp()) / zs).abs() < 1e-12);
        assert!((out[1] - (2.0 * s1.exp() - s2.exp()) / zs).abs() < 1e-12);
        let (mut o, mut l) = (vec![0.0f64; 2], vec![f64::NEG_INFINITY]);
        fold_sinks(&mut o, &mut l, &[sink], 2);
        assert_eq!((o, l), (vec![0.0, 0.0], vec![sink]));
    }

    /// dsink against a central difference of L = Σ dout ⊙ out'(sink).
    #[test]
    fn backward_matches_finite_differences() {
        let (tokens, h, d) = (3usize, 2usize, 2usize);
        let out0: Vec<f64> = (0..tokens * h * d)
            .map(|i| (i as f64 * 0.37).sin())
            .collect();
        let lse0: Vec<f64> = (0..h * tokens).map(|i| (i as f64 * 0.5).cos()).collect();
        let dout: Vec<f64> = (0..tokens * h * d)
            .map(|i| (i as f64 * 0.11).cos())
            .collect();
        let sinks = [0.2f64, -0.4];
        let loss = |s: &[f64]| {
            let (mut o, mut l) = (out0.clone(), lse0.clone());
            fold_sinks(&mut o, &mut l, s, d);
            o.iter().zip(&dout).map(|(a, b)| a * b).sum::<f64>()
        };
        let (mut o, mut l) = (out0.clone(), lse0.clone());
        fold_sinks(&mut o, &mut l, &sinks, d);
        let mut ds = vec![0.0; h];
        sinks_backward(&dout, &o, &l, &sinks, d, &mut ds);
        for hh in 0..h {
            let eps = 1e-6;
            let (mut p, mut m) = (sinks, sinks);
            p[hh] += eps;
            m[hh] -= eps;
            let fd = (loss(&p) - loss(&m)) / (2.0 * eps);
            assert!((ds[hh] - fd).abs() < 1e-7, "head {hh}: {} vs {fd}", ds[hh]);
        }
    }
}
