//! LLaMA Pro block expansion (`lmf llama-pro`), LLaMA-Factory's `scripts/llama_pro.py`: a
//! model of `n` decoder layers becomes one of `n + e`, where after every `n / e`-th layer a
//! copy of it is inserted whose `o_proj` and `down_proj` tensors are zero, so the new block
//! adds nothing to the residual stream and the expanded model computes what the original did.
//! Train it with `finetuning_type: freeze`, `freeze_trainable_layers: e`, `use_llama_pro:
//! true`: only the inserted blocks train (see [`crate::train::freeze::llama_pro_layer_ids`]).
//!
//! Tensors are copied as stored (dtype and bytes); config.json gets the new
//! `num_hidden_layers`; the tokenizer files are copied; the weights are written as
//! `save_pretrained` shards them.

use crate::train::export::{save_entries, Entry};
use crate::train::io::{copy_side_files, write_atomic};
use crate::{Error, Result};
use lmf_models::Weights;
use serde_json::Value;
use std::path::Path;

/// The tokenizer files `llama_pro.py` re-saves with the tokenizer.
const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
];

/// Where each layer of the expanded model comes from: `(source layer, zero its o_proj /
/// down_proj)` for the `n + e` new layers, in order.
pub fn expansion_plan(num_layers: usize, num_expand: usize) -> Result<Vec<(usize, bool)>> {
    if num_expand == 0 || !num_layers.is_multiple_of(num_expand) {
        return Err(Error::Msg(format!(
            "`num_layers` {num_layers} should be divisible by `num_expand` {num_expand}."
        )));
    }
    let split = num_layers / num_expand;
    let mut plan = vec![];
    for i in 0..num_layers {
        plan.push((i, false));
        if (i + 1).is_multiple_of(split) {
            plan.push((i, true));
        }
    }
    Ok(plan)
}

/// transformers' `convert_file_size_to_int`: `"5GB"` = 5·10⁹ bytes, `"5GiB"` = 5·2³⁰, also KB,
/// MB, KiB, MiB, or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim();
    let units: [(&str, f64); 6] = [
        ("GIB", 1073741824.0),
        ("MIB", 1048576.0),
        ("KIB", 1024.0),
        ("GB", 1e9),
        ("MB", 1e6),
        ("KB", 1e3),
    ];
    let up = t.to_ascii_uppercase();
    for (u, f) in units {
        if let Some(num) = up.strip_suffix(u) {
            if let Ok(v) = num.trim().parse::<f64>() {
                // transformers: int(value) * unit (with a shave off for the decimal units'
                // "b" suffix: `int(size[:-2]) * 10**9`)
                return Ok((v * f) as usize);
            }
        }
    }
    t.parse::<usize>().map_err(|_| {
        Error::Msg(format!(
            "shard_size `{s}` is not a size such as 5GB, 500MB or 2GiB"
        ))
    })
}

/// Expands `model_dir` into `output_dir` with `num_expand` new blocks (see the module header).
pub fn expand(model_dir: &Path, output_dir: &Path, num_expand: usize, shard: usize) -> Result<()> {
    let cfg_path = model_dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| Error::Msg(format!("{}: {e}", cfg_path.display())))?;
    let mut config: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Msg(format!("{}: {e}", cfg_path.display())))?;
    let n = config
        .get("num_hidden_layers")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            Error::Msg(format!(
                "{}: no integer `num_hidden_layers`",
                cfg_path.display()
            ))
        })? as usize;
    let plan = expansion_plan(n, num_expand)?;
    let w = Weights::from_dir(model_dir)?;
    let names: Vec<String> = w.names().map(str::to_string).collect();
    // tensors of layer i: `….layers.{i}.…` (llama_pro.py matches `.{i}.` in the name)
    let layer_of = |name: &str| -> Option<(usize, String, String)> {
        let at = name.find(".layers.")? + ".layers.".len();
        let rest = &name[at..];
        let dot = rest.find('.')?;
        let i = rest[..dot].parse::<usize>().ok()?;
        Some((i, name[..at].to_string(), rest[dot..].to_string()))
    };
    let mut entries: Vec<Entry> = vec![];
    for (new, &(src, zero)) in plan.iter().enumerate() {
        for name in &names {
            let Some((i, head, tail)) = layer_of(name) else {
                continue;
            };
            if i != src {
                continue;
            }
            let (dtype, shape, bytes) = w.raw(name)?;
            let zeroed = zero && (tail.contains("o_proj") || tail.contains("down_proj"));
            let data = if zeroed {
                vec![0u8; bytes.len()]
            } else {
                bytes.to_vec()
            };
            entries.push((format!("{head}{new}{tail}"), shape, dtype, data));
        }
        eprintln!(
            "Add layer {new} {} from layer {src}.",
            if zero { "expanded" } else { "copied" }
        );
    }
    for name in &names {
        if layer_of(name).is_none() {
            let (dtype, shape, bytes) = w.raw(name)?;
            entries.push((name.clone(), shape, dtype, bytes.to_vec()));
        }
    }
    std::fs::create_dir_all(output_dir)
        .map_err(|e| Error::Msg(format!("{}: {e}", output_dir.display())))?;
    config["num_hidden_layers"] = Value::from(n + num_expand);
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::Msg(format!("config.json: {e}")))?;
    write_atomic(
        &output_dir.join("config.json"),
        format!("{text}\n").as_bytes(),
    )?;
    copy_side_files(model_dir, output_dir, &TOKENIZER_FILES)?;
    save_entries(entries, output_dir, shard)?;
    eprintln!("- Fine-tune this model with:");
    eprintln!("model_name_or_path: {}", output_dir.display());
    eprintln!("finetuning_type: freeze");
    eprintln!("freeze_trainable_layers: {num_expand}");
    eprintln!("use_llama_pro: true");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_inserts_a_zeroed_copy_after_every_split() {
        assert_eq!(
            expansion_plan(4, 2).unwrap(),
            vec![
                (0, false),
                (1, false),
                (1, true),
                (2, false),
                (3, false),
                (3, true)
            ]
        );
        assert_eq!(
            expansion_plan(2, 2).unwrap(),
            vec![(0, false), (0, true), (1, false), (1, true)]
        );
        let e = expansion_plan(5, 2).unwrap_err().to_string();
        assert!(
            e.contains("`num_layers` 5 should be divisible by `num_expand` 2."),
            "{e}"
        );
    }

    #[test]
    fn sizes_as_transformers_reads_them() {
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert!(parse_size("lots").is_err());
    }
}
