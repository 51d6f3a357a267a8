//! `lmf export` with `export_quantization_bit` (GPTQ) on the tiny llama, against the committed
//! fixture `tests/fixtures/hf/quant/gptq_export/` (made by `make_gptq_export.py lmf-export`):
//!
//! - transformers, loading lmf's GPTQ folder through its own GPTQ integration (optimum +
//!   GPTQModel), and lmf, loading the same folder, give the same held-out perplexity; so do
//!   both on the unquantized model;
//! - a fresh export gives the committed folder again (same tensors, the same codes) and keeps
//!   held-out perplexity within 5% of the unquantized model's;
//! - LLaMA-Factory's refusals: adapters, bit widths, a missing calibration file, windows longer
//!   than every calibration text.

use lmf_autograd::no_grad;
use lmf_models::{CausalLM, SeqBatch, Tokenizer, Weights};
use lmf_runtime::{DType, Device};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/hf/quant/gptq_export")
}

fn tiny() -> PathBuf {
    root().join("tests/fixtures/hf/train/models/llama")
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The held-out texts of the fixture: the last 20 rows of `data/pretrain_demo.json`.
fn heldout() -> Vec<String> {
    let rows = json(&root().join("data/pretrain_demo.json"));
    let rows = rows.as_array().unwrap();
    rows[rows.len() - 20..]
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect()
}

/// Mean next-token NLL over every predicted token of each text (with special tokens), as
/// the fixture script computes it.
fn mean_nll(model_dir: &Path, tok_dir: &Path) -> f64 {
    let model = CausalLM::load(model_dir, DType::F32, Device::Cpu).unwrap();
    let tok = Tokenizer::from_dir(tok_dir).unwrap();
    let (mut total, mut n) = (0f64, 0usize);
    no_grad(|| {
        for text in heldout() {
            let ids = tok.encode(&text, true).unwrap();
            let logits = model
                .forward(&SeqBatch::from_seqs(std::slice::from_ref(&ids)))
                .unwrap()
                .tensor()
                .to_vec::<f32>()
                .unwrap();
            let v = logits.len() / ids.len();
            for t in 0..ids.len() - 1 {
                let row = &logits[t * v..(t + 1) * v];
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
                total += lse - row[ids[t + 1] as usize] as f64;
                n += 1;
            }
        }
    });
    total / n as f64
}

fn lmf_export(yaml: &str, tag: &str) -> (std::process::Output, PathBuf) {
    let dir = std::env::temp_dir().join(format!("lmf-gptq-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let cfg = dir.join("export.yaml");
    std::fs::write(&cfg, yaml.replace("{out}", out.to_str().unwrap())).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .current_dir(root())
        .args(["export", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    (o, out)
}

const BASE_YAML: &str = "model_name_or_path: tests/fixtures/hf/train/models/llama
template: llama3
export_dir: {out}
export_quantization_bit: 4
export_quantization_dataset: tests/fixtures/hf/quant/gptq_export/calib.json
export_quantization_nsamples: 16
export_quantization_maxlen: 32
";

#[test]
fn lmf_reads_its_gptq_export_as_transformers_does() {
    let ppl = json(&fixture().join("perplexity.json"));
    let theirs_q = ppl["quantized"]["mean_nll"].as_f64().unwrap();
    let theirs_u = ppl["unquantized"]["mean_nll"].as_f64().unwrap();
    let ours_q = mean_nll(&fixture().join("lmf_4bit"), &tiny());
    let ours_u = mean_nll(&tiny(), &tiny());
    eprintln!("mean NLL: quantized lmf {ours_q} transformers {theirs_q}; unquantized lmf {ours_u} transformers {theirs_u}");
    assert!(
        (ours_q - theirs_q).abs() < 1e-5 * theirs_q,
        "{ours_q} vs {theirs_q}"
    );
    assert!(
        (ours_u - theirs_u).abs() < 1e-5 * theirs_u,
        "{ours_u} vs {theirs_u}"
    );
    // what the export costs, as transformers measures it
    assert!(ppl["ppl_ratio"].as_f64().unwrap() < 1.05);
}

/// Every tensor of a safetensors file: name → (dtype, shape, bytes).
fn tensors(p: &Path) -> Vec<(String, String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                format!("{:?}", v.dtype()),
                v.shape().to_vec(),
                v.data().to_vec(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn export_reproduces_the_committed_gptq_folder() {
    let (o, out) = lmf_export(BASE_YAML, "fresh");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let committed = fixture().join("lmf_4bit");
    let cfg = json(&out.join("config.json"));
    assert_eq!(
        cfg["quantization_config"],
        json(&committed.join("config.json"))["quantization_config"]
    );
    assert_eq!(cfg["quantization_config"]["checkpoint_format"], "gptq_v2");
    assert_eq!(
        cfg["dtype"], "float32",
        "other tensors keep the checkpoint dtype"
    );
    let (ours, theirs) = (
        tensors(&out.join("model.safetensors")),
        tensors(&committed.join("model.safetensors")),
    );
    let names: Vec<_> = ours.iter().map(|t| (&t.0, &t.1, &t.2)).collect();
    let names_c: Vec<_> = theirs.iter().map(|t| (&t.0, &t.1, &t.2)).collect();
    assert_eq!(names, names_c);
    assert!(names
        .iter()
        .any(|n| n.0 == "model.layers.1.mlp.down_proj.qweight"));
    assert!(names
        .iter()
        .any(|n| n.0 == "lm_head.weight" && n.1 == "F32"));
    // codes: 8 per word
    let (mut same, mut all) = (0usize, 0usize);
    for (a, b) in ours.iter().zip(&theirs) {
        if a.0.ends_with(".qweight") {
            for (wa, wb) in a.3.chunks_exact(4).zip(b.3.chunks_exact(4)) {
                let (wa, wb) = (
                    u32::from_le_bytes(wa.try_into().unwrap()),
                    u32::from_le_bytes(wb.try_into().unwrap()),
                );
                for j in 0..8 {
                    same += ((wa >> (4 * j)) & 15 == (wb >> (4 * j)) & 15) as usize;
                    all += 1;
                }
            }
        } else if !a.0.ends_with(".scales") {
            assert_eq!(a.3, b.3, "{}", a.0);
        }
    }
    eprintln!("codes equal to the committed export: {same} of {all}");
    assert!(same as f64 >= 0.999 * all as f64, "{same} of {all}");
    // and the model loads back with lmf: held-out perplexity within 5% of the original
    let (q, u) = (mean_nll(&out, &tiny()), mean_nll(&tiny(), &tiny()));
    eprintln!("perplexity ratio {}", (q - u).exp());
    assert!((q - u).exp() < 1.05, "perplexity ratio {}", (q - u).exp());
    let w = Weights::from_files(&[out.join("model.safetensors")]).unwrap();
    assert!(!w.contains("model.layers.0.self_attn.q_proj.weight"));
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

#[test]
fn gptq_export_refusals() {
    let cases = [
        (
            BASE_YAML.replace("export_quantization_bit: 4", "export_quantization_bit: 5"),
            "AutoGPTQ only accepts 2/3/4/8-bit quantization.",
        ),
        (
            format!("{BASE_YAML}adapter_name_or_path: tests/fixtures/hf/train/adapters/llama_lora\n"),
            "Please merge adapters before quantizing the model.",
        ),
        (
            BASE_YAML.replace(
                "tests/fixtures/hf/quant/gptq_export/calib.json",
                "tests/fixtures/hf/quant/gptq_export/missing.json",
            ),
            "export_quantization_dataset: `tests/fixtures/hf/quant/gptq_export/missing.json` is not a file",
        ),
        (
            BASE_YAML.replace(
                "export_quantization_maxlen: 32",
                "export_quantization_maxlen: 100000",
            ),
            "Cannot find satisfying example, considering decrease `export_quantization_maxlen`.",
        ),
        (
            BASE_YAML.replace("export_quantization_dataset: tests/fixtures/hf/quant/gptq_export/calib.json\n", ""),
            "export_quantization_dataset",
        ),
    ];
    for (i, (yaml, msg)) in cases.iter().enumerate() {
        let (o, out) = lmf_export(yaml, &format!("bad{i}"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "case {i} succeeded");
        assert!(err.contains(msg), "case {i}: {err}");
        assert!(
            !out.join("model.safetensors").exists(),
            "case {i} wrote weights"
        );
        std::fs::remove_dir_all(out.parent().unwrap()).ok();
    }
}
