//! LoRA on the token embedding (PEFT's `lora.Embedding`) and on the output head (PEFT's
//! `lora.Linear` around `lm_head`).
//!
//! Embedding, for token ids `x: [n]`, table `E: [vocab, hidden]`, `A: [r, vocab]`,
//! `B: [hidden, r]` (PEFT's `lora_embedding_A` / `lora_embedding_B`, stored in those shapes):
//!
//! ```text
//!   y = E[x] + s · (Aᵀ[x] · Bᵀ)          [n, hidden]
//! ```
//!
//! `Aᵀ[x]` is looked up with the base embedding's `padding_idx` (the config's `pad_token_id`):
//! the pad token's column of A is read like any other but gets no gradient, as
//! `F.embedding(padding_idx=…)` does. There is no dropout on this path (PEFT builds the
//! dropout module but the embedding forward never applies it). The merged table is
//! `E + s · (B·A)ᵀ`.
//!
//! Head, for hidden states `h: [n, hidden]`, `W: [vocab, hidden]`, `A: [r, hidden]`,
//! `B: [vocab, r]`:
//!
//! ```text
//!   logits = h · Wᵀ + s · (drop(h) · Aᵀ) · Bᵀ
//!          = [h, s · drop(h) · Aᵀ] · [W, B]ᵀ     one product of width hidden + r
//! ```
//!
//! The second form is what [`head_inputs`] returns, so the fused linear cross-entropy (which
//! never materialises the logits) runs unchanged on `(h', W')`.

use super::linear::{adapters_disabled, is_training, Lora};
use lmf_autograd::{DType, Result, Tensor, Var};

/// The LoRA adapter of the token embedding.
#[derive(Clone)]
pub struct EmbedLora {
    /// `lora_embedding_A: [r, vocab]`.
    pub a: Var,
    /// `lora_embedding_B: [hidden, r]`.
    pub b: Var,
    /// `alpha / r`, or `alpha / √r` with rsLoRA.
    pub scale: f64,
}

impl EmbedLora {
    /// `s · Aᵀ[ids] · Bᵀ`, `[n, hidden]`, for token ids `ids: [n]` (`raw` the same ids as
    /// integers); the column `padding_idx` of A gets no gradient. `None` while adapters are off.
    pub fn delta(
        &self,
        ids: &Tensor,
        raw: &[u32],
        padding_idx: Option<u32>,
    ) -> Result<Option<Var>> {
        if adapters_disabled() {
            return Ok(None);
        }
        let n = raw.len();
        // [r, n] → [n, r]
        let mut after_a = self.a.index_select(ids, 1)?.t()?;
        if let Some(pad) = padding_idx.filter(|p| raw.contains(p)) {
            // rows of pad tokens: the same values, cut from the graph
            let keep: Vec<f32> = raw.iter().map(|&t| (t != pad) as u8 as f32).collect();
            let keep = Tensor::from_vec(keep, &[n, 1], ids.device())?.to_dtype(self.a.dtype())?;
            let cut = keep.affine(-1.0, 1.0)?;
            let frozen = Var::constant(after_a.tensor().clone());
            after_a = after_a
                .mul(&Var::constant(keep))?
                .add(&frozen.mul(&Var::constant(cut))?)?;
        }
        Ok(Some(after_a.matmul(&self.b.t()?)?.scale(self.scale)?))
    }

    /// The merged table's increment `s · (B·A)ᵀ`, `[vocab, hidden]`, in f32.
    pub fn delta_weight(&self) -> Result<Tensor> {
        let (a, b) = (
            self.a.tensor().to_dtype(DType::F32)?,
            self.b.tensor().to_dtype(DType::F32)?,
        );
        b.matmul(&a)?.t()?.contiguous()?.scale(self.scale)
    }
}

/// The two operands of the head product, `(h', W')` with `logits = h' · W'ᵀ`: `(h, W)` itself
/// without an active head adapter, else the concatenated pair of the module docs.
pub fn head_inputs(hidden: &Var, weight: &Var, lora: Option<&Lora>) -> Result<(Var, Var)> {
    let Some(l) = lora.filter(|_| !adapters_disabled()) else {
        return Ok((hidden.clone(), weight.clone()));
    };
    let p = if is_training() { l.dropout } else { 0.0 };
    let hd = if p > 0.0 {
        hidden.dropout(p)?
    } else {
        hidden.clone()
    };
    let low = hd.matmul(&l.a.t()?)?.scale(l.scale)?; // [n, r]
    let h2 = Var::cat(&[hidden, &low], 1)?; // [n, hidden + r]
    let w2 = Var::cat(&[weight, &l.b], 1)?; // [vocab, hidden + r]
    Ok((h2, w2))
}
