//! The README's offline quickstart, `examples/quickstart.sh` itself, end to end in a scratch
//! copy of `data/` and `examples/` with this build's `lmf`: `lmf init` → ask the random model
//! "Who are you?" → `lmf train` (LoRA SFT on the identity set with a name filled in) → ask
//! again → `lmf export`. The answer after training must carry the identity's name (and the one
//! before must not); the output files LLaMA-Factory users look for must be there.

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

/// The text after `label` on the script's output line that starts with it.
fn line_after<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{out}"))
        .trim()
}

#[test]
fn offline_quickstart_learns_its_identity() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join(format!("lmf-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    copy_dir(&root.join("data"), &work.join("data"));
    copy_dir(&root.join("examples"), &work.join("examples"));

    let out = Command::new("bash")
        .arg(work.join("examples/quickstart.sh"))
        .env("LMF", env!("CARGO_BIN_EXE_lmf"))
        .env("NAME", "Tiny Lmf")
        .env("AUTHOR", "the lmf team")
        .output()
        .expect("run examples/quickstart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The visible lesson: the random model does not know its name, the trained one does.
    let before = line_after(&stdout, "Before:");
    let after = line_after(&stdout, "After:");
    assert!(!before.contains("Tiny Lmf"), "before training: {before}");
    assert!(
        after.contains("Tiny Lmf"),
        "after training the answer should come from the identity set: {after}"
    );

    let sft = work.join("saves/tiny-llama/lora/sft");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "trainer_log.jsonl",
        "trainer_state.json",
        "train_results.json",
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
    assert!(losses.len() >= 5, "{log:?}");
    assert!(
        losses.last().unwrap() < &(losses.first().unwrap() * 0.7),
        "the loss did not go down: {losses:?}"
    );
    // Progress shows on a pipe too: one transformers-style line per logging step.
    let lines = stdout
        .lines()
        .filter(|l| l.starts_with("{'loss': "))
        .count();
    assert_eq!(lines, losses.len(), "{stdout}");

    let merged = work.join("saves/tiny-llama/merged");
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(merged.join(f).is_file(), "export did not write {f}");
    }
    // The merged model (an ordinary HF folder now) knows its name too.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .current_dir(&work)
        .args([
            "chat",
            "--model_name_or_path",
            "saves/tiny-llama/merged",
            "--template",
            "chatml",
            "--do_sample",
            "false",
            "--max_new_tokens",
            "32",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lmf chat");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Who are you?\nexit\n")
        .unwrap();
    let chat = child.wait_with_output().unwrap();
    let chat = String::from_utf8_lossy(&chat.stdout);
    assert!(
        line_after(&chat, "User: Assistant:").contains("Tiny Lmf"),
        "{chat}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
