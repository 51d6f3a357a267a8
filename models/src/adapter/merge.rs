//! Folding an adapter into the base weights (PEFT `merge_and_unload`): `W += s·B·A`, or for
//! DoRA `W ← m/‖W + s·B·A‖ ⊙ (W + s·B·A)` per output row; and the PiSSA → LoRA conversion
//! of LLaMA-Factory's `pissa_convert` (PEFT `path_initial_model_for_weight_conversion`).

use super::io::{write_config, write_safetensors, KEY_PREFIX, WEIGHTS_FILE};
use super::{linears_mut, LoraConfig};
use crate::model::linear::dora_weight_norm;
use crate::model::CausalLM;
use crate::weights::Weights;
use crate::{Error, Result};
use lmf_autograd::{DType, Tensor, Var};
use std::path::Path;

/// `(A', B')` with `B'·A' = B·A − B₀·A₀`: `A' = [A; A₀]` (rank 2r), `B' = [B, −B₀]`.
pub fn pissa_to_lora(a0: &Tensor, b0: &Tensor, a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    if a0.shape() != a.shape() || b0.shape() != b.shape() {
        return Err(Error::msg(format!(
            "pissa convert: initial A {:?} / B {:?} differ from current A {:?} / B {:?}",
            a0.shape(),
            b0.shape(),
            a.shape(),
            b.shape()
        )));
    }
    let a2 = Tensor::cat(&[a, a0], 0)?;
    let b2 = Tensor::cat(&[b, &b0.neg()?], 1)?;
    Ok((a2, b2))
}

impl CausalLM {
    /// Merges every adapter into its base weight (in f32, then back to the weight's dtype)
    /// and removes the adapters; `modules_to_save` copies are already the model's tensors.
    pub fn merge_adapter(&mut self) -> Result<()> {
        if self.is_quantized() {
            return Err(Error::msg(
                "cannot merge adapters into a quantized model (merge into the unquantized \
                 model, then quantize)",
            ));
        }
        let mut merged = 0;
        for (_, lin) in linears_mut(self) {
            let Some(l) = lin.lora.take() else { continue };
            let w = lin.weight.tensor();
            let up = |t: &Tensor| t.to_dtype(DType::F32);
            let (w32, a, b) = (up(w)?, up(l.a.tensor())?, up(l.b.tensor())?);
            let mut new = w32.add(&b.matmul(&a)?.scale(l.scale)?)?;
            if let Some(m) = &l.magnitude {
                // norm of W + s·B·A, taken before the merge (PEFT merge_unsafe)
                let norm = dora_weight_norm(&w32, &a, &b, l.scale)?;
                let factor = up(m.tensor())?.div(&norm)?.unsqueeze(1)?;
                new = new.mul(&factor)?;
            }
            lin.weight = Var::leaf(new.to_dtype(w.dtype())?, lin.weight.requires_grad());
            merged += 1;
        }
        merged += self.merge_embedding_adapters()?;
        if merged == 0 {
            return Err(Error::msg("merge_adapter: the model has no adapter"));
        }
        Ok(())
    }

    /// Folds the embedding and head adapters in (`E += s·(B·A)ᵀ`, `W += s·B·A`) and returns
    /// how many there were. On a tied model the two results differ, so the head becomes its
    /// own weight and `config.tie_word_embeddings` false: the merged model computes what the
    /// adapted one did. (PEFT adds both increments into the one shared tensor, which changes
    /// the model's outputs.)
    fn merge_embedding_adapters(&mut self) -> Result<usize> {
        let (embed, head) = (self.embed_lora.take(), self.head_lora.take());
        if embed.is_none() && head.is_none() {
            return Ok(0);
        }
        let up = |t: &Tensor| t.to_dtype(DType::F32);
        let base_head = self.head_weight().tensor().clone();
        let dtype = base_head.dtype();
        let new_head = match &head {
            Some(l) => {
                let (a, b) = (up(l.a.tensor())?, up(l.b.tensor())?);
                Some(up(&base_head)?.add(&b.matmul(&a)?.scale(l.scale)?)?)
            }
            None => None,
        };
        let new_embed = match &embed {
            Some(l) => Some(up(self.embed_tokens.tensor())?.add(&l.delta_weight()?)?),
            None => None,
        };
        if self.lm_head.is_none() {
            self.config.tie_word_embeddings = false;
            let head = match &new_head {
                Some(t) => t.to_dtype(dtype)?,
                None => base_head.clone(),
            };
            self.lm_head = Some(Var::leaf(head, false));
        } else if let (Some(t), Some(h)) = (&new_head, &mut self.lm_head) {
            *h = Var::leaf(t.to_dtype(dtype)?, h.requires_grad());
        }
        if let Some(t) = new_embed {
            let e = &mut self.embed_tokens;
            *e = Var::leaf(t.to_dtype(e.dtype())?, e.requires_grad());
        }
        Ok(embed.is_some() as usize + head.is_some() as usize)
    }

    /// LLaMA-Factory's `pissa_convert`: writes the trained PiSSA adapter as a plain LoRA
    /// adapter of rank 2r on the *original* base weights to `dir` (PEFT's
    /// `path_initial_model_for_weight_conversion`): the initial A₀/B₀ are read from the
    /// PEFT folder `init_dir` (saved before training); `cfg` is the training config.
    /// Like PEFT, only `lora_A` / `lora_B` are written.
    pub fn save_pissa_converted(
        &self,
        dir: &Path,
        cfg: &LoraConfig,
        base_model: &str,
        init_dir: &Path,
    ) -> Result<()> {
        let init_path = init_dir.join(WEIGHTS_FILE);
        if !init_path.is_file() {
            return Err(Error::missing(init_path, "the initial PiSSA adapter"));
        }
        let init = Weights::from_files(std::slice::from_ref(&init_path))?;
        let params = self.named_parameters();
        let mut out = vec![];
        for (name, v) in &params {
            let Some(module) = name.strip_suffix(".lora_A.weight") else {
                continue;
            };
            let b_name = format!("{module}.lora_B.weight");
            let b = params
                .iter()
                .find(|(n, _)| *n == b_name)
                .map(|(_, v)| v.tensor())
                .ok_or_else(|| Error::msg(format!("pissa convert: `{b_name}` is missing")))?;
            let (a, dt) = (v.tensor(), v.dtype());
            let key_a = format!("{KEY_PREFIX}{name}");
            let key_b = format!("{KEY_PREFIX}{b_name}");
            let a0 = init.load(&key_a, a.shape(), dt, a.device())?;
            let b0 = init.load(&key_b, b.shape(), dt, b.device())?;
            let (a2, b2) = pissa_to_lora(&a0, &b0, a, b)?;
            out.push((key_a, a2));
            out.push((key_b, b2));
        }
        if out.is_empty() {
            return Err(Error::msg("pissa convert: the model has no adapter"));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_safetensors(&dir.join(WEIGHTS_FILE), &out)?;
        write_config(dir, &cfg.pissa_converted(), base_model)
    }
}
