//! From encoded [`Example`]s to what one forward consumes: the order of the rows in each epoch
//! (sequential, or a seeded shuffle), the micro-batches, the varlen [`SeqBatch`] (no padding)
//! and the shifted labels of HF's `ForCausalLMLoss`, plus `num_items_in_batch`.

use lmf_models::SeqBatch;

use crate::data::{Example, IGNORE_INDEX};
use crate::{Error, Result};

/// One micro-batch ready for the model: packed tokens and one shifted label per token.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Tokens, cu_seqlens (one sequence per attention segment) and RoPE positions.
    pub seq: SeqBatch,
    /// Label of each token = the unshifted label of the next token of the same row; the last
    /// token of each row gets [`IGNORE_INDEX`] (HF pads the labels by one and shifts).
    pub labels: Vec<i64>,
    /// Rows in the batch.
    pub rows: usize,
}

impl Batch {
    /// Tokens whose shifted label is not ignored (what the loss averages over).
    pub fn num_label_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    /// Number of tokens.
    pub fn num_tokens(&self) -> usize {
        self.seq.ids.len()
    }
}

/// Packs `rows` into one [`Batch`]; `first_row` only names the row in errors.
pub fn make_batch(rows: &[&Example], first_row: usize) -> Result<Batch> {
    let mut seq = SeqBatch {
        ids: vec![],
        cu_seqlens: vec![0],
        positions: vec![],
    };
    let mut labels = Vec::new();
    for (i, ex) in rows.iter().enumerate() {
        let n = ex.input_ids.len();
        let bad = |what: String| Error::Msg(format!("training row {}: {what}", first_row + i));
        if n == 0 {
            return Err(bad("no tokens".into()));
        }
        if ex.labels.len() != n || ex.position_ids.len() != n {
            return Err(bad(format!(
                "{n} input_ids but {} labels and {} position_ids",
                ex.labels.len(),
                ex.position_ids.len()
            )));
        }
        if ex.segments.iter().sum::<usize>() != n || ex.segments.contains(&0) {
            return Err(bad(format!(
                "segments {:?} do not split the {n} tokens",
                ex.segments
            )));
        }
        seq.ids.extend_from_slice(&ex.input_ids);
        seq.positions
            .extend(ex.position_ids.iter().map(|&p| p as i64));
        let base = *seq.cu_seqlens.last().unwrap_or(&0);
        let mut off = base;
        for &s in &ex.segments {
            off += s;
            seq.cu_seqlens.push(off);
        }
        labels.extend_from_slice(&ex.labels[1..]);
        labels.push(IGNORE_INDEX);
    }
    Ok(Batch {
        seq,
        labels,
        rows: rows.len(),
    })
}

/// Label tokens of a micro-batch as HF's `_get_num_items_in_batch` counts them: labels that
/// are not [`IGNORE_INDEX`], BEFORE the shift (transformers 5.6 counts `batch["labels"]`).
pub fn count_items(rows: &[&Example]) -> usize {
    rows.iter()
        .map(|e| e.labels.iter().filter(|&&l| l != IGNORE_INDEX).count())
        .sum()
}

/// The order of the `n` training rows in `epoch`. Sequential when `shuffle` is false
/// (LLaMA-Factory's `disable_shuffling` → `SequentialSampler`). Otherwise a Fisher-Yates
/// shuffle driven by SplitMix64 keyed by `(seed, epoch)`: deterministic and resumable from the
/// epoch number alone, but NOT the permutation torch's `RandomSampler` draws.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if !shuffle {
        return order;
    }
    let mut state = seed ^ epoch.wrapping_mul(0xA076_1D64_78BD_642F);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The micro-batches of one epoch: row indices in groups of `batch_size` (the last one
/// shorter unless `drop_last`), as torch's `DataLoader` batches a sampler.
pub fn epoch_batches(order: &[usize], batch_size: usize, drop_last: bool) -> Vec<Vec<usize>> {
    let bs = batch_size.max(1);
    order
        .chunks(bs)
        .filter(|c| !drop_last || c.len() == bs)
        .map(|c| c.to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_shift_within_each_row() {
        let a = Example::single(vec![1, 2, 3], vec![-100, 5, 6]);
        let b = Example::single(vec![4, 5], vec![7, 8]);
        let batch = make_batch(&[&a, &b], 0).unwrap();
        assert_eq!(batch.seq.ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(batch.seq.cu_seqlens, vec![0, 3, 5]);
        assert_eq!(batch.seq.positions, vec![0, 1, 2, 0, 1]);
        assert_eq!(batch.labels, vec![5, 6, -100, 8, -100]);
        assert_eq!(batch.num_label_tokens(), 3);
        // HF counts the unshifted labels: 2 + 2.
        assert_eq!(count_items(&[&a, &b]), 4);
    }

    #[test]
    fn packed_rows_give_one_sequence_per_segment() {
        let ex = Example {
            input_ids: vec![1, 2, 3, 4, 5],
            labels: vec![1, 2, 3, 4, 5],
            segments: vec![2, 3],
            position_ids: vec![0, 1, 0, 1, 2],
        };
        let batch = make_batch(&[&ex], 0).unwrap();
        assert_eq!(batch.seq.cu_seqlens, vec![0, 2, 5]);
        assert_eq!(batch.seq.positions, vec![0, 1, 0, 1, 2]);
        let bad = Example {
            segments: vec![2, 2],
            ..ex
        };
        assert!(make_batch(&[&bad], 7)
            .unwrap_err()
            .to_string()
            .contains("row 7"));
    }

    #[test]
    fn orders_are_sequential_or_seeded_permutations() {
        assert_eq!(epoch_order(4, false, 1, 0), vec![0, 1, 2, 3]);
        let a = epoch_order(50, true, 42, 0);
        assert_eq!(a, epoch_order(50, true, 42, 0));
        assert_ne!(a, epoch_order(50, true, 42, 1));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_eq!(
            epoch_batches(&[0, 1, 2, 3, 4], 2, false),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(epoch_batches(&[0, 1, 2, 3, 4], 2, true).len(), 2);
    }
}
