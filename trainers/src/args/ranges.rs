//! Range checks of numeric arguments, made right after parsing: a value no run can use
//! (`cutoff_len: -5`, `per_device_train_batch_size: 0`, `lora_dropout: 1.5`) fails naming its
//! key and where it was given, instead of surfacing later as a confusing error about a row or a
//! tensor. The bounds are the ones transformers, PyTorch and LLaMA-Factory enforce themselves
//! (or that no run can get past), so a YAML the reference runs is never refused here.

use std::fmt::Display;

use super::data::DataArguments;
use super::error::{ArgsError, Result};
use super::finetuning::FinetuningArguments;
use super::generating::GeneratingArguments;
use super::raw::RawArgs;
use super::training::TrainingArguments;

/// One rule: `ok` or a `BadValue` error naming `key`, its origin, `value` and `expected`.
fn ensure(raw: &RawArgs, key: &str, ok: bool, value: impl Display, expected: &str) -> Result<()> {
    if ok {
        return Ok(());
    }
    match raw.get(key) {
        Some(entry) => Err(ArgsError::BadValue {
            key: key.to_string(),
            origin: entry.origin.clone(),
            value: value.to_string(),
            expected: expected.to_string(),
        }),
        // Not given: a derived value out of range (the defaults are all in range).
        None => Err(ArgsError::Invalid(format!(
            "`{key}` = {value} (derived from other arguments) is not {expected}"
        ))),
    }
}

const POSITIVE_INT: &str = "a positive integer";

/// The data and adapter arguments that `lmf train`, `lmf chat` and `lmf export` share.
pub fn check_common(
    raw: &RawArgs,
    data: &DataArguments,
    finetuning: &FinetuningArguments,
    generating: &GeneratingArguments,
) -> Result<()> {
    ensure(
        raw,
        "cutoff_len",
        data.cutoff_len >= 1,
        data.cutoff_len,
        "a positive integer (the most tokens an example keeps)",
    )?;
    if let Some(n) = data.max_samples {
        ensure(raw, "max_samples", n >= 1, n, POSITIVE_INT)?;
    }
    ensure(
        raw,
        "val_size",
        data.val_size >= 0.0,
        data.val_size,
        "≥ 0 (a fraction below 1, or a number of rows)",
    )?;
    ensure(
        raw,
        "preprocessing_batch_size",
        data.preprocessing_batch_size >= 1,
        data.preprocessing_batch_size,
        POSITIVE_INT,
    )?;
    ensure(
        raw,
        "lora_rank",
        finetuning.lora_rank >= 1,
        finetuning.lora_rank,
        POSITIVE_INT,
    )?;
    if let Some(alpha) = finetuning.lora_alpha {
        ensure(raw, "lora_alpha", alpha >= 1, alpha, POSITIVE_INT)?;
    }
    ensure(
        raw,
        "lora_dropout",
        (0.0..1.0).contains(&finetuning.lora_dropout),
        finetuning.lora_dropout,
        "in [0, 1)",
    )?;
    if let Some(ratio) = finetuning.loraplus_lr_ratio {
        ensure(raw, "loraplus_lr_ratio", ratio > 0.0, ratio, "> 0")?;
    }
    // transformers' logits processors refuse these (temperature 0 means greedy in LF).
    ensure(
        raw,
        "temperature",
        generating.temperature >= 0.0,
        generating.temperature,
        "≥ 0 (0 = greedy)",
    )?;
    ensure(
        raw,
        "top_p",
        (0.0..=1.0).contains(&generating.top_p),
        generating.top_p,
        "in [0, 1]",
    )?;
    ensure(
        raw,
        "top_k",
        generating.top_k >= 0,
        generating.top_k,
        "≥ 0 (0 = no top-k)",
    )?;
    ensure(
        raw,
        "repetition_penalty",
        generating.repetition_penalty > 0.0,
        generating.repetition_penalty,
        "> 0 (1 = no penalty)",
    )
}

/// The training arguments of `lmf train` (HF `TrainingArguments` and `torch.optim.AdamW`'s
/// own checks).
pub fn check_training(raw: &RawArgs, t: &TrainingArguments) -> Result<()> {
    for (key, value) in [
        ("per_device_train_batch_size", t.per_device_train_batch_size),
        ("per_device_eval_batch_size", t.per_device_eval_batch_size),
        ("gradient_accumulation_steps", t.gradient_accumulation_steps),
    ] {
        ensure(raw, key, value >= 1, value, POSITIVE_INT)?;
    }
    for (key, value) in [
        ("learning_rate", t.learning_rate),
        ("num_train_epochs", t.num_train_epochs),
        ("warmup_steps", t.warmup_steps),
        ("weight_decay", t.weight_decay),
        ("adam_epsilon", t.adam_epsilon),
    ] {
        ensure(raw, key, value >= 0.0, value, "≥ 0")?;
    }
    for (key, value) in [("adam_beta1", t.adam_beta1), ("adam_beta2", t.adam_beta2)] {
        ensure(raw, key, (0.0..1.0).contains(&value), value, "in [0, 1)")?;
    }
    if let Some(ratio) = t.warmup_ratio {
        ensure(
            raw,
            "warmup_ratio",
            (0.0..=1.0).contains(&ratio),
            ratio,
            "in [0, 1]",
        )?;
    }
    let steps = "> 0 (a number of steps, or a fraction of the total below 1)";
    ensure(
        raw,
        "logging_steps",
        t.logging_steps > 0.0,
        t.logging_steps,
        steps,
    )?;
    ensure(raw, "save_steps", t.save_steps > 0.0, t.save_steps, steps)?;
    if let Some(n) = t.eval_steps {
        ensure(raw, "eval_steps", n > 0.0, n, steps)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::args::{parse_infer_args, parse_train_args};

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let base = ["model_name_or_path=m", "output_dir=/nonexistent/lmf-ranges"];
        for (arg, key) in [
            ("cutoff_len=-5", "cutoff_len"),
            ("cutoff_len=0", "cutoff_len"),
            (
                "per_device_train_batch_size=0",
                "per_device_train_batch_size",
            ),
            (
                "gradient_accumulation_steps=-1",
                "gradient_accumulation_steps",
            ),
            ("learning_rate=-1e-4", "learning_rate"),
            ("lora_rank=0", "lora_rank"),
            ("lora_dropout=1.5", "lora_dropout"),
            ("warmup_ratio=2", "warmup_ratio"),
            ("logging_steps=0", "logging_steps"),
            ("max_samples=0", "max_samples"),
            ("val_size=-0.1", "val_size"),
            ("top_p=1.5", "top_p"),
        ] {
            let mut argv = words(&base);
            argv.push(arg.to_string());
            let e = parse_train_args(&argv).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("bad value for `{key}` (in command line): ")),
                "{arg}: {e}"
            );
        }
        let e = parse_infer_args(&words(&["model_name_or_path=m", "cutoff_len=-5"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`cutoff_len`") && e.contains("-5"), "{e}");
        // The edges themselves are fine.
        let mut argv = words(&base);
        argv.extend(words(&[
            "cutoff_len=1",
            "learning_rate=0",
            "warmup_ratio=1",
            "temperature=0",
            "top_k=0",
            "lora_dropout=0",
        ]));
        parse_train_args(&argv).unwrap();
    }
}
