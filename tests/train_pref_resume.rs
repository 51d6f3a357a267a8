//! Checkpoints and exact resume of the preference stages: a run of 12 steps saving every 6,
//! and a second run resumed from the first one's `checkpoint-6` (copied to a fresh folder),
//! log the same steps 7–12 (loss and every stage metric), and end with the same weights
//! (adapter, value head). Cases from `tests/fixtures/hf/train/cases/` (LoRA dpo, rm with its
//! value head, kto, full-fine-tuning dpo).

mod common;

use common::{read_json, run_lmf_in_fixture};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn train(case: &str, out: &Path, extra: &[String]) {
    let yaml = format!("cases/{case}/{case}.yaml");
    let mut args = vec![
        "train".to_string(),
        yaml,
        format!("output_dir={}", out.display()),
        "save_strategy=steps".into(),
        "save_steps=6".into(),
        "do_eval=false".into(),
        "eval_strategy=no".into(),
    ];
    args.extend_from_slice(extra);
    run_lmf_in_fixture(case, &args);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The training log lines (those with `loss`) of steps `> after`.
fn train_lines(dir: &Path, after: u64) -> Vec<Value> {
    read_json(&dir.join("trainer_state.json"))["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.get("loss").is_some() && l["step"].as_u64().unwrap() > after)
        .cloned()
        .collect()
}

fn check_resume(case: &str, weights: &[&str]) -> PathBuf {
    let base: PathBuf =
        std::env::temp_dir().join(format!("lmf-prefresume-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (a, b) = (base.join("a"), base.join("b"));
    train(case, &a, &[]);
    copy_dir(&a.join("checkpoint-6"), &b.join("checkpoint-6"));
    let ckpt = b.join("checkpoint-6");
    train(
        case,
        &b,
        &[format!("resume_from_checkpoint={}", ckpt.display())],
    );
    let (la, lb) = (train_lines(&a, 6), train_lines(&b, 6));
    assert_eq!(la.len(), 6, "{case}: steps 7-12 logged once each");
    assert_eq!(la.len(), lb.len(), "{case}: resumed run logged other steps");
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(x["step"], y["step"], "{case}");
        for (k, v) in x.as_object().unwrap() {
            if matches!(k.as_str(), "loss" | "grad_norm" | "learning_rate" | "epoch")
                || k.contains('/')
                || k == "kl"
            {
                let (p, q) = (v.as_f64().unwrap(), y[k].as_f64().unwrap());
                assert!(
                    (p - q).abs() <= 1e-6 * (1.0 + p.abs()),
                    "{case} step {}: {k} uninterrupted {p} resumed {q}",
                    x["step"]
                );
            }
        }
    }
    for w in weights {
        let (p, q) = (
            std::fs::read(a.join(w)).unwrap(),
            std::fs::read(b.join(w)).unwrap(),
        );
        assert!(p == q, "{case}: final {w} differs after resuming");
    }
    a
}

#[test]
fn dpo_lora_resumes_exactly() {
    let a = check_resume("dpo_sigmoid_llama", &["adapter_model.safetensors"]);
    let _ = std::fs::remove_dir_all(a.parent().unwrap());
}

/// ... and `lmf export stage=rm` of the trained adapter merges it and keeps the value head.
#[test]
fn rm_resumes_exactly_with_its_value_head_and_exports_it() {
    let trained = check_resume(
        "rm_llama",
        &["adapter_model.safetensors", "value_head.safetensors"],
    );
    let out = trained.with_file_name("export");
    run_lmf_in_fixture(
        "export",
        &[
            "export".into(),
            "model_name_or_path=models/llama_rm".into(),
            format!("adapter_name_or_path={}", trained.display()),
            "finetuning_type=lora".into(),
            "stage=rm".into(),
            format!("export_dir={}", out.display()),
        ],
    );
    assert!(out.join("model.safetensors").is_file());
    let head = |d: &Path| std::fs::read(d.join("value_head.safetensors")).unwrap();
    assert!(head(&trained) == head(&out), "exported value head differs");
    let _ = std::fs::remove_dir_all(trained.parent().unwrap());
}

#[test]
fn kto_resumes_exactly() {
    let a = check_resume("kto_llama", &["adapter_model.safetensors"]);
    let _ = std::fs::remove_dir_all(a.parent().unwrap());
}

#[test]
fn dpo_full_resumes_exactly() {
    let a = check_resume("dpo_full_llama", &["model.safetensors"]);
    let _ = std::fs::remove_dir_all(a.parent().unwrap());
}
