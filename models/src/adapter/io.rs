//! PEFT adapter folders: `adapter_model.safetensors` (keys `base_model.model.<hf name>`,
//! e.g. `...q_proj.lora_A.weight`, `...lora_magnitude_vector`, and the full tensors of
//! `modules_to_save` under their plain HF names) and `adapter_config.json`. Both files are
//! written to a temporary name and renamed, so a crash never leaves a half-written file under
//! the real name.

use super::config::CONFIG_FILE;
use super::{
    embedding_targets, init_linear, is_adapter_param, is_saved_module_param, targets_mut,
    LoraConfig, LoraInit, EMBED_MODULE, HEAD_MODULE,
};
use crate::model::{CausalLM, EmbedLora, Lora};
use crate::weights::Weights;
use crate::{Error, Result};
use half::{bf16, f16};
use lmf_autograd::{DType, Tensor, Var};
use safetensors::tensor::TensorView;
use safetensors::Dtype as StDtype;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// File name of the adapter weights.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT's prefix of every saved key.
pub const KEY_PREFIX: &str = "base_model.model.";

/// Little-endian bytes and safetensors dtype of a float tensor.
fn tensor_bytes(t: &Tensor) -> Result<(StDtype, Vec<u8>)> {
    Ok(match t.dtype() {
        DType::F32 => (
            StDtype::F32,
            bytemuck::cast_slice(&t.to_vec::<f32>()?).to_vec(),
        ),
        DType::F64 => (
            StDtype::F64,
            bytemuck::cast_slice(&t.to_vec::<f64>()?).to_vec(),
        ),
        DType::BF16 => (
            StDtype::BF16,
            t.to_vec::<bf16>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        DType::F16 => (
            StDtype::F16,
            t.to_vec::<f16>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        other => {
            return Err(Error::msg(format!(
                "adapter: cannot save a {other} parameter"
            )))
        }
    })
}

/// Writes `bytes` to `path` through `path.tmp` + rename.
pub(crate) fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Writes `tensors` (key → tensor) as a safetensors file with PEFT's `{"format": "pt"}`.
pub(crate) fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let data: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| {
            let (dt, b) = tensor_bytes(t)?;
            Ok((k.clone(), dt, t.shape().to_vec(), b))
        })
        .collect::<Result<_>>()?;
    let views = data
        .iter()
        .map(|(k, dt, shape, b)| {
            TensorView::new(*dt, shape.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::file(path, format!("tensor `{k}`: {e}")))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_atomic(path, |tmp| {
        safetensors::serialize_to_file(views, Some(meta), tmp)
            .map_err(|e| Error::file(tmp, format!("cannot write safetensors: {e}")))
    })
}

/// Writes `cfg`'s `adapter_config.json` into `dir`.
pub(crate) fn write_config(dir: &Path, cfg: &LoraConfig, base_model: &str) -> Result<()> {
    let path = dir.join(CONFIG_FILE);
    let mut text = serde_json::to_string_pretty(&cfg.to_peft_json(base_model))
        .map_err(|e| Error::file(&path, e))?;
    text.push('\n');
    write_atomic(&path, |tmp| {
        std::fs::write(tmp, text).map_err(|e| Error::io(tmp, e))
    })
}

/// Strips PEFT's prefix and an adapter-name segment (`.default`, as in-memory state dicts
/// and some hand-made files carry) from a saved key: `model.layers.0...lora_A.weight`.
fn normalize_key(key: &str) -> String {
    let k = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
    let k = k.replace(".modules_to_save.default.", ".");
    let k = k
        .replace(".lora_A.default.", ".lora_A.")
        .replace(".lora_B.default.", ".lora_B.");
    if let Some(m) = k.strip_suffix(".lora_magnitude_vector.default.weight") {
        return format!("{m}.lora_magnitude_vector");
    }
    for p in [".lora_embedding_A", ".lora_embedding_B"] {
        if let Some(m) = k.strip_suffix(&format!("{p}.default")) {
            return format!("{m}{p}");
        }
    }
    k
}

/// Whether PEFT's `save_pretrained` writes the embedding base weights beside the adapter
/// (`save_embedding_layers="auto"`): when the target list names `embed_tokens` or `lm_head`
/// as such, or the target regex matches a module whose name ends in one of them.
fn saves_embedding_layers(cfg: &LoraConfig) -> bool {
    match &cfg.target_regex {
        Some(_) => cfg.targets(EMBED_MODULE) || cfg.targets(HEAD_MODULE),
        None => cfg
            .target_modules
            .iter()
            .any(|t| t == "embed_tokens" || t == "lm_head"),
    }
}

impl CausalLM {
    /// Saves the adapter (every LoRA/DoRA parameter and the `cfg.modules_to_save` tensors)
    /// as a PEFT folder `dir`, with `base_model` as `base_model_name_or_path`.
    pub fn save_adapter(&self, dir: &Path, cfg: &LoraConfig, base_model: &str) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = self
            .named_parameters()
            .into_iter()
            .filter(|(n, _)| is_adapter_param(n) || is_saved_module_param(n, &cfg.modules_to_save))
            .map(|(n, v)| (format!("{KEY_PREFIX}{n}"), v.tensor().clone()))
            .collect();
        // PEFT also writes the base weight of each adapted embedding layer
        if saves_embedding_layers(cfg) {
            if self.embed_lora.is_some() {
                let t = self.embed_tokens.tensor().clone();
                tensors.push((format!("{KEY_PREFIX}{EMBED_MODULE}.base_layer.weight"), t));
            }
            if self.head_lora.is_some() {
                let t = self.head_weight().tensor().clone();
                tensors.push((format!("{KEY_PREFIX}{HEAD_MODULE}.base_layer.weight"), t));
            }
        }
        if !tensors.iter().any(|(n, _)| is_adapter_param(n)) {
            return Err(Error::msg("save_adapter: the model has no adapter"));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_safetensors(&dir.join(WEIGHTS_FILE), &tensors)?;
        write_config(dir, cfg, base_model)
    }

    /// Loads the PEFT LoRA folder `dir` onto the model (replacing an adapter already on the
    /// same layers) and returns its config. A PiSSA adapter (`init_lora_weights: "pissa"`)
    /// first turns each targeted weight into its residual, as PEFT does on load.
    /// `trainable`: the adapter and `modules_to_save` train and the rest is frozen (resuming);
    /// otherwise everything is frozen (inference). A missing tensor, a tensor of the wrong
    /// shape or one that names no layer is an error naming the file and the tensor.
    pub fn load_adapter(&mut self, dir: &Path, trainable: bool) -> Result<LoraConfig> {
        let cfg_path = dir.join(CONFIG_FILE);
        if !cfg_path.is_file() {
            return Err(Error::missing(cfg_path, "a PEFT adapter config"));
        }
        let cfg = LoraConfig::from_peft_file(&cfg_path)?;
        let path = dir.join(WEIGHTS_FILE);
        if !path.is_file() {
            let what = if dir.join("adapter_model.bin").is_file() {
                "the adapter weights (only safetensors is supported; adapter_model.bin found)"
            } else {
                "the adapter weights"
            };
            return Err(Error::missing(path, what));
        }
        let w = Weights::from_files(std::slice::from_ref(&path))?;
        // normalized name → stored key
        let mut keys: BTreeMap<String, String> = BTreeMap::new();
        for k in w.names() {
            if keys.insert(normalize_key(k), k.to_string()).is_some() {
                return Err(Error::file(&path, format!("tensor `{k}` appears twice")));
            }
        }
        let has_embed_base = keys.contains_key(&format!("{EMBED_MODULE}.base_layer.weight"));
        let has_head_base = keys.contains_key(&format!("{HEAD_MODULE}.base_layer.weight"));
        let bad = |msg: String| Error::file(&path, msg);
        let (dtype, device) = (self.dtype, self.device);
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let key = keys.remove(name).ok_or_else(|| {
                bad(format!(
                    "missing tensor `{KEY_PREFIX}{name}` (adapter_config.json targets this layer)"
                ))
            })?;
            let got = w.shape(&key).unwrap_or(&[]);
            if got != shape {
                return Err(bad(format!(
                    "tensor `{key}` has shape {got:?} but the model needs {shape:?} (r = {})",
                    cfg.r
                )));
            }
            w.load(&key, shape, dtype, device)
        };
        // Everything is read and checked first, then applied, so an error leaves the model
        // as it was (apart from untying a tied lm_head listed in modules_to_save).
        let (r, scale) = (cfg.r, cfg.scale());
        let mut plan: Vec<(Option<Var>, Lora)> = vec![];
        for (name, lin) in targets_mut(self, &cfg)? {
            let (out_f, in_f) = lin.dims();
            let a = take(&format!("{name}.lora_A.weight"), &[r, in_f])?;
            let b = take(&format!("{name}.lora_B.weight"), &[out_f, r])?;
            let magnitude = if cfg.use_dora {
                Some(take(&format!("{name}.lora_magnitude_vector"), &[out_f])?)
            } else {
                None
            };
            let residual = if let LoraInit::Pissa { .. } = cfg.init {
                // Only the residual W is kept; A/B come from the file.
                let mut scratch = lin.clone();
                init_linear(&mut scratch, &cfg, 0, 0)?;
                Some(scratch.weight)
            } else {
                None
            };
            let lora = Lora {
                a: Var::leaf(a, trainable),
                b: Var::leaf(b, trainable),
                scale,
                dropout: cfg.lora_dropout,
                magnitude: magnitude.map(|m| Var::leaf(m, trainable)),
            };
            plan.push((residual, lora));
        }
        let (embed, head) = embedding_targets(&cfg)?;
        let (vocab, hidden) = (self.embed_tokens.shape()[0], self.embed_tokens.shape()[1]);
        let head_lora = if head {
            Some(Lora {
                a: Var::leaf(take("lm_head.lora_A.weight", &[r, hidden])?, trainable),
                b: Var::leaf(take("lm_head.lora_B.weight", &[vocab, r])?, trainable),
                scale,
                dropout: cfg.lora_dropout,
                magnitude: None,
            })
        } else {
            None
        };
        let embed_lora = if embed {
            let a = take(&format!("{EMBED_MODULE}.lora_embedding_A"), &[r, vocab])?;
            let b = take(&format!("{EMBED_MODULE}.lora_embedding_B"), &[hidden, r])?;
            Some(EmbedLora {
                a: Var::leaf(a, trainable),
                b: Var::leaf(b, trainable),
                scale,
            })
        } else {
            None
        };
        // The base weights PEFT saves beside an embedding adapter: loaded over the model's, as
        // PEFT does (they are the base model's own unless the vocabulary was resized).
        let mut embed_base = None;
        let mut head_base = None;
        if embed && has_embed_base {
            embed_base = Some(take(
                &format!("{EMBED_MODULE}.base_layer.weight"),
                &[vocab, hidden],
            )?);
        }
        if head && has_head_base {
            head_base = Some(take(
                &format!("{HEAD_MODULE}.base_layer.weight"),
                &[vocab, hidden],
            )?);
        }
        // What is left must be modules_to_save tensors of this model.
        self.prepare_modules_to_save(&cfg.modules_to_save)?;
        let mut left: Vec<(String, String)> = keys.into_iter().collect();
        let mut saves: Vec<(String, Tensor)> = vec![];
        for (name, v) in self.named_parameters() {
            let Some(i) = left.iter().position(|(n, _)| *n == name) else {
                continue;
            };
            let (_, key) = left.swap_remove(i);
            if is_adapter_param(&name) || !is_saved_module_param(&name, &cfg.modules_to_save) {
                return Err(bad(format!(
                    "tensor `{key}` is neither a targeted layer's adapter nor in modules_to_save"
                )));
            }
            let shape = v.shape().to_vec();
            let got = w.shape(&key).unwrap_or(&[]);
            if got != shape.as_slice() {
                return Err(bad(format!(
                    "tensor `{key}` has shape {got:?} but the model's `{name}` is {shape:?}"
                )));
            }
            saves.push((name, w.load(&key, &shape, dtype, device)?));
        }
        if let Some((_, key)) = left.first() {
            return Err(bad(format!(
                "tensor `{key}` names no layer adapted by adapter_config.json in this model"
            )));
        }
        for ((_, lin), (residual, lora)) in targets_mut(self, &cfg)?.into_iter().zip(plan) {
            if let Some(wres) = residual {
                lin.weight = wres;
            }
            lin.lora = Some(lora);
        }
        if let Some(t) = embed_base {
            self.embed_tokens = Var::leaf(t, self.embed_tokens.requires_grad());
        }
        if let Some(t) = head_base {
            // a tied model's head is its embedding: one weight, already loaded above
            if let Some(h) = &mut self.lm_head {
                *h = Var::leaf(t, h.requires_grad());
            }
        }
        if embed {
            self.embed_lora = embed_lora;
        }
        if head {
            self.head_lora = head_lora;
        }
        for (name, v) in self.named_parameters_mut() {
            if let Some(i) = saves.iter().position(|(n, _)| *n == name) {
                let (_, t) = saves.swap_remove(i);
                *v = Var::leaf(t, v.requires_grad());
            }
        }
        let saved = cfg.modules_to_save.clone();
        if trainable {
            self.set_trainable(|n| is_adapter_param(n) || is_saved_module_param(n, &saved));
        } else {
            self.set_trainable(|_| false);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_lose_prefix_and_adapter_name() {
        let p = "base_model.model.model.layers.0.self_attn.q_proj";
        assert_eq!(
            normalize_key(&format!("{p}.lora_A.weight")),
            "model.layers.0.self_attn.q_proj.lora_A.weight"
        );
        assert_eq!(
            normalize_key(&format!("{p}.lora_B.default.weight")),
            "model.layers.0.self_attn.q_proj.lora_B.weight"
        );
        assert_eq!(
            normalize_key(&format!("{p}.lora_magnitude_vector.default.weight")),
            "model.layers.0.self_attn.q_proj.lora_magnitude_vector"
        );
        assert_eq!(
            normalize_key("base_model.model.lm_head.modules_to_save.default.weight"),
            "lm_head.weight"
        );
    }
}
