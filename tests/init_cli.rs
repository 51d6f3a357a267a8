//! `lmf init`: the tiny model folder it writes loads in lmf (model + tokenizer), the
//! tokenizer holds ChatML's special tokens as single ids, and an existing non-empty folder is
//! refused with one clear line.

use lmf_models::{CausalLM, Tokenizer};
use lmf_runtime::{DType, Device};
use std::process::Command;

fn lmf(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lmf"))
        .args(args)
        .output()
        .expect("run lmf")
}

#[test]
fn init_writes_a_loadable_model() {
    let root = std::env::temp_dir().join(format!("lmf-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let corpus = root.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(
        corpus.join("a.json"),
        r#"[{"instruction": "Name three colours of the rainbow.", "output": "Red, green and blue."},
            {"instruction": "What is the capital of France?", "output": "Paris is the capital of France."}]"#,
    )
    .unwrap();
    std::fs::write(
        corpus.join("b.txt"),
        "A line of plain text.\nAnother line of text.\n",
    )
    .unwrap();
    let dir = root.join("tiny");
    let d = dir.to_str().unwrap();
    let out = lmf(&[
        "init",
        d,
        "--dataset_dir",
        corpus.to_str().unwrap(),
        "--hidden_size",
        "64",
        "--intermediate_size",
        "128",
        "--num_hidden_layers",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let ids = tok
        .encode("<|im_start|>user\nRed<|im_end|>", false)
        .unwrap();
    assert_eq!(ids[0], tok.token_to_id("<|im_start|>").unwrap());
    assert_eq!(*ids.last().unwrap(), tok.token_to_id("<|im_end|>").unwrap());
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "<|im_start|>user\nRed<|im_end|>"
    );
    let m = CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap();
    assert_eq!(m.config.vocab_size, tok.vocab_size());
    assert_eq!(m.layers.len(), 2);
    assert_eq!(
        m.config.eos_token_ids,
        vec![tok.token_to_id("<|im_end|>").unwrap()]
    );
    // A second init into the now non-empty folder is refused.
    let again = lmf(&["init", d, "--dataset_dir", corpus.to_str().unwrap()]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not empty"), "{err}");
    // A benchmark-shaped model: the embedding padded to a real vocab size and tied.
    let big = root.join("padded");
    let out = lmf(&[
        "init",
        big.to_str().unwrap(),
        "--dataset_dir",
        corpus.to_str().unwrap(),
        "--hidden_size",
        "64",
        "--intermediate_size",
        "128",
        "--num_hidden_layers",
        "1",
        "--pad_vocab_to",
        "1000",
        "--tie_word_embeddings",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = CausalLM::load(&big, DType::F32, Device::Cpu).unwrap();
    assert_eq!(m.config.vocab_size, 1000);
    assert!(m.config.tie_word_embeddings);
    assert_eq!(
        m.config.eos_token_ids,
        vec![Tokenizer::from_dir(&big)
            .unwrap()
            .token_to_id("<|im_end|>")
            .unwrap()]
    );
    let _ = std::fs::remove_dir_all(&root);
}
