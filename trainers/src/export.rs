//! `lmf export`: LLaMA-Factory's `export_model`. Loads `model_name_or_path`, merges every
//! adapter of `adapter_name_or_path` into the weights, and writes an HF model folder to
//! `export_dir` (safetensors shards of at most `export_size` GB, `config.json` with the export
//! dtype, `generation_config.json` and the tokenizer files).
//!
//! Dtype: `infer_dtype` when given; `auto` keeps the checkpoint's dtype, except that an fp32
//! checkpoint is exported in the "best half precision" of the machine — LLaMA-Factory's
//! `infer_optim_dtype(bfloat16)`, which is fp32 on a machine without a CUDA/NPU device, as here.

use std::path::{Path, PathBuf};

use lmf_autograd::{DType, Device, Var};
use lmf_models::{CausalLM, Tokenizer};
use serde_json::Value;

use crate::args::model::InferDtype;
use crate::args::InferArgs;
use crate::train::export::save_weights;
use crate::train::io::{copy_side_files, write_atomic};
use crate::tuner::setup_lora;
use crate::{Error, Result};

/// Files copied from the source model folder next to the weights (those that exist).
const SIDE_FILES: [&str; 7] = [
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "merges.txt",
];

/// The dtype name transformers writes into `config.json`.
fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    }
}

/// The checkpoint's dtype from `config.json` (`dtype` in transformers 5, `torch_dtype` before).
fn config_dtype(config: &Value) -> DType {
    let name = config
        .get("dtype")
        .or_else(|| config.get("torch_dtype"))
        .and_then(Value::as_str)
        .unwrap_or("float32");
    match name {
        "bfloat16" => DType::BF16,
        "float16" => DType::F16,
        _ => DType::F32,
    }
}

/// Runs `lmf export` with already parsed arguments; returns the export folder.
pub fn export_model(args: &InferArgs) -> Result<PathBuf> {
    let m = &args.model;
    let export_dir = m
        .export_dir
        .as_deref()
        .ok_or_else(|| Error::Msg("Please specify `export_dir` to save model.".into()))?;
    if m.export_size <= 0 {
        return Err(Error::Msg(format!(
            "export_size must be a positive number of GB, got {}",
            m.export_size
        )));
    }
    let name = m
        .model_name_or_path
        .as_deref()
        .ok_or_else(|| Error::Msg("`model_name_or_path` is required".into()))?;
    // LF's `export_model` gets the template (`get_template_and_fix_tokenizer`) and fails on an
    // unknown one; lmf checks the name, and a `template_file`, before anything loads.
    crate::template::select_template(args.data.template.as_deref(), &args.data.template_options())?;
    let src = m.resolve_dir(name)?;
    let config_path = src.join("config.json");
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(&config_path)
            .map_err(|e| Error::Msg(format!("{}: {e}", config_path.display())))?,
    )
    .map_err(|e| Error::Msg(format!("{}: {e}", config_path.display())))?;
    // The tokenizer must load (LF loads it first, fixes it with the template and saves it
    // with the model: its chat template becomes `chat_template.jinja`).
    let mut tokenizer = Tokenizer::from_dir(&src)?;
    crate::template::Template::for_tokenizer(
        args.data.template.as_deref(),
        &mut tokenizer,
        &args.data.template_options(),
    )?;
    let chat_template = tokenizer.chat_template().map(str::to_string);
    // LF's `export_model`: an adapter cannot be merged into a quantized base, whether it is
    // quantized on the fly (`quantization_bit`) or saved quantized (config.json's
    // `quantization_config`); without an adapter LF writes the quantized model, which lmf
    // does not write yet. Decided before any weight loads.
    if m.quantization_bit.is_some()
        || lmf_models::quantize::checkpoint_quantization(&src)?.is_some()
    {
        return Err(Error::Msg(if m.adapter_name_or_path.is_some() {
            "Cannot merge adapters to a quantized model.".into()
        } else {
            format!(
                "{}: exporting a quantized model is not supported yet: export the unquantized \
                 checkpoint without `quantization_bit`",
                src.display()
            )
        }));
    }
    if let Some(bits) = m.export_quantization_bit {
        crate::export_gptq::check_args(m, bits)?;
    }
    let mut model = CausalLM::load(&src, DType::F32, Device::Cpu)?;
    if let Some(bits) = m.export_quantization_bit {
        // LF 0.9.5 writes the GPTQ model's other tensors in the dtype it loaded (the
        // checkpoint's), whatever `infer_dtype` says, and leaves config.json's dtype.
        let out = PathBuf::from(export_dir);
        std::fs::create_dir_all(&out).map_err(|e| Error::Msg(format!("{}: {e}", out.display())))?;
        let dtype = config_dtype(&config);
        let qc = crate::export_gptq::export_gptq(m, bits, &src, &mut model, &out, dtype)?;
        if let Some(obj) = config.as_object_mut() {
            obj.insert("quantization_config".into(), qc);
        }
        return finish_export(args, &config, &src, out, chat_template.as_deref());
    }
    let was_tied = model.lm_head.is_none();
    setup_lora(&mut model, m, &args.finetuning, false, 0)?;
    let dtype = match m.infer_dtype {
        InferDtype::Auto => config_dtype(&config),
        InferDtype::Float16 => DType::F16,
        InferDtype::Bfloat16 => DType::BF16,
        InferDtype::Float32 => DType::F32,
    };
    for (_, v) in model.named_parameters_mut() {
        *v = Var::leaf(v.tensor().to_dtype(dtype)?, false);
    }
    let out = PathBuf::from(export_dir);
    std::fs::create_dir_all(&out).map_err(|e| Error::Msg(format!("{}: {e}", out.display())))?;
    // transformers reads "5GB" as 5 · 10⁹ bytes.
    save_weights(&model, &out, m.export_size as usize * 1_000_000_000)?;
    if let Some(obj) = config.as_object_mut() {
        set_config_dtype(obj, dtype);
        // an adapter on a tied embedding / head (or a saved copy of the head) leaves two
        // different matrices: the exported model keeps both
        if was_tied && model.lm_head.is_some() {
            obj.insert("tie_word_embeddings".into(), Value::Bool(false));
        }
    }
    finish_export(args, &config, &src, out, chat_template.as_deref())
}

