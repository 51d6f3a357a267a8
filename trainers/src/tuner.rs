//! LoRA set-up as LLaMA-Factory's `_setup_lora_tuning` does it, and the [`ModelIo`] that saves
//! and restores the adapter as a PEFT folder.
//!
//! With `adapter_name_or_path`: when training (and not `create_new_adapter`) every adapter but
//! the last is merged into the weights and the last is resumed trainable; otherwise (chat,
//! export, or `create_new_adapter`) all of them are merged. A trainable run with no adapter to
//! resume gets a new one from the LoRA arguments (`lora_target: all` = every linear but the
//! output head; `additional_target` = PEFT `modules_to_save`).

use std::path::{Path, PathBuf};

use lmf_models::adapter::{LoraConfig, LoraInit};
use lmf_models::CausalLM;

use crate::args::finetuning::FinetuningArguments;
use crate::args::model::ModelArguments;
use crate::train::export::{load_value_head, save_value_head, write_chat_template, ModelIo};
use crate::train::io::copy_side_files;
use crate::{Error, Result};

/// Tokenizer files saved next to an adapter (what LLaMA-Factory's trainer writes there).
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// Resolves an adapter path: a local folder as given (PEFT folders are local here).
pub(crate) fn adapter_dir(m: &ModelArguments, name: &str) -> Result<PathBuf> {
    let mut dir = PathBuf::from(name);
    if let Some(sub) = &m.adapter_folder {
        dir = dir.join(sub);
    }
    if !dir.is_dir() {
        return Err(Error::Msg(format!(
            "adapter_name_or_path: `{}` is not a folder (adapters are loaded from local PEFT folders)",
            dir.display()
        )));
    }
    Ok(dir)
}

/// LLaMA-Factory's `find_expanded_modules` (`use_llama_pro` with LoRA): the full names of
/// the decoder linears that contain one of `targets` and lie in one of LLaMA Pro's trainable
/// layers ([`llama_pro_layer_ids`]), in module order.
fn expanded_modules(model: &CausalLM, targets: &[String], trainable: i64) -> Result<Vec<String>> {
    let n = model.layers.len() as i64;
    let ids = crate::train::freeze::llama_pro_layer_ids(n, trainable)?;
    let layer_tags: Vec<String> = ids.iter().map(|i| format!(".{i}.")).collect();
    let mut names = vec![];
    for l in &model.layers {
        for leaf in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            let name = format!("model.layers.{}.{leaf}", l.index);
            if targets.iter().any(|t| name.contains(t.as_str()))
                && layer_tags.iter().any(|t| name.contains(t.as_str()))
            {
                names.push(name);
            }
        }
    }
    eprintln!(
        "Apply lora to layers: {}.",
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    );
    Ok(names)
}

/// The LoRA config of a new adapter from the finetuning arguments.
pub fn new_lora_config(model: &CausalLM, f: &FinetuningArguments) -> Result<LoraConfig> {
    let target_modules = if f.lora_target.len() == 1 && f.lora_target[0] == "all" {
        model.all_linear_modules()
    } else {
        f.lora_target.clone()
    };
    // One entry that is not a module name (`.*\.(q_proj|v_proj)`): PEFT's regex form, full-
    // matched against module names. LLaMA-Factory always hands PEFT a list, so there such an
    // entry matches nothing ("Target modules {...} not found in the base model"); lmf passes
    // it on as the regex it is (and writes it so in adapter_config.json).
    let target_regex = match target_modules.as_slice() {
        [one]
            if one
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "._-".contains(c))) =>
        {
            lmf_models::adapter::full_match_regex(one)
                .map_err(|e| Error::Msg(format!("lora_target: {e}")))?;
            if f.use_llama_pro {
                return Err(Error::Msg(
                    "lora_target: a regular expression cannot be combined with `use_llama_pro`"
                        .into(),
                ));
            }
            Some(one.clone())
        }
        _ => None,
    };
    let target_modules = if f.use_llama_pro {
        expanded_modules(model, &target_modules, f.freeze_trainable_layers)?
    } else if target_regex.is_some() {
        vec![]
    } else {
        target_modules
    };
    let r = usize::try_from(f.lora_rank)
        .ok()
        .filter(|r| *r > 0)
        .ok_or_else(|| Error::Msg(format!("lora_rank must be positive, got {}", f.lora_rank)))?;
    Ok(LoraConfig {
        r,
        lora_alpha: f.lora_alpha.unwrap_or(2 * f.lora_rank) as f64,
        lora_dropout: f.lora_dropout,
        target_modules,
        target_regex,
        use_rslora: f.use_rslora,
        use_dora: f.use_dora,
        init: if f.pissa_init {
            LoraInit::Pissa {
                niter: f.pissa_iter,
            }
        } else {
            LoraInit::Default
        },
        modules_to_save: f.additional_target.clone().unwrap_or_default(),
    })
}

/// LLaMA-Factory's `_setup_lora_tuning` on a loaded model. Returns the config of the adapter
/// that trains (`None` when nothing does, e.g. inference with every adapter merged).
pub fn setup_lora(
    model: &mut CausalLM,
    m: &ModelArguments,
    f: &FinetuningArguments,
    is_trainable: bool,
    seed: u64,
) -> Result<Option<LoraConfig>> {
    let adapters = m.adapters();
    // LLaMA-Factory's `init_adapter`: a quantized model is not mergeable, so its (single)
    // adapter stays attached, also at inference.
    let mergeable = !model.is_quantized();
    let (to_merge, to_resume) = match adapters.split_last() {
        Some((last, rest)) if (is_trainable && !f.create_new_adapter) || !mergeable => {
            (rest, Some(last))
        }
        _ => (adapters, None),
    };
    for name in to_merge {
        model.load_adapter(&adapter_dir(m, name)?, false)?;
        model.merge_adapter()?;
    }
    if let Some(name) = to_resume {
        return Ok(Some(
            model.load_adapter(&adapter_dir(m, name)?, is_trainable)?,
        ));
    }
    if !is_trainable {
        return Ok(None);
    }
    let cfg = new_lora_config(model, f)?;
    model.add_lora(&cfg, seed)?;
    Ok(Some(cfg))
}

/// Saves the adapter as a PEFT folder (plus the tokenizer files of the source model) and
/// restores it when resuming.
#[derive(Clone, Debug)]
pub struct LoraModelIo {
    /// The adapter's config (written as `adapter_config.json`).
    pub config: LoraConfig,
    /// `base_model_name_or_path` written into the config.
    pub base_model: String,
    /// Folder the base model (and its tokenizer) came from.
    pub source_dir: Option<PathBuf>,
    /// The tokenizer's chat template, written as `chat_template.jinja`
    /// (`train::export::write_chat_template`).
    pub chat_template: Option<String>,
}

impl ModelIo for LoraModelIo {
    fn save(&self, model: &CausalLM, dir: &Path) -> Result<()> {
        model.save_adapter(dir, &self.config, &self.base_model)?;
        save_value_head(model, dir)?;
        match &self.source_dir {
            Some(src) => {
                copy_side_files(src, dir, &TOKENIZER_FILES)?;
                write_chat_template(dir, self.chat_template.as_deref())
            }
            None => Ok(()),
        }
    }

    fn load(&self, model: &mut CausalLM, dir: &Path) -> Result<()> {
        model.load_adapter(dir, true)?;
        load_value_head(model, dir)
    }
}
