//! `lmf llama-pro` against LLaMA-Factory's own `scripts/llama_pro.py` (v0.9.5; fixture
//! `tests/fixtures/hf/train/llama_pro/`, made by `make_llama_pro.py`): expanding the 2-layer
//! fixture llama by 2 blocks writes the same tensors (names, dtypes, bytes: copies after each
//! layer with `o_proj` / `down_proj` zeroed) and the same config; the expanded model's logits
//! equal the original's (and LF's expanded logits); bad `num_expand` is refused with LF's
//! message. Training on the expanded folder is `train_lf_parity.rs` (`llama_pro_*`).

use lmf_autograd::{DType, Device};
use lmf_models::{CausalLM, SeqBatch, Weights};
use std::path::{Path, PathBuf};
use std::process::Command;

fn train_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/train")
}

fn expand(num_expand: &str, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lmf"))
        .args(["llama-pro", "--model_name_or_path"])
        .arg(train_fixtures().join("models/llama"))
        .arg("--output_dir")
        .arg(out)
        .args(["--num_expand", num_expand])
        .output()
        .expect("lmf runs")
}

fn logits(model: &CausalLM, ids: &[u32]) -> Vec<f32> {
    model
        .forward(&SeqBatch::from_seqs(&[ids.to_vec()]))
        .unwrap()
        .tensor()
        .to_vec::<f32>()
        .unwrap()
}

#[test]
fn expansion_equals_llamafactorys_script() {
    let out = std::env::temp_dir().join(format!("lmf-llama-pro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = expand("2", &out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lf_dir = train_fixtures().join("llama_pro/llama_pro_model");
    let (ours, lf) = (
        Weights::from_dir(&out).unwrap(),
        Weights::from_dir(&lf_dir).unwrap(),
    );
    let mut names: Vec<&str> = lf.names().collect();
    names.sort();
    let mut our_names: Vec<&str> = ours.names().collect();
    our_names.sort();
    assert_eq!(our_names, names, "tensor names");
    for name in names {
        let (a, b) = (ours.raw(name).unwrap(), lf.raw(name).unwrap());
        assert_eq!((a.0, &a.1), (b.0, &b.1), "{name}: dtype / shape");
        assert!(a.2 == b.2, "{name}: bytes differ");
    }
    let cfg = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap()
    };
    assert_eq!(cfg(&out), cfg(&lf_dir), "config.json");
    // the expanded model computes what the original did
    let fx = Weights::from_files(&[train_fixtures().join("llama_pro/logits.safetensors")]).unwrap();
    let ids: Vec<u32> = fx
        .get("input_ids", DType::I64, Device::Cpu)
        .unwrap()
        .to_vec::<i64>()
        .unwrap()
        .iter()
        .map(|&t| t as u32)
        .collect();
    let orig = CausalLM::load(
        &train_fixtures().join("models/llama"),
        DType::F32,
        Device::Cpu,
    )
    .unwrap();
    let expanded = CausalLM::load(&out, DType::F32, Device::Cpu).unwrap();
    assert_eq!(expanded.layers.len(), 4);
    let (a, b) = (logits(&orig, &ids), logits(&expanded, &ids));
    assert_eq!(a, b, "the inserted blocks are identities");
    let lf_logits = fx
        .get("expanded.logits", DType::F32, Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let err = b
        .iter()
        .zip(&lf_logits)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(err < 1e-5, "logits vs transformers' expanded model: {err}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn num_expand_must_divide_the_layers() {
    let out = std::env::temp_dir().join(format!("lmf-llama-pro-bad-{}", std::process::id()));
    let run = expand("3", &out);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("`num_layers` 2 should be divisible by `num_expand` 3."),
        "{err}"
    );
    assert!(!out.join("model.safetensors").exists(), "nothing written");
}