/// Sets the checkpoint dtype in `config.json` (`dtype`, or `torch_dtype` when the source
/// config uses only that older key).
fn set_config_dtype(obj: &mut serde_json::Map<String, Value>, dtype: DType) {
    let key = if obj.contains_key("torch_dtype") && !obj.contains_key("dtype") {
        "torch_dtype"
    } else {
        "dtype"
    };
    obj.insert(key.into(), Value::from(dtype_name(dtype)));
}

/// Writes `config.json`, the side files and the tokenizer's chat template next to the weights
/// already in `out`.
fn finish_export(
    args: &InferArgs,
    config: &Value,
    src: &Path,
    out: PathBuf,
    chat_template: Option<&str>,
) -> Result<PathBuf> {
    let text = serde_json::to_string_pretty(config)
        .map_err(|e| Error::Msg(format!("config.json: {e}")))?;
    write_atomic(&out.join("config.json"), (text + "\n").as_bytes())?;
    copy_side_files(src, &out, &SIDE_FILES)?;
    crate::train::export::write_chat_template(&out, chat_template)?;
    if args.finetuning.stage == crate::args::finetuning::Stage::Rm {
        copy_value_head(args, src, &out)?;
    }
    Ok(out)
}

/// `stage: rm` exports keep the reward model's head: LF copies `value_head.safetensors` from
/// the last adapter folder (else the model folder) into `export_dir` when there is one.
fn copy_value_head(args: &InferArgs, src: &Path, out: &Path) -> Result<()> {
    let from = match args.model.adapters().last() {
        Some(a) => crate::tuner::adapter_dir(&args.model, a)?,
        None => src.to_path_buf(),
    };
    let file = from.join(lmf_models::value_head::VALUE_HEAD_FILE);
    if file.is_file() {
        let bytes =
            std::fs::read(&file).map_err(|e| Error::Msg(format!("{}: {e}", file.display())))?;
        write_atomic(&out.join(lmf_models::value_head::VALUE_HEAD_FILE), &bytes)?;
        eprintln!("note: copied the value head to {}", out.display());
    }
    Ok(())
}
