//! Bad model folders give one-line errors that name the file and the problem.

mod common;

use common::{config_json, tensor_shapes, tiny_model, write_weights};
use lmf_models::CausalLM;
use lmf_runtime::{DType, Device};
use std::path::Path;

fn load_err(dir: &Path) -> String {
    match CausalLM::load(dir, DType::F32, Device::Cpu) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(msg.lines().count(), 1, "not one line: {msg}");
            msg
        }
    }
}

#[test]
fn valid_tiny_model_loads() {
    let dir = tiny_model("ok", "llama");
    let m = CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap();
    assert_eq!(m.layers.len(), 2);
    assert_eq!(
        m.num_parameters(),
        tensor_shapes(false)
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum::<usize>()
    );
}

#[test]
fn truncated_safetensors_names_the_file() {
    let dir = tiny_model("trunc", "llama");
    let f = dir.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors") && msg.contains("not a valid safetensors"),
        "{msg}"
    );
}

#[test]
fn garbage_header_names_the_file() {
    let dir = tiny_model("garbage", "llama");
    std::fs::write(dir.join("model.safetensors"), b"definitely not safetensors").unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors") && msg.contains("not a valid safetensors"),
        "{msg}"
    );
}

#[test]
fn shape_mismatch_names_tensor_and_shapes() {
    let dir = tiny_model("shape", "llama");
    // the config says intermediate 48, the weights have 40
    std::fs::write(
        dir.join("config.json"),
        config_json("llama", "").replace("\"intermediate_size\": 40", "\"intermediate_size\": 48"),
    )
    .unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert!(
        msg.contains("mlp.gate_proj.weight")
            && msg.contains("[40, 32]")
            && msg.contains("[48, 32]"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = tiny_model("missing-tensor", "qwen2");
    // qwen2 needs q/k/v biases: write weights without them
    write_weights(&dir.join("model.safetensors"), &tensor_shapes(false), 7);
    let msg = load_err(&dir);
    assert!(
        msg.contains("missing tensor `model.layers.0.self_attn.q_proj.bias`"),
        "{msg}"
    );
}

#[test]
fn unknown_model_type_names_config() {
    let dir = tiny_model("unknown-type", "llama");
    std::fs::write(dir.join("config.json"), config_json("mamba9", "")).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("config.json")
            && msg.contains("unsupported model_type `mamba9`")
            && msg.contains("llama"),
        "{msg}"
    );
}

#[test]
fn bad_config_values_name_the_key() {
    let dir = tiny_model("bad-key", "llama");
    std::fs::write(
        dir.join("config.json"),
        config_json("llama", "").replace("\"hidden_size\": 32", "\"hidden_size\": \"big\""),
    )
    .unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("config.json") && msg.contains("`hidden_size`"),
        "{msg}"
    );
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("config.json") && msg.contains("invalid JSON"),
        "{msg}"
    );
}

#[test]
fn missing_files_are_named() {
    let dir = tiny_model("missing-files", "llama");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors") && msg.contains("not found"),
        "{msg}"
    );
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("config.json") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn missing_shard_is_named() {
    let dir = tiny_model("missing-shard", "llama");
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("model-00002-of-00002.safetensors") && msg.contains("not found"),
        "{msg}"
    );
}
