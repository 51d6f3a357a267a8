//! Key/value cache for generation: per layer and per sequence, the rotated keys and the
//! values of every token seen so far (`[len, kv_heads, head_dim]`). A decode step appends
//! the new tokens' k/v and attends over the whole cache with the causal mask aligned
//! bottom-right, which is exactly "the new queries see every cached key and themselves".

use lmf_autograd::{Result, Tensor};

/// Cached keys and values of a batch of sequences.
pub struct KvCache {
    /// `[layer][seq]` → the `[rows, kv_heads, head_dim]` chunks appended so far (appending is
    /// free; the one copy per step is the packed gather for attention).
    k: Vec<Vec<Vec<Tensor>>>,
    v: Vec<Vec<Vec<Tensor>>>,
    /// Tokens cached per sequence.
    lens: Vec<usize>,
}

impl KvCache {
    /// An empty cache for `num_seqs` sequences.
    pub fn new(num_layers: usize, num_seqs: usize) -> KvCache {
        KvCache {
            k: vec![vec![vec![]; num_seqs]; num_layers],
            v: vec![vec![vec![]; num_seqs]; num_layers],
            lens: vec![0; num_seqs],
        }
    }

    /// Tokens cached for each sequence (the position of its next token).
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    /// Keeps only the sequences whose `keep` flag is set (finished ones are dropped).
    pub fn retain(&mut self, keep: &[bool]) {
        let filter = |v: &mut Vec<Vec<Tensor>>| {
            let mut it = keep.iter();
            v.retain(|_| *it.next().unwrap_or(&false));
        };
        self.k.iter_mut().for_each(filter);
        self.v.iter_mut().for_each(filter);
        let mut it = keep.iter();
        self.lens.retain(|_| *it.next().unwrap_or(&false));
    }

    /// Moves the sequences of `other` (a cache of the same model) after this cache's own.
    pub fn extend(&mut self, other: KvCache) {
        for (mine, theirs) in self.k.iter_mut().zip(other.k) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.v.iter_mut().zip(other.v) {
            mine.extend(theirs);
        }
        self.lens.extend(other.lens);
    }

    /// Appends layer `layer`'s new keys/values (`[new_total, kv_heads, head_dim]`, packed by
    /// `cu_new`) and returns the packed cached keys, values and their `cu_seqlens`.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        cu_new: &[usize],
        k_new: &Tensor,
        v_new: &Tensor,
    ) -> Result<(Tensor, Tensor, Vec<usize>)> {
        let mut cu_k = vec![0];
        for b in 0..cu_new.len() - 1 {
            let n = cu_new[b + 1] - cu_new[b];
            if n > 0 {
                self.k[layer][b].push(k_new.narrow(0, cu_new[b], n)?);
                self.v[layer][b].push(v_new.narrow(0, cu_new[b], n)?);
            }
            cu_k.push(cu_k[b] + self.lens[b] + n);
        }
        // packed [total_k, kv_heads, head_dim], sequence after sequence
        let gather = |all: &Vec<Vec<Tensor>>| -> Result<Tensor> {
            let parts: Vec<&Tensor> = all.iter().flatten().collect();
            Tensor::cat(&parts, 0)
        };
        Ok((gather(&self.k[layer])?, gather(&self.v[layer])?, cu_k))
    }

    /// Records that each sequence grew by its new tokens (after all layers ran).
    pub(crate) fn advance(&mut self, cu_new: &[usize]) {
        for (b, len) in self.lens.iter_mut().enumerate() {
            *len += cu_new[b + 1] - cu_new[b];
        }
    }
}
