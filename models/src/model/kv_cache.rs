//! Key/value cache for generation: per layer and per sequence, the rotated keys and the
//! values of every token seen so far (`[len, kv_heads, head_dim]`). A decode step appends
//! the new tokens' k/v and attends over the whole cache with the causal mask aligned
//! bottom-right, which is exactly "the new queries see every cached key and themselves".
//!
//! Two stores: on the CPU in f32 (what lmf computes there) each sequence's keys and values
//! live in growing host buffers that attention reads in place
//! ([`attention_forward_per_seq`]: the packed kernel's tiles, bitwise its output), so a step
//! copies only its new rows; elsewhere (CUDA, other dtypes) the appended chunks are packed
//! into one tensor per layer for the attention op at each step.

use lmf_autograd::ops::fused::AttnParams;
use lmf_autograd::{DType, Device, Result, Tensor};
use lmf_kernels::cpu::attention::attention_forward_per_seq;

/// Cached keys and values of a batch of sequences.
pub struct KvCache {
    /// `[layer][seq]` → the `[rows, kv_heads, head_dim]` chunks appended so far (chunk store).
    k: Vec<Vec<Vec<Tensor>>>,
    v: Vec<Vec<Vec<Tensor>>>,
    /// `[layer][seq]` → the rows so far, flattened (host store; empty in the chunk store).
    hk: Vec<Vec<Vec<f32>>>,
    hv: Vec<Vec<Vec<f32>>>,
    /// Which store this cache uses.
    host: bool,
    /// Tokens cached per sequence.
    lens: Vec<usize>,
}

impl KvCache {
    /// An empty cache for `num_seqs` sequences (chunk store).
    pub fn new(num_layers: usize, num_seqs: usize) -> KvCache {
        KvCache {
            k: vec![vec![vec![]; num_seqs]; num_layers],
            v: vec![vec![vec![]; num_seqs]; num_layers],
            hk: vec![vec![vec![]; num_seqs]; num_layers],
            hv: vec![vec![vec![]; num_seqs]; num_layers],
            host: false,
            lens: vec![0; num_seqs],
        }
    }

    /// An empty cache for a model computing in `dtype` on `device`: the host store for f32
    /// on the CPU, else the chunk store.
    pub fn for_model(num_layers: usize, num_seqs: usize, dtype: DType, device: Device) -> KvCache {
        let mut c = KvCache::new(num_layers, num_seqs);
        c.host = device == Device::Cpu && dtype == DType::F32;
        c
    }

    /// Whether attention reads this cache in place (the host store).
    pub(crate) fn is_host(&self) -> bool {
        self.host
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
        let filter = |v: &mut Vec<Vec<f32>>| {
            let mut it = keep.iter();
            v.retain(|_| *it.next().unwrap_or(&false));
        };
        self.hk.iter_mut().for_each(filter);
        self.hv.iter_mut().for_each(filter);
        let mut it = keep.iter();
        self.lens.retain(|_| *it.next().unwrap_or(&false));
    }

    /// Moves the sequences of `other` (a cache of the same model, same store) after this
    /// cache's own.
    pub fn extend(&mut self, other: KvCache) {
        assert_eq!(self.host, other.host, "KV caches of different stores");
        for (mine, theirs) in self.k.iter_mut().zip(other.k) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.v.iter_mut().zip(other.v) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.hk.iter_mut().zip(other.hk) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.hv.iter_mut().zip(other.hv) {
            mine.extend(theirs);
        }
        self.lens.extend(other.lens);
    }

    /// Host store: appends each sequence's new rows (`row` values each) of layer `layer`.
    fn push_host(
        &mut self,
        layer: usize,
        cu_new: &[usize],
        k_new: &Tensor,
        v_new: &Tensor,
        row: usize,
    ) -> Result<()> {
        let (k_new, v_new) = (k_new.to_vec::<f32>()?, v_new.to_vec::<f32>()?);
        for b in 0..cu_new.len() - 1 {
            let (r0, r1) = (cu_new[b] * row, cu_new[b + 1] * row);
            self.hk[layer][b].extend_from_slice(&k_new[r0..r1]);
            self.hv[layer][b].extend_from_slice(&v_new[r0..r1]);
        }
        Ok(())
    }

    /// Host store: appends layer `layer`'s new keys/values (`[new_total, kv_heads,
    /// head_dim]`, packed by `cu_new`) to each sequence's buffers, then attends the new
    /// queries `q: [new_total, heads, head_dim]` over each sequence's whole cache, read in
    /// place. Returns `[new_total, heads, head_dim]`.
    pub(crate) fn attend_in_place(
        &mut self,
        layer: usize,
        cu_new: &[usize],
        q: &Tensor,
        k_new: &Tensor,
        v_new: &Tensor,
        params: &AttnParams,
    ) -> Result<Tensor> {
        self.push_host(
            layer,
            cu_new,
            k_new,
            v_new,
            params.num_kv_heads * params.head_dim,
        )?;
        let q_data = q.to_vec::<f32>()?;
        let ks: Vec<&[f32]> = self.hk[layer].iter().map(Vec::as_slice).collect();
        let vs: Vec<&[f32]> = self.hv[layer].iter().map(Vec::as_slice).collect();
        let mut out = vec![0f32; q_data.len()];
        let mut lse = vec![0f32; q.shape()[0] * params.num_heads];
        attention_forward_per_seq(&q_data, &ks, &vs, cu_new, params, &mut out, &mut lse);
        Tensor::from_vec(out, q.shape(), q.device())
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
        if self.host {
            // a forward that records a tape: the host rows packed into tensors
            let shape = k_new.shape();
            let row = shape[1] * shape[2];
            self.push_host(layer, cu_new, k_new, v_new, row)?;
            let pack = |all: &Vec<Vec<f32>>| -> Result<Tensor> {
                let data: Vec<f32> = all.concat();
                let rows = data.len() / row;
                Tensor::from_vec(data, &[rows, shape[1], shape[2]], k_new.device())
            };
            let mut cu_k = vec![0];
            for (b, len) in self.lens.iter().enumerate() {
                cu_k.push(cu_k[b] + len + cu_new[b + 1] - cu_new[b]);
            }
            return Ok((pack(&self.hk[layer])?, pack(&self.hv[layer])?, cu_k));
        }
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
