//! Saving and restoring the trained weights. [`ModelIo`] is the hook the loop calls for every
//! checkpoint, the final model and `resume_from_checkpoint`; [`HfModelIo`] is the full / freeze
//! implementation (an HF model folder: `model.safetensors` with HF names, sharded with an index
//! past 50 GB like `save_pretrained`, plus `config.json`, `generation_config.json` and the
//! tokenizer files copied from the source model). The LoRA implementation (PEFT folders through
//! `save_adapter` / `load_adapter`) plugs in here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lmf_autograd::DType;
use lmf_models::value_head::{is_value_head_param, VALUE_HEAD_FILE};
use lmf_models::{CausalLM, Weights};

use crate::template::pyjson::PyJson;
use crate::train::io::{copy_side_files, write_atomic, write_json};
use crate::{Error, Result};

/// How the trained weights of a run are written and read back.
pub trait ModelIo {
    /// Writes what the run trains (the whole model, or the adapter) into the existing `dir`.
    fn save(&self, model: &CausalLM, dir: &Path) -> Result<()>;
    /// Restores those weights from a folder written by [`ModelIo::save`] (resuming).
    fn load(&self, model: &mut CausalLM, dir: &Path) -> Result<()>;
}

/// Files copied next to the weights from the source model folder (those that exist).
pub const COPIED_FILES: [&str; 9] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
];

/// `save_pretrained`'s default `max_shard_size` (transformers 5.6: "50GB", decimal).
pub const MAX_SHARD_BYTES: usize = 50_000_000_000;

/// Full / freeze fine-tuning: the model is saved as an HF folder.
#[derive(Clone, Debug)]
pub struct HfModelIo {
    /// The folder the model was loaded from (config and tokenizer files are copied from it).
    pub source_dir: Option<PathBuf>,
    /// Shard size limit in bytes.
    pub max_shard_bytes: usize,
    /// The tokenizer's chat template (the run's template applied), written as
    /// `chat_template.jinja` ([`write_chat_template`]).
    pub chat_template: Option<String>,
}

impl HfModelIo {
    /// Saves like `save_pretrained`, copying side files from `source_dir`.
    pub fn new(source_dir: Option<PathBuf>) -> HfModelIo {
        HfModelIo {
            source_dir,
            max_shard_bytes: MAX_SHARD_BYTES,
            chat_template: None,
        }
    }
}

/// Writes `chat_template` (when there is one) as `dir/chat_template.jinja`, over the copy of
/// the source's: LLaMA-Factory saves the tokenizer with the chat template its `template`
/// gave it (the template's own Jinja when the base had none or the template replaces it), and
/// transformers 5's `save_pretrained` writes that file.
pub fn write_chat_template(dir: &Path, chat_template: Option<&str>) -> Result<()> {
    match chat_template {
        Some(t) => write_atomic(&dir.join("chat_template.jinja"), t.as_bytes()),
        None => Ok(()),
    }
}

