//! The README's offline quickstart (`examples/quickstart.sh`) end to end, in a scratch copy
//! of `data/` and `examples/`: `lmf init` → `lmf train` (LoRA SFT, shortened with
//! `max_steps`) → `lmf chat` with the adapter → `lmf export`. Checks the output files
//! LLaMA-Factory users look for and that the loss went down.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn lmf(cwd: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .current_dir(cwd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lmf");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lmf {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn offline_quickstart_runs_end_to_end() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join(format!("lmf-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    copy_dir(&root.join("data"), &work.join("data"));
    copy_dir(&root.join("examples"), &work.join("examples"));

    lmf(&work, &["init", "saves/tiny-llama"], "");
    lmf(
        &work,
        &[
            "train",
            "examples/train_lora/tiny_lora_sft.yaml",
            "max_steps=12",
            "eval_steps=6",
        ],
        "",
    );
    let sft = work.join("saves/tiny-llama/lora/sft");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "trainer_log.jsonl",
        "trainer_state.json",
        "train_results.json",
        "eval_results.json",
        "all_results.json",
        "training_loss.png",
        "tokenizer.json",
    ] {
        assert!(sft.join(f).is_file(), "quickstart did not write {f}");
    }
    let log: Vec<Value> = std::fs::read_to_string(sft.join("trainer_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> = log.iter().filter_map(|l| l["loss"].as_f64()).collect();
    assert!(losses.len() >= 2, "{log:?}");
    assert!(
        losses.last().unwrap() < losses.first().unwrap(),
        "the loss did not go down: {losses:?}"
    );
    assert!(log.iter().any(|l| l["eval_loss"].as_f64().is_some()));

    let chat = lmf(
        &work,
        &["chat", "examples/inference/tiny_lora_sft.yaml"],
        "Who are you?\nexit\n",
    );
    assert!(chat.contains("Assistant: "), "{chat}");

    lmf(
        &work,
        &["export", "examples/merge_lora/tiny_lora_sft.yaml"],
        "",
    );
    let merged = work.join("saves/tiny-llama/merged");
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(merged.join(f).is_file(), "export did not write {f}");
    }
    let _ = std::fs::remove_dir_all(&work);
}
