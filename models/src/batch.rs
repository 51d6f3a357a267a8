//! The token layout every forward uses: sequences packed back to back (no padding), with
//! `cu_seqlens` boundaries and per-token positions that restart at 0 in each sequence
//! (flash-attention's varlen form). Padded `[batch, seq]` inputs are unpadded into it.

use crate::{Error, Result};

/// Packed sequences: tokens of sequence `b` are `ids[cu_seqlens[b]..cu_seqlens[b + 1]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqBatch {
    /// All tokens, sequence after sequence.
    pub ids: Vec<u32>,
    /// `[batch + 1]` prefix sums of the sequence lengths, starting at 0.
    pub cu_seqlens: Vec<usize>,
    /// Position of each token within its sequence (offset by the cached length when
    /// decoding with a KV cache).
    pub positions: Vec<i64>,
}

impl SeqBatch {
    /// Packs whole sequences (positions from 0).
    pub fn from_seqs<S: AsRef<[u32]>>(seqs: &[S]) -> SeqBatch {
        Self::with_offsets(seqs, &vec![0; seqs.len()])
    }

    /// Packs sequences whose first token sits at position `offsets[b]` (tokens already in a
    /// KV cache come before them).
    pub fn with_offsets<S: AsRef<[u32]>>(seqs: &[S], offsets: &[usize]) -> SeqBatch {
        let mut b = SeqBatch {
            ids: vec![],
            cu_seqlens: vec![0],
            positions: vec![],
        };
        for (s, &off) in seqs.iter().zip(offsets) {
            let s = s.as_ref();
            b.ids.extend_from_slice(s);
            b.positions.extend((0..s.len()).map(|i| (off + i) as i64));
            b.cu_seqlens.push(b.ids.len());
        }
        b
    }

    /// Packs one row of concatenated sequences given HF-style `position_ids` that restart at
    /// 0 at each sequence start (how packed SFT batches arrive).
    pub fn from_position_ids(ids: &[u32], position_ids: &[i64]) -> Result<SeqBatch> {
        if ids.len() != position_ids.len() {
            return Err(Error::msg(format!(
                "packed batch: {} ids but {} position ids",
                ids.len(),
                position_ids.len()
            )));
        }
        let mut cu = vec![0];
        for (i, w) in position_ids.windows(2).enumerate() {
            if w[1] != w[0] + 1 {
                if w[1] != 0 {
                    return Err(Error::msg(format!(
                        "packed batch: position_ids must count up from 0 in each sequence (index {})",
                        i + 1
                    )));
                }
                cu.push(i + 1);
            }
        }
        if position_ids.first().is_some_and(|&p| p != 0) {
            return Err(Error::msg("packed batch: position_ids must start at 0"));
        }
        cu.push(ids.len());
        cu.dedup();
        Ok(SeqBatch {
            ids: ids.to_vec(),
            cu_seqlens: cu,
            positions: position_ids.to_vec(),
        })
    }

    /// Unpads a `[rows, cols]` batch with a 0/1 attention mask (left or right padding; the
    /// real tokens of a row must be contiguous). Also returns, for each kept token, its
    /// flat index `row * cols + col` in the padded layout.
    pub fn from_padded(ids: &[u32], mask: &[u8], cols: usize) -> Result<(SeqBatch, Vec<usize>)> {
        if ids.len() != mask.len() || cols == 0 || !ids.len().is_multiple_of(cols) {
            return Err(Error::msg(format!(
                "padded batch: {} ids, {} mask values, {cols} columns",
                ids.len(),
                mask.len()
            )));
        }
        let mut seqs = vec![];
        let mut index = vec![];
        for (r, (row, m)) in ids.chunks(cols).zip(mask.chunks(cols)).enumerate() {
            let kept: Vec<usize> = (0..cols).filter(|&c| m[c] != 0).collect();
            if kept.windows(2).any(|w| w[1] != w[0] + 1) {
                return Err(Error::msg(format!(
                    "padded batch: row {r} has padding between real tokens"
                )));
            }
            index.extend(kept.iter().map(|&c| r * cols + c));
            seqs.push(kept.iter().map(|&c| row[c]).collect::<Vec<u32>>());
        }
        Ok((SeqBatch::from_seqs(&seqs), index))
    }

    /// Number of sequences.
    pub fn num_seqs(&self) -> usize {
        self.cu_seqlens.len() - 1
    }

    /// Total tokens.
    pub fn num_tokens(&self) -> usize {
        self.ids.len()
    }

    /// Length of sequence `b`.
    pub fn seq_len(&self, b: usize) -> usize {
        self.cu_seqlens[b + 1] - self.cu_seqlens[b]
    }

    /// Index of the last token of each sequence (the rows whose logits predict next tokens).
    pub fn last_token_rows(&self) -> Vec<usize> {
        self.cu_seqlens[1..]
            .iter()
            .map(|&e| e.saturating_sub(1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_ids_split_sequences() {
        let b = SeqBatch::from_position_ids(&[5, 6, 7, 8, 9, 10], &[0, 1, 2, 0, 1, 0]).unwrap();
        assert_eq!(b.cu_seqlens, vec![0, 3, 5, 6]);
        assert!(SeqBatch::from_position_ids(&[1, 2], &[0, 2]).is_err());
    }

    #[test]
    fn unpad_left_and_right() {
        let ids = [0, 0, 4, 5, 6, 7, 0, 0];
        let mask = [0, 0, 1, 1, 1, 1, 0, 0];
        let (b, index) = SeqBatch::from_padded(&ids, &mask, 4).unwrap();
        assert_eq!(b.ids, vec![4, 5, 6, 7]);
        assert_eq!(b.cu_seqlens, vec![0, 2, 4]);
        assert_eq!(b.positions, vec![0, 1, 0, 1]);
        assert_eq!(index, vec![2, 3, 4, 5]);
        assert!(SeqBatch::from_padded(&[1, 2, 3], &[1, 0, 1], 3).is_err());
    }
}
