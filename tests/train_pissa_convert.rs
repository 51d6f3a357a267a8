//! `lmf train` with `pissa_init` + `pissa_convert` (and rsLoRA, rank 4): writes LLaMA-Factory's
//! `pissa_init/`, `pissa_backup/` and `pissa_converted/` folders, and the converted rank-2r
//! LoRA on the ORIGINAL base weights gives the same model as the trained PiSSA adapter on its
//! residual weights (both merged by `lmf export`, compared by logits).

use lmf_autograd::no_grad;
use lmf_models::{CausalLM, SeqBatch};
use lmf_runtime::{DType, Device};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/train")
}

fn lmf(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .current_dir(fixture())
        .args(args)
        .output()
        .expect("run lmf");
    assert!(
        out.status.success(),
        "lmf {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn logits(dir: &Path) -> Vec<f32> {
    let m = CausalLM::load(dir, DType::F32, Device::Cpu).unwrap();
    let seqs = vec![vec![5u32, 17, 42, 99, 3, 250, 7], vec![11, 13, 301]];
    no_grad(|| m.forward(&SeqBatch::from_seqs(&seqs)))
        .unwrap()
        .tensor()
        .to_vec::<f32>()
        .unwrap()
}

#[test]
fn pissa_convert_writes_an_equivalent_plain_lora() {
    let tmp = std::env::temp_dir().join(format!("lmf-pissa-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = tmp.join("run");
    lmf(&[
        "train",
        "cases/lora_llama/lora_llama.yaml",
        &format!("output_dir={}", out.display()),
        "adapter_name_or_path=null",
        "pissa_init=true",
        "pissa_iter=-1",
        "pissa_convert=true",
        "use_rslora=true",
        "lora_rank=4",
        "max_steps=4",
        "eval_steps=2",
    ]);
    for d in ["pissa_init", "pissa_backup", "pissa_converted"] {
        assert!(
            out.join(d).join("adapter_model.safetensors").is_file(),
            "{d}"
        );
    }
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("pissa_converted/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["r"], 8, "converted adapter has rank 2r");
    let export = |adapter: &Path, to: &Path| {
        lmf(&[
            "export",
            "--model_name_or_path",
            "models/llama",
            "--adapter_name_or_path",
            adapter.to_str().unwrap(),
            "--export_dir",
            to.to_str().unwrap(),
        ]);
    };
    export(&out, &tmp.join("trained"));
    export(&out.join("pissa_converted"), &tmp.join("converted"));
    let (a, b) = (logits(&tmp.join("trained")), logits(&tmp.join("converted")));
    let base = logits(&fixture().join("models/llama"));
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        d <= 1e-4,
        "converted LoRA differs from the trained PiSSA model by {d}"
    );
    let moved = a
        .iter()
        .zip(&base)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(moved > 1e-3, "training changed nothing ({moved})");
    let _ = std::fs::remove_dir_all(&tmp);
}
