//! `train_from_scratch`: LLaMA-Factory builds the model with `from_config` (random weights)
//! after `transformers.set_seed(seed)`, instead of reading the checkpoint's weights. lmf replays
//! transformers' initialisation with torch's generator ([`crate::optim::torch_init`]), so a
//! float32 config starts from the very weights LLaMA-Factory's run starts from. A bf16/fp16
//! `config.dtype` (transformers then draws in half precision, by another algorithm) starts from
//! the float32 replay rounded to that dtype: the same distributions, other values.

use std::path::{Path, PathBuf};

use lmf_models::{CausalLM, ModelConfig, Weights};
use lmf_runtime::{DType, Device};
use serde_json::Value;

use crate::optim::state_file::f32_bytes;
use crate::optim::torch_init::{hf_init_weights, HfInitConfig};
use crate::{Error, Result};

/// transformers' config defaults for the keys the init reads, per model type.
pub fn init_config(cfg: &Value) -> std::result::Result<HfInitConfig, String> {
    let model_type = cfg["model_type"].as_str().unwrap_or("").to_string();
    let int = |k: &str| -> std::result::Result<usize, String> {
        cfg[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| format!("config.json: `{k}` must be a positive integer"))
    };
    let (h, nh) = (int("hidden_size")?, int("num_attention_heads")?);
    let head_dim = match cfg["head_dim"].as_u64() {
        Some(d) => d as usize,
        None => match model_type.as_str() {
            "qwen3" => 128,
            "gemma" => 256,
            _ => h / nh.max(1),
        },
    };
    let pad_token_id = match &cfg["pad_token_id"] {
        Value::Null if model_type == "gemma" && cfg.get("pad_token_id").is_none() => Some(0),
        v => v.as_i64(),
    };
    Ok(HfInitConfig {
        vocab_size: int("vocab_size")?,
        hidden_size: h,
        intermediate_size: int("intermediate_size")?,
        num_hidden_layers: int("num_hidden_layers")?,
        num_attention_heads: nh,
        num_key_value_heads: cfg["num_key_value_heads"]
            .as_u64()
            .map_or(nh, |v| v as usize),
        head_dim,
        initializer_range: cfg["initializer_range"].as_f64().unwrap_or(0.02),
        pad_token_id,
        tie_word_embeddings: cfg["tie_word_embeddings"]
            .as_bool()
            .unwrap_or(model_type == "gemma"),
        attention_bias: cfg["attention_bias"].as_bool().unwrap_or(false),
        mlp_bias: cfg["mlp_bias"].as_bool().unwrap_or(false),
        // the replay is float32; a half-precision config is rounded afterwards
        dtype: None,
        model_type,
    })
}

/// The checkpoint's `config.dtype` (`torch_dtype` in older files), if it is a half dtype.
fn half_dtype(cfg: &Value) -> Option<DType> {
    let d = cfg
        .get("dtype")
        .or_else(|| cfg.get("torch_dtype"))?
        .as_str()?;
    match d {
        "bfloat16" => Some(DType::BF16),
        "float16" => Some(DType::F16),
        _ => None,
    }
}

/// A model of `dir`'s config with transformers' initial weights for `seed` (see the module
/// docs), in `dtype` on `device`.
pub fn from_scratch(dir: &Path, seed: u64, dtype: DType, device: Device) -> Result<CausalLM> {
    let path = dir.join("config.json");
    let fail = |e: String| Error::Msg(format!("train_from_scratch: {}: {e}", path.display()));
    let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
    let raw: Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let init = init_config(&raw).map_err(fail)?;
    let half = half_dtype(&raw);
    if let Some(h) = half {
        eprintln!(
            "note: train_from_scratch: config.dtype is {h:?}; transformers draws the initial \
             weights in it, lmf draws them in float32 (as transformers does for a float32 \
             config) and rounds them to {h:?}"
        );
    }
    let tensors = hf_init_weights(&init, seed).map_err(fail)?;
    // Hand the tensors to the ordinary loader through a safetensors file.
    let file = scratch_file(seed);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let values: Vec<f32> = match half {
                Some(DType::BF16) => values
                    .iter()
                    .map(|v| half::bf16::from_f32(*v).to_f32())
                    .collect(),
                Some(_) => values
                    .iter()
                    .map(|v| half::f16::from_f32(*v).to_f32())
                    .collect(),
                None => values,
            };
            (name, shape, f32_bytes(&values))
        })
        .collect();
    let views = data
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Msg(format!("train_from_scratch: {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, &file)
        .map_err(|e| Error::Msg(format!("{}: {e}", file.display())))?;
    let weights = Weights::from_files(std::slice::from_ref(&file));
    let model = weights
        .and_then(|w| CausalLM::from_weights(ModelConfig::from_dir(dir)?, &w, dtype, device, None));
    let _ = std::fs::remove_file(&file);
    Ok(model?)
}

fn scratch_file(seed: u64) -> PathBuf {
    std::env::temp_dir().join(format!(
        "lmf-scratch-init-{}-{seed}.safetensors",
        std::process::id()
    ))
}
