//! Token embedding lookup and its backward, a scatter-add into the table gradient. The
//! backward is split over column blocks of `dim` (each task owns those columns of every
//! table row) so repeated ids accumulate in token order on any thread count:
//! deterministic, with no atomics and no per-thread copies of the table.

use rayon::prelude::*;

use crate::Real;

/// Columns per backward task.
const BLOCK: usize = 64;

/// Panics naming the first id outside `[0, vocab)` (a caller bug: the runtime checks ids).
fn check_ids(ids: &[i64], vocab: usize) {
    if let Some((i, &id)) = ids
        .iter()
        .enumerate()
        .find(|&(_, &id)| id < 0 || id as u64 >= vocab as u64)
    {
        panic!("embedding: id {id} at position {i} is outside [0, {vocab})");
    }
}

/// Embedding forward: `out[i, :] = table[ids[i], :]`; `table: [vocab, dim]`,
/// `out: [n, dim]` with `n = ids.len()`.
pub fn embedding_forward<T: Real>(
    ids: &[i64],
    table: &[T],
    vocab: usize,
    dim: usize,
    out: &mut [T],
) {
    assert!(table.len() == vocab * dim, "embedding: table length");
    assert!(out.len() == ids.len() * dim, "embedding: out length");
    check_ids(ids, vocab);
    if dim == 0 {
        return;
    }
    out.par_chunks_mut(dim)
        .zip(ids.par_iter())
        .for_each(|(row, &id)| {
            let s = id as usize * dim;
            row.copy_from_slice(&table[s..s + dim]);
        });
}

/// A raw pointer that may cross threads; see the SAFETY note in `embedding_backward`.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole Send wrapper, not the field).
    fn ptr(self) -> *mut T {
        self.0
    }
}

