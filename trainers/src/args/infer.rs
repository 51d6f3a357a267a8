//! The arguments of `lmf chat` / `lmf api`, read as LLaMA-Factory's `get_infer_args` reads them:
//! model, data, finetuning and generating groups (no training arguments), then its checks.

use std::collections::HashSet;

use serde_json::Value;

use super::closest::closest;
use super::data::DataArguments;
use super::error::{ArgsError, Result};
use super::finetuning::{FinetuningArguments, FinetuningType};
use super::generating::GeneratingArguments;
use super::model::{EngineName, ExportDevice, ModelArguments};
use super::raw::{parse_raw, RawArgs};
use super::spec::{FieldSpec, Resolver};

/// Everything `lmf chat` / `lmf api` are configured by (LLaMA-Factory's `_INFER_ARGS`).
#[derive(Debug, Clone, PartialEq)]
pub struct InferArgs {
    /// Model, adapters, dtype, engine.
    pub model: ModelArguments,
    /// Template, system prompt, thinking mode, tool format.
    pub data: DataArguments,
    /// Fine-tuning method (decides how adapters apply).
    pub finetuning: FinetuningArguments,
    /// Decoding settings.
    pub generating: GeneratingArguments,
    /// Things to tell the user that are not errors (ignored settings, ignored extra keys).
    pub notes: Vec<String>,
}

/// Reads `lmf chat` / `lmf api` arguments from the words after the subcommand. Unknown keys are
/// errors unless the environment sets `ALLOW_EXTRA_ARGS` (as in LLaMA-Factory).
pub fn parse_infer_args(argv: &[String]) -> Result<InferArgs> {
    let raw = parse_raw(argv)?;
    InferArgs::from_raw(&raw, env_enabled("ALLOW_EXTRA_ARGS"))
}

/// LLaMA-Factory's `is_env_enabled`: `true`, `y` or `1`, any case.
pub fn env_enabled(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "y" | "1"))
        .unwrap_or(false)
}

/// The field tables of the four inference groups, in LLaMA-Factory's order.
pub fn infer_fields() -> Vec<FieldSpec> {
    let mut fields = ModelArguments::fields();
    fields.extend(DataArguments::fields());
    fields.extend(FinetuningArguments::fields());
    fields.extend(GeneratingArguments::fields());
    fields
}

/// Fails on the first key that no field (nor a field's `no_` flag) knows, naming the closest
/// known key; with `allow_extra_keys`, such keys become notes instead.
pub(crate) fn check_unknown_keys(
    raw: &RawArgs,
    fields: &[FieldSpec],
    allow_extra_keys: bool,
    notes: &mut Vec<String>,
) -> Result<()> {
    let mut known: HashSet<String> = fields.iter().map(|f| f.name.to_string()).collect();
    known.extend(
        fields
            .iter()
            .filter(|f| f.no_flag)
            .map(|f| format!("no_{}", f.name)),
    );
    for entry in raw.iter().filter(|e| !known.contains(&e.key)) {
        if allow_extra_keys {
            notes.push(format!(
                "ignored unknown argument `{}` (in {})",
                entry.key, entry.origin
            ));
            continue;
        }
        return Err(ArgsError::UnknownKey {
            key: entry.key.clone(),
            origin: entry.origin.clone(),
            closest: closest(&entry.key, fields.iter().map(|f| f.name)),
        });
    }
    Ok(())
}

impl InferArgs {
    /// Types, checks and post-processes raw arguments as `get_infer_args` does.
    pub fn from_raw(raw: &RawArgs, allow_extra_keys: bool) -> Result<Self> {
        let mut notes = Vec::new();
        check_unknown_keys(raw, &infer_fields(), allow_extra_keys, &mut notes)?;
        let mut resolver = Resolver::new(raw);
        let mut model = ModelArguments::from_resolver(&mut resolver)?;
        let mut data = DataArguments::from_resolver(&mut resolver)?;
        let mut finetuning = FinetuningArguments::from_resolver(&mut resolver)?;
        let generating = GeneratingArguments::from_resolver(&mut resolver)?;
        notes.extend(resolver.notes);
        super::ranges::check_common(raw, &data, &finetuning, &generating)?;
        model.post_init()?;
        data.post_init()?;
        finetuning.post_init()?;

        if model.infer_backend != EngineName::Huggingface {
            let origin = raw.get("infer_backend").map(|e| e.origin.clone());
            return Err(ArgsError::BadValue {
                key: "infer_backend".into(),
                origin: origin.unwrap_or(super::error::Origin::CommandLine),
                value: format!("{:?}", model.infer_backend.as_str()),
                expected: "huggingface (lmf is its own inference engine)".into(),
            });
        }
        verify_model_args(&model, &finetuning)?;

        // Post-processing of get_infer_args: where the model goes, and the export length.
        if model.export_dir.is_some() && model.export_device == ExportDevice::Cpu {
            model.device_map = Some(serde_json::json!({"": "cpu"}));
            if data.cutoff_len != DataArguments::default().cutoff_len {
                model.model_max_length = Some(data.cutoff_len);
            }
        } else {
            model.device_map = Some(Value::String("auto".into()));
        }
        Ok(Self {
            model,
            data,
            finetuning,
            generating,
            notes,
        })
    }
}

/// LLaMA-Factory's `_verify_model_args`: adapters need LoRA; quantized models take LoRA/OFT,
/// one adapter, no vocabulary resize, no new adapter, no in-place PiSSA.
pub(crate) fn verify_model_args(
    model: &ModelArguments,
    finetuning: &FinetuningArguments,
) -> Result<()> {
    let lora = finetuning.finetuning_type == FinetuningType::Lora;
    if model.adapter_name_or_path.is_some() && !lora {
        return Err(ArgsError::Invalid(format!(
            "`adapter_name_or_path` is only valid with `finetuning_type: lora` (got {})",
            finetuning.finetuning_type
        )));
    }
    if model.quantization_bit.is_some() {
        let msg = if !lora && finetuning.finetuning_type != FinetuningType::Oft {
            Some("Quantization is only compatible with the LoRA or OFT method.")
        } else if finetuning.pissa_init {
            Some("Please use scripts/pissa_init.py to initialize PiSSA for a quantized model.")
        } else if model.resize_vocab {
            Some("Cannot resize embedding layers of a quantized model.")
        } else if model.adapter_name_or_path.is_some() && finetuning.create_new_adapter {
            Some("Cannot create new adapter upon a quantized model.")
        } else if model.adapters().len() > 1 {
            Some("Quantized model only accepts a single adapter. Merge them first.")
        } else {
            None
        };
        if let Some(msg) = msg {
            return Err(ArgsError::Invalid(msg.into()));
        }
    }
    Ok(())
}
