//! `quantization_bit: 4` with `quantization_method: mxfp4` through the `lmf` binary on the tiny
//! GPT-OSS with MXFP4 experts of `tests/fixtures/hf/models`: the experts stay 4-bit (frozen,
//! dequant-matmul) while LoRA trains the attention linears. The losses follow the run on the
//! dequantized experts (the same weights), full fine-tuning is refused, and so is a
//! checkpoint without MXFP4 experts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `lmf train` of the GPT-OSS LoRA example on `model` (3 steps) with `extra` overrides.
fn train(model: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec![
        "train".into(),
        "examples/train_lora/gpt_oss_lora_sft.yaml".into(),
        format!(
            "model_name_or_path={}",
            root()
                .join("tests/fixtures/hf/models")
                .join(model)
                .display()
        ),
        format!("output_dir={}", out.display()),
        "cutoff_len=128".into(),
        "max_samples=8".into(),
        "max_steps=3".into(),
        "gradient_accumulation_steps=1".into(),
        "logging_steps=1".into(),
        "learning_rate=1.0e-2".into(),
        "use_cpu=true".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    common::lmf_in_root(&args, None)
}

fn losses(out: &Path) -> Vec<f64> {
    common::read_jsonl(&out.join("trainer_log.jsonl"))
        .iter()
        .filter_map(|v| v["loss"].as_f64())
        .collect()
}

const KEEP: [&str; 2] = ["quantization_bit=4", "quantization_method=mxfp4"];

#[test]
fn lora_trains_on_kept_mxfp4_experts_as_on_dequantized_ones() {
    let scratch = std::env::temp_dir().join(format!("lmf-mxfp4-keep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (kept_dir, dense_dir) = (scratch.join("kept"), scratch.join("dense"));
    let kept = train("gpt_oss_mxfp4", &kept_dir, &KEEP);
    let stderr = String::from_utf8_lossy(&kept.stderr);
    assert!(kept.status.success(), "kept: {stderr}");
    assert!(
        stderr.contains("Keeping the MXFP4 experts 4-bit"),
        "{stderr}"
    );
    assert!(!stderr.contains("bitsandbytes"), "{stderr}");
    assert!(kept_dir.join("adapter_model.safetensors").is_file());
    let dense = train("gpt_oss_mxfp4", &dense_dir, &[]);
    assert!(
        dense.status.success(),
        "dense: {}",
        String::from_utf8_lossy(&dense.stderr)
    );
    let (k, d) = (losses(&kept_dir), losses(&dense_dir));
    assert_eq!(k.len(), 3, "{k:?}");
    assert!(k.iter().all(|l| l.is_finite() && *l > 0.0), "{k:?}");
    assert!(k[2] < k[0], "the adapter did not learn: {k:?}");
    // the same weights, the same seed: the same training up to float rounding
    for (a, b) in k.iter().zip(&d) {
        assert!(
            common::rel(*b, *a) < 1e-4,
            "kept {k:?} vs dequantized {d:?}"
        );
    }
    // the adapter covers the attention linears only, as `lora_target: all` on the dense load
    assert_eq!(
        common::adapter_targets(&kept_dir),
        ["k_proj", "o_proj", "q_proj", "v_proj"]
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn kept_mxfp4_experts_refuse_full_tuning_and_dense_checkpoints() {
    let scratch = std::env::temp_dir().join(format!("lmf-mxfp4-refuse-{}", std::process::id()));
    let full = train(
        "gpt_oss_mxfp4",
        &scratch.join("full"),
        &[KEEP[0], KEEP[1], "finetuning_type=full"],
    );
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert!(!full.status.success());
    assert!(
        stderr.contains("Quantization is only compatible with the LoRA or OFT method"),
        "{stderr}"
    );
    // the dense GPT-OSS fixture has no quantization_config: the error says so
    let dense = train("gpt_oss", &scratch.join("dense"), &KEEP);
    let stderr = String::from_utf8_lossy(&dense.stderr);
    assert!(!dense.status.success());
    assert!(
        stderr.contains("quantization_method: mxfp4") && stderr.contains("quantization_config"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