/// Embedding backward: scatter-ADD `dtable[ids[i], :] += dout[i, :]` (repeated ids
/// accumulate, in token order); `dout: [n, dim]`, `dtable: [vocab, dim]`.
pub fn embedding_backward<T: Real>(
    ids: &[i64],
    dout: &[T],
    vocab: usize,
    dim: usize,
    dtable: &mut [T],
) {
    assert!(dtable.len() == vocab * dim, "embedding: dtable length");
    assert!(dout.len() == ids.len() * dim, "embedding: dout length");
    check_ids(ids, vocab);
    let base = SharedMut(dtable.as_mut_ptr());
    (0..dim.div_ceil(BLOCK)).into_par_iter().for_each(|b| {
        let (c0, c1) = (b * BLOCK, ((b + 1) * BLOCK).min(dim));
        for (i, &id) in ids.iter().enumerate() {
            let src = &dout[i * dim + c0..i * dim + c1];
            // SAFETY: ids were checked to lie in [0, vocab), so the range
            // `id*dim + c0 .. id*dim + c1` is inside `dtable` (length vocab*dim), which is
            // exclusively borrowed for this call. Task `b` only touches columns
            // [c0, c1), disjoint from every other task's columns, and holds one such slice
            // at a time, so no two live `&mut` overlap.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(base.ptr().add(id as usize * dim + c0), c1 - c0)
            };
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, Lcg};

    const N: usize = 101;
    const VOCAB: usize = 13;
    const DIM: usize = 48;

    /// `n` ids in [0, vocab): with n >> vocab many repeat.
    fn rand_ids(rng: &mut Lcg, n: usize, vocab: usize) -> Vec<i64> {
        (0..n).map(|_| rng.below(vocab) as i64).collect()
    }

    /// Serial scatter-add written out.
    fn naive_backward(ids: &[i64], dout: &[f64], dim: usize, dtable: &mut [f64]) {
        for (i, &id) in ids.iter().enumerate() {
            for j in 0..dim {
                dtable[id as usize * dim + j] += dout[i * dim + j];
            }
        }
    }

    #[test]
    fn forward_gathers_rows() {
        let mut rng = Lcg::new(1);
        let table: Vec<f64> = rand_vec(&mut rng, VOCAB * DIM, 1.0);
        let ids = rand_ids(&mut rng, N, VOCAB);
        let mut out = vec![0.0; N * DIM];
        embedding_forward(&ids, &table, VOCAB, DIM, &mut out);
        for (i, &id) in ids.iter().enumerate() {
            let want = &table[id as usize * DIM..(id as usize + 1) * DIM];
            assert_eq!(&out[i * DIM..(i + 1) * DIM], want, "row {i}");
        }
    }

    #[test]
    #[should_panic(expected = "id 13 at position 2")]
    fn forward_panics_on_id_past_vocab() {
        let table = vec![0f32; VOCAB * 4];
        let mut out = vec![0f32; 3 * 4];
        embedding_forward(&[0, 12, 13], &table, VOCAB, 4, &mut out);
    }

    #[test]
    #[should_panic(expected = "id -1 at position 0")]
    fn backward_panics_on_negative_id() {
        let mut dtable = vec![0f32; VOCAB * 4];
        embedding_backward(&[-1, 0], &[0f32; 8], VOCAB, 4, &mut dtable);
    }

    #[test]
    fn backward_accumulates_repeated_ids() {
        // dim 150 spans three column blocks, the last ragged.
        let (n, vocab, dim) = (N, 7, 150);
        let mut rng = Lcg::new(2);
        let mut ids = rand_ids(&mut rng, n, vocab - 1);
        ids[0] = 3;
        ids[1] = 3;
        let dout: Vec<f64> = rand_vec(&mut rng, n * dim, 1.0);
        // Scatter-ADD: existing contents of dtable are kept.
        let init: Vec<f64> = rand_vec(&mut rng, vocab * dim, 1.0);
        let mut got = init.clone();
        embedding_backward(&ids, &dout, vocab, dim, &mut got);
        let mut want = init.clone();
        naive_backward(&ids, &dout, dim, &mut want);
        // Same per-element order of additions as the serial loop: bit-identical.
        assert_eq!(got, want);
        // The last row is never used (ids drawn below vocab - 1): it keeps its init value.
        let last = (vocab - 1) * dim..vocab * dim;
        assert_eq!(got[last.clone()], init[last]);
        // Row 3 (positions 0 and 1 at least) moved by the sum of its tokens' gradients.
        let sum3: f64 = (0..n).filter(|&i| ids[i] == 3).map(|i| dout[i * dim]).sum();
        assert!((got[3 * dim] - init[3 * dim] - sum3).abs() < 1e-12);
    }

    #[test]
    fn backward_f32_deterministic() {
        let (n, vocab, dim) = (517, 5, 200);
        let mut rng = Lcg::new(3);
        let ids = rand_ids(&mut rng, n, vocab);
        let dout: Vec<f32> = rand_vec(&mut rng, n * dim, 1.0);
        let mut a = vec![0f32; vocab * dim];
        let mut b = vec![0f32; vocab * dim];
        embedding_backward(&ids, &dout, vocab, dim, &mut a);
        embedding_backward(&ids, &dout, vocab, dim, &mut b);
        assert_eq!(a, b);
        let d64: Vec<f64> = dout.iter().map(|&v| v as f64).collect();
        let mut r = vec![0f64; vocab * dim];
        naive_backward(&ids, &d64, dim, &mut r);
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        assert_close("dtable f32", &a64, &r, 1e-4, 1e-5);
    }

    #[test]
    fn grad_check_table() {
        let mut rng = Lcg::new(4);
        let table: Vec<f64> = rand_vec(&mut rng, VOCAB * DIM, 1.0);
        let ids = rand_ids(&mut rng, N, VOCAB);
        let wts: Vec<f64> = rand_vec(&mut rng, N * DIM, 1.0);
        let mut dtable = vec![0.0; VOCAB * DIM];
        embedding_backward(&ids, &wts, VOCAB, DIM, &mut dtable);
        check_grad("embedding dtable", &table, &dtable, |t| {
            let mut out = vec![0.0; N * DIM];
            embedding_forward(&ids, t, VOCAB, DIM, &mut out);
            out.iter().zip(&wts).map(|(a, b)| a * b).sum()
        });
    }
}
