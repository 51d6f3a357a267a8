//! `lmf export` merges PEFT adapters into an HF folder: the exported model gives the logits
//! PEFT's `merge_and_unload` gave on the same adapter (fixtures from
//! `tests/fixtures/hf/adapter/make_adapters.py`), and `lmf chat` with the adapter answers
//! exactly as `lmf chat` on the exported model. `export_dir` is required, as in LLaMA-Factory.

mod common;

use lmf_autograd::no_grad;
use lmf_models::{CausalLM, SeqBatch, Weights};
use lmf_runtime::{DType, Device};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lmf(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    common::lmf_in_root(args, stdin)
}

/// The fixture's token sequences and PEFT's merged-model logits for `case` (for a tied model
/// with embedding adapters, the adapter model's logits: see below).
fn expected(case: &str) -> (Vec<Vec<u32>>, Vec<f32>) {
    let dir = root().join("tests/fixtures/hf/adapter");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let w = Weights::from_files(&[dir.join(case).join("expected.safetensors")]).unwrap();
    let ids = w
        .get("input_ids", DType::I64, Device::Cpu)
        .unwrap()
        .to_vec::<i64>()
        .unwrap();
    let mut seqs = vec![];
    let mut at = 0;
    for n in cases[case]["seq_lens"].as_array().unwrap() {
        let n = n.as_u64().unwrap() as usize;
        seqs.push(ids[at..at + n].iter().map(|&i| i as u32).collect());
        at += n;
    }
    // PEFT merges a tied model's embedding and head adapters into the one shared tensor,
    // which changes the model; lmf unties the head and keeps the adapter model's logits.
    let key = if case == "qwen3_lora_embed" {
        "peft_logits"
    } else {
        "merged_logits"
    };
    let merged = w
        .get(key, DType::F32, Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    (seqs, merged)
}

fn logits(dir: &Path, seqs: &[Vec<u32>]) -> Vec<f32> {
    let m = CausalLM::load(dir, DType::F32, Device::Cpu).unwrap();
    no_grad(|| m.forward(&SeqBatch::from_seqs(seqs)))
        .unwrap()
        .tensor()
        .to_vec::<f32>()
        .unwrap()
}

#[test]
fn exported_merge_gives_peft_merged_logits_and_chat_agrees() {
    for (case, base) in [
        ("llama_lora", "llama"),
        ("llama_dora", "llama"),
        ("llama_lora_embed", "llama"),
        ("qwen3_lora_embed", "qwen3"),
        ("qwen3_moe_lora", "qwen3_moe"),
        ("gpt_oss_lora", "gpt_oss"),
    ] {
        let out = std::env::temp_dir().join(format!("lmf-export-{}-{case}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let base_dir = format!("tests/fixtures/hf/models/{base}");
        let adapter = format!("tests/fixtures/hf/adapter/{case}");
        let res = lmf(
            &[
                "export",
                "--model_name_or_path",
                &base_dir,
                "--adapter_name_or_path",
                &adapter,
                "--export_dir",
                out.to_str().unwrap(),
            ],
            None,
        );
        assert!(
            res.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        for f in ["model.safetensors", "config.json", "tokenizer.json"] {
            assert!(out.join(f).is_file(), "{case}: {f} not exported");
        }
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        if case == "qwen3_lora_embed" {
            assert_eq!(
                config["tie_word_embeddings"], false,
                "{case}: head left tied"
            );
        }
        let (seqs, merged) = expected(case);
        let ours = logits(&out, &seqs);
        assert_eq!(ours.len(), merged.len());
        let d = ours
            .iter()
            .zip(&merged)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            d <= 1e-4,
            "{case}: exported logits differ from PEFT's merge by {d}"
        );
        // Chat through the adapter = chat with the exported model (greedy, same prompt).
        let chat = |model: &str, adapter: Option<&str>| -> String {
            let mut args = vec![
                "chat",
                "--model_name_or_path",
                model,
                "--template",
                "llama3",
                "--do_sample",
                "false",
                "--max_new_tokens",
                "8",
            ];
            if let Some(a) = adapter {
                args.extend(["--adapter_name_or_path", a]);
            }
            let r = lmf(&args, Some("hello there\n"));
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            String::from_utf8_lossy(&r.stdout).into_owned()
        };
        let with_adapter = chat(&base_dir, Some(&adapter));
        assert_eq!(with_adapter, chat(out.to_str().unwrap(), None), "{case}");
        assert_ne!(
            with_adapter,
            chat(&base_dir, None),
            "{case}: the adapter changed nothing"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn export_without_export_dir_is_one_line_error() {
    let res = lmf(
        &[
            "export",
            "--model_name_or_path",
            "tests/fixtures/hf/models/llama",
        ],
        None,
    );
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("export_dir"), "{err}");
}

/// A quantized base (on the fly, or a checkpoint saved quantized) is not merged into:
/// LLaMA-Factory's message with an adapter, and nothing is written.
#[test]
fn export_refuses_to_merge_into_a_quantized_model() {
    let out = std::env::temp_dir().join(format!("lmf-export-quant-{}", std::process::id()));
    let train = "tests/fixtures/hf/train";
    let cases = [
        (format!("{train}/models/llama"), Some("4")),
        (
            "tests/fixtures/hf/quant/prequant/llama_nf4_dq".to_string(),
            None,
        ),
    ];
    for (model, bits) in cases {
        let adapter = format!("{train}/adapters/llama_lora");
        let mut args = vec![
            "export",
            "--model_name_or_path",
            &model,
            "--adapter_name_or_path",
            &adapter,
            "--template",
            "llama3",
            "--export_dir",
            out.to_str().unwrap(),
        ];
        if let Some(b) = bits {
            args.extend(["--quantization_bit", b]);
        }
        let res = lmf(&args, None);
        assert!(!res.status.success(), "{model}");
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(
            err.contains("Cannot merge adapters to a quantized model."),
            "{model}: {err}"
        );
        assert!(
            !out.join("model.safetensors").exists(),
            "{model}: nothing written"
        );
    }
}

/// `template_file` (an lmf key) is taken by `lmf export` too: its templates are checked, and
/// `template` must name one of them or a built-in one (LLaMA-Factory's export fails on an
/// unknown template too), before anything is written.
#[test]
fn export_checks_template_and_template_file() {
    let dir = std::env::temp_dir().join(format!("lmf-export-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("templates.yaml");
    let text = std::fs::read_to_string(root().join("examples/templates/llama4.yaml")).unwrap();
    std::fs::write(&file, text).unwrap();
    let out = dir.join("out");
    let export = |template: &str, file: &Path| {
        lmf(
            &[
                "export",
                "--model_name_or_path",
                "tests/fixtures/hf/models/llama",
                "--template",
                template,
                "--template_file",
                file.to_str().unwrap(),
                "--export_dir",
                out.to_str().unwrap(),
            ],
            None,
        )
    };
    for (template, file, want) in [
        (
            "my_llama",
            file.clone(),
            "unknown template `my_llama` (neither built in nor in template_file",
        ),
        (
            "my_llama4",
            dir.join("missing.yaml"),
            "missing.yaml`: cannot read it",
        ),
    ] {
        let res = export(template, &file);
        assert!(!res.status.success(), "{template}");
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!out.exists(), "{template}: nothing written");
    }
    let res = export("my_llama4", &file);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(out.join("config.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
