//! The value head against TRL's `AutoModelForCausalLMWithValueHead` on the tiny Llama 3
//! (fixture: `tests/fixtures/hf/pref/make_value_head.py` → `pref/value_head/`): loaded from the
//! `value_head.safetensors` LLaMA-Factory's format, the value of every token of two sequences
//! and each row's score at its last token agree within 1e-4; saving writes the same keys and
//! values back; dropout acts only while training; a head of the wrong width is an error.

use std::path::{Path, PathBuf};

use lmf_models::adapter::set_training;
use lmf_models::value_head::VALUE_HEAD_FILE;
use lmf_models::{CausalLM, SeqBatch, ValueHead, Weights};
use lmf_runtime::{DType, Device};
use serde_json::Value;

const HF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

fn fixture_dir() -> PathBuf {
    Path::new(HF).join("pref/value_head")
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("values.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The rows packed back to back, one sequence each, positions from 0.
fn packed(rows: &[Vec<u32>]) -> SeqBatch {
    let mut b = SeqBatch {
        ids: vec![],
        cu_seqlens: vec![0],
        positions: vec![],
    };
    for r in rows {
        b.ids.extend(r);
        b.positions.extend(0..r.len() as i64);
        b.cu_seqlens.push(b.ids.len());
    }
    b
}

#[test]
fn values_and_scores_match_trl() {
    let fx = fixture();
    let rows: Vec<Vec<u32>> = fx["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let model = CausalLM::load(
        &Path::new(HF).join("models/llama3"),
        DType::F32,
        Device::Cpu,
    )
    .unwrap();
    let hidden_size = model.config.hidden_size;
    let head = ValueHead::load(&fixture_dir(), hidden_size, 0.0, Device::Cpu)
        .unwrap()
        .expect("the fixture has a value head");
    let hidden = model.forward_hidden(&packed(&rows), None).unwrap();

    // Scores at each row's last token (LF: attention_mask.sum() - 1 of right-padded rows).
    let mut last = Vec::new();
    let mut end = 0;
    for r in &rows {
        end += r.len();
        last.push(end - 1);
    }
    let scores = head
        .scores(&hidden, &last)
        .unwrap()
        .tensor()
        .to_vec::<f64>()
        .unwrap();
    let want = floats(&fx["scores"]);
    for (g, w) in scores.iter().zip(&want) {
        assert!(
            (g - w).abs() < 1e-4 * (1.0 + w.abs()),
            "score {g} vs TRL {w}"
        );
    }
    // Every token's value.
    let all: Vec<usize> = (0..end).collect();
    let values = head
        .scores(&hidden, &all)
        .unwrap()
        .tensor()
        .to_vec::<f64>()
        .unwrap();
    let want: Vec<f64> = fx["values"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    assert_eq!(values.len(), want.len());
    for (i, (g, w)) in values.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() < 1e-4 * (1.0 + w.abs()),
            "value {i}: {g} vs TRL {w}"
        );
    }

    // Dropout only while training.
    let noisy = ValueHead {
        dropout: 0.5,
        ..ValueHead::load(&fixture_dir(), hidden_size, 0.0, Device::Cpu)
            .unwrap()
            .unwrap()
    };
    let eval = noisy
        .scores(&hidden, &last)
        .unwrap()
        .tensor()
        .to_vec::<f64>()
        .unwrap();
    assert_eq!(eval, scores);
    set_training(true);
    let train = noisy
        .scores(&hidden, &all)
        .unwrap()
        .tensor()
        .to_vec::<f64>();
    set_training(false);
    assert_ne!(
        train.unwrap(),
        values,
        "dropout 0.5 changed nothing while training"
    );

    // A token outside the batch is an error, not a panic.
    assert!(head.scores(&hidden, &[end]).is_err());
}

#[test]
fn save_writes_llamafactory_keys_and_loads_back() {
    let src = ValueHead::load(&fixture_dir(), 64, 0.1, Device::Cpu)
        .unwrap()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("lmf-value-head-{}", std::process::id()));
    src.save(&dir).unwrap();
    let w = Weights::from_files(&[dir.join(VALUE_HEAD_FILE)]).unwrap();
    let names: Vec<&str> = w.names().collect();
    assert_eq!(names, ["v_head.summary.bias", "v_head.summary.weight"]);
    assert_eq!(w.shape("v_head.summary.weight"), Some(&[1usize, 64][..]));
    let back = ValueHead::load(&dir, 64, 0.1, Device::Cpu)
        .unwrap()
        .unwrap();
    for (a, b) in [(&src.weight, &back.weight), (&src.bias, &back.bias)] {
        assert_eq!(
            a.tensor().to_vec::<f32>().unwrap(),
            b.tensor().to_vec::<f32>().unwrap()
        );
    }
    // No file: None. A head of another width: an error naming the tensor.
    assert!(ValueHead::load(&dir.join("none"), 64, 0.1, Device::Cpu)
        .unwrap()
        .is_none());
    let e = ValueHead::load(&dir, 32, 0.1, Device::Cpu)
        .err()
        .expect("width mismatch");
    assert!(e.to_string().contains("v_head.summary.weight"), "{e}");
    // A fresh head is nn.Linear's uniform(±1/√hidden).
    let fresh = ValueHead::new(64, 0.1, 7, Device::Cpu).unwrap();
    let w = fresh.weight.tensor().to_vec::<f32>().unwrap();
    assert!(w.iter().all(|v| v.abs() <= 0.125) && w.iter().any(|v| v.abs() > 0.1));
    std::fs::remove_dir_all(&dir).ok();
}
