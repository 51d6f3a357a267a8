//! The GPT-OSS examples (`examples/{train_lora,merge_lora,inference}/gpt_oss_lora_sft.yaml`,
//! LLaMA-Factory's "3 steps to LoRA fine-tuning for GPT-OSS") end to end through the `lmf`
//! binary on the tiny random GPT-OSS with MXFP4 experts of `tests/fixtures/hf/models`: train
//! (cut to 3 steps), merge, then chat with the adapter and with the merged model: the two
//! replies are the same text.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lmf(args: &[String], stdin: Option<&str>) -> Output {
    common::lmf_in_root(args, stdin)
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn gpt_oss_best_practice_train_merge_chat() {
    let model = root().join("tests/fixtures/hf/models/gpt_oss_mxfp4");
    let scratch = std::env::temp_dir().join(format!("lmf-examples-gpt-oss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (adapter, merged) = (scratch.join("lora"), scratch.join("merged"));
    let train: Vec<String> = [
        "train".to_string(),
        "examples/train_lora/gpt_oss_lora_sft.yaml".into(),
        format!("model_name_or_path={}", path(&model)),
        format!("output_dir={}", path(&adapter)),
        "cutoff_len=128".into(),
        "max_samples=8".into(),
        "max_steps=3".into(),
        "gradient_accumulation_steps=1".into(),
        "logging_steps=1".into(),
        "learning_rate=1.0e-2".into(),
    ]
    .into();
    ok(&lmf(&train, None), "train");
    assert!(adapter.join("adapter_model.safetensors").is_file());
    let log = std::fs::read_to_string(adapter.join("trainer_log.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["loss"].as_f64())
        .collect();
    assert_eq!(losses.len(), 3, "{log}");
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    // what LLaMA-Factory's `lora_target: all` finds in GPT-OSS: the attention linears
    assert_eq!(
        common::adapter_targets(&adapter),
        ["k_proj", "o_proj", "q_proj", "v_proj"]
    );

    let export: Vec<String> = [
        "export".to_string(),
        "examples/merge_lora/gpt_oss_lora_sft.yaml".into(),
        format!("model_name_or_path={}", path(&model)),
        format!("adapter_name_or_path={}", path(&adapter)),
        format!("export_dir={}", path(&merged)),
    ]
    .into();
    ok(&lmf(&export, None), "export");
    assert!(merged.join("model.safetensors").is_file());

    let chat = |model: &Path, adapter: Option<&Path>| -> String {
        let mut args = vec![
            "chat".to_string(),
            "examples/inference/gpt_oss_lora_sft.yaml".into(),
            format!("model_name_or_path={}", path(model)),
            "do_sample=false".into(),
            "max_new_tokens=12".into(),
        ];
        match adapter {
            Some(a) => args.push(format!("adapter_name_or_path={}", path(a))),
            None => args.push("adapter_name_or_path=null".into()),
        }
        ok(&lmf(&args, Some("What is 2 plus 2?\n")), "chat")
    };
    let with_adapter = chat(&model, Some(&adapter));
    assert_eq!(with_adapter, chat(&merged, None), "adapter vs merged chat");
    assert!(with_adapter.contains("Assistant"), "{with_adapter}");
    assert_ne!(
        with_adapter,
        chat(&model, None),
        "the trained adapter changed nothing"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