impl ModelIo for HfModelIo {
    fn save(&self, model: &CausalLM, dir: &Path) -> Result<()> {
        save_weights(model, dir, self.max_shard_bytes)?;
        save_value_head(model, dir)?;
        match &self.source_dir {
            Some(src) => {
                copy_side_files(src, dir, &COPIED_FILES)?;
                write_chat_template(dir, self.chat_template.as_deref())?;
                if !src.join("generation_config.json").is_file() {
                    write_default_generation_config(&src.join("config.json"), dir)?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn load(&self, model: &mut CausalLM, dir: &Path) -> Result<()> {
        let w = Weights::from_dir(dir)?;
        model.load_hub_tensors(&w, is_value_head_param)?;
        load_value_head(model, dir)
    }
}

/// `save_pretrained` of a model whose folder had no `generation_config.json`: transformers
/// writes the one `GenerationConfig.from_model_config` derives from config.json (its token
/// ids, the eos as a list), sorted as `to_json_string` writes it.
fn write_default_generation_config(config_json: &Path, dir: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(config_json) else {
        return Ok(());
    };
    let Ok(cfg) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(());
    };
    let id = |v: &serde_json::Value| v.as_i64().map(|x| PyJson::Int(x as i128));
    let mut items = vec![("_from_model_config".to_string(), PyJson::Bool(true))];
    for key in ["bos_token_id", "pad_token_id"] {
        if let Some(v) = cfg.get(key).and_then(id) {
            items.push((key.to_string(), v));
        }
    }
    match cfg.get("eos_token_id") {
        Some(serde_json::Value::Array(a)) => {
            let ids = a.iter().filter_map(id).collect();
            items.push(("eos_token_id".into(), PyJson::List(ids)));
        }
        Some(v) => {
            if let Some(x) = id(v) {
                items.push(("eos_token_id".into(), PyJson::List(vec![x])));
            }
        }
        None => {}
    }
    items.push(("transformers_version".into(), PyJson::Str("5.6.0".into())));
    items.push(("use_cache".into(), PyJson::Bool(true)));
    write_json(
        &dir.join("generation_config.json"),
        &PyJson::Dict(items),
        2,
        true,
    )
}

/// Writes the model's value head (stages rm / ppo) as `dir/value_head.safetensors`, where
/// LLaMA-Factory keeps it next to the model or adapter; nothing for a plain LM.
pub fn save_value_head(model: &CausalLM, dir: &Path) -> Result<()> {
    match &model.value_head {
        Some(head) => Ok(head.save(dir)?),
        None => Ok(()),
    }
}

/// Restores the model's value head from `dir/value_head.safetensors` (resuming); a folder
/// without one is an error when the model has a head.
pub fn load_value_head(model: &mut CausalLM, dir: &Path) -> Result<()> {
    match &mut model.value_head {
        Some(head) => match head.read_from(dir)? {
            true => Ok(()),
            false => Err(Error::Msg(format!(
                "{}: no {VALUE_HEAD_FILE} to restore the value head from",
                dir.display()
            ))),
        },
        None => Ok(()),
    }
}

/// Little-endian bytes of a tensor in its own dtype, with the safetensors dtype.
pub fn tensor_bytes(t: &lmf_autograd::Tensor) -> Result<(safetensors::Dtype, Vec<u8>)> {
    Ok(match t.dtype() {
        DType::F32 => (
            safetensors::Dtype::F32,
            t.to_vec::<f32>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::F64 => (
            safetensors::Dtype::F64,
            t.to_vec::<f64>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::BF16 => (
            safetensors::Dtype::BF16,
            t.to_vec::<half::bf16>()?
                .iter()
                .flat_map(|v| v.to_bits().to_le_bytes())
                .collect(),
        ),
        DType::F16 => (
            safetensors::Dtype::F16,
            t.to_vec::<half::f16>()?
                .iter()
                .flat_map(|v| v.to_bits().to_le_bytes())
                .collect(),
        ),
        other => {
            return Err(Error::Msg(format!(
                "cannot save a {other} parameter to safetensors"
            )))
        }
    })
}

/// One tensor ready to serialise: name, shape, dtype, little-endian bytes.
pub type Entry = (String, Vec<usize>, safetensors::Dtype, Vec<u8>);

/// Writes every parameter of `model` into `dir` as `model.safetensors`, or as
/// `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json` past `max_shard` bytes.
pub fn save_weights(model: &CausalLM, dir: &Path, max_shard: usize) -> Result<()> {
    let mut entries = vec![];
    // MoE experts under the Hub's per-expert names, as transformers' save_pretrained
    for (name, t) in model.hub_tensors()? {
        if is_value_head_param(&name) {
            continue; // value_head.safetensors, see save_value_head
        }
        let (dt, bytes) = tensor_bytes(&t)?;
        entries.push((name, t.shape().to_vec(), dt, bytes));
    }
    save_entries(entries, dir, max_shard)
}

/// Writes `entries` in order into `dir` as `model.safetensors`, or as
/// `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json` past `max_shard`
/// bytes per shard (transformers' `save_pretrained` layout); each file atomically.
pub fn save_entries(entries: Vec<Entry>, dir: &Path, max_shard: usize) -> Result<()> {
    let mut shards: Vec<Vec<Entry>> = vec![vec![]];
    let mut size = 0usize;
    let mut total = 0usize;
    for (name, shape, dt, bytes) in entries {
        if size > 0 && size + bytes.len() > max_shard {
            shards.push(vec![]);
            size = 0;
        }
        size += bytes.len();
        total += bytes.len();
        if let Some(last) = shards.last_mut() {
            last.push((name, shape, dt, bytes));
        }
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
        };
        let views = shard
            .iter()
            .map(|(k, shape, dt, b)| {
                weight_map.insert(k.clone(), file.clone());
                safetensors::tensor::TensorView::new(*dt, shape.clone(), b).map(|v| (k.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Msg(format!("{file}: {e}")))?;
        let meta = Some([("format".to_string(), "pt".to_string())].into());
        let bytes = safetensors::tensor::serialize(views, meta)
            .map_err(|e| Error::Msg(format!("{file}: {e}")))?;
        write_atomic(&dir.join(&file), &bytes)?;
    }
    if n > 1 {
        let index = PyJson::Dict(vec![
            (
                "metadata".into(),
                PyJson::Dict(vec![("total_size".into(), PyJson::Int(total as i128))]),
            ),
            (
                "weight_map".into(),
                PyJson::Dict(
                    weight_map
                        .into_iter()
                        .map(|(k, v)| (k, PyJson::Str(v)))
                        .collect(),
                ),
            ),
        ]);
        write_json(&dir.join("model.safetensors.index.json"), &index, 2, true)?;
    }
    Ok(())
}
