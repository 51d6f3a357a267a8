//! A tiny random Llama-family model written to a temp folder by the tests themselves (for
//! error cases and self-consistency checks that need no reference numbers).

#![allow(dead_code)]

use lmf_kernels::testing::{rand_vec, Lcg};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A fresh empty folder under the target dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lmf-models-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `config.json` text of a 2-layer model of `model_type` with hidden 32.
pub fn config_json(model_type: &str, extra: &str) -> String {
    format!(
        r#"{{"model_type": "{model_type}", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 40,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64,
  "tie_word_embeddings": false{extra}}}"#
    )
}

/// Tensor names and shapes of that model (Llama layout, with q/k/v biases for qwen2).
pub fn tensor_shapes(qkv_bias: bool) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![("model.embed_tokens.weight".to_string(), vec![50, 32])];
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        for (n, s) in [
            ("self_attn.q_proj.weight", vec![32, 32]),
            ("self_attn.k_proj.weight", vec![16, 32]),
            ("self_attn.v_proj.weight", vec![16, 32]),
            ("self_attn.o_proj.weight", vec![32, 32]),
            ("mlp.gate_proj.weight", vec![40, 32]),
            ("mlp.up_proj.weight", vec![40, 32]),
            ("mlp.down_proj.weight", vec![32, 40]),
            ("input_layernorm.weight", vec![32]),
            ("post_attention_layernorm.weight", vec![32]),
        ] {
            v.push((format!("{p}.{n}"), s));
        }
        if qkv_bias {
            v.push((format!("{p}.self_attn.q_proj.bias"), vec![32]));
            v.push((format!("{p}.self_attn.k_proj.bias"), vec![16]));
            v.push((format!("{p}.self_attn.v_proj.bias"), vec![16]));
        }
    }
    v.push(("model.norm.weight".to_string(), vec![32]));
    v.push(("lm_head.weight".to_string(), vec![50, 32]));
    v
}

/// Writes random f32 tensors of `shapes` to `path` as safetensors.
pub fn write_weights(path: &Path, shapes: &[(String, Vec<usize>)], seed: u64) {
    let mut rng = Lcg::new(seed);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .iter()
        .map(|(n, s)| {
            let x: Vec<f32> = rand_vec(&mut rng, s.iter().product(), 0.3);
            (n.clone(), s.clone(), bytemuck::cast_slice(&x).to_vec())
        })
        .collect();
    let views: BTreeMap<String, TensorView> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// A complete tiny model folder.
pub fn tiny_model(tag: &str, model_type: &str) -> PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("config.json"), config_json(model_type, "")).unwrap();
    write_weights(
        &dir.join("model.safetensors"),
        &tensor_shapes(model_type == "qwen2"),
        7,
    );
    dir
}

/// Largest |ours − expected| over `n` single-sequence forwards, relative to each expected
/// logits' range: `ids(i)` names sequence `i`'s token ids (i64) in the safetensors `fixture`,
/// `logits(i)` its expected logits (f32). For the quantized-checkpoint fixtures.
pub fn max_logit_error(
    model: &lmf_models::CausalLM,
    fixture: &Path,
    n: usize,
    ids: impl Fn(usize) -> String,
    logits: impl Fn(usize) -> String,
) -> f32 {
    use lmf_autograd::{DType, Device};
    let exp = lmf_models::Weights::from_files(&[fixture.to_path_buf()]).unwrap();
    let mut worst = 0f32;
    for i in 0..n {
        let seq: Vec<u32> = exp
            .get(&ids(i), DType::I64, Device::Cpu)
            .unwrap()
            .to_vec::<i64>()
            .unwrap()
            .iter()
            .map(|&t| t as u32)
            .collect();
        let want = exp
            .get(&logits(i), DType::F32, Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let got = model
            .forward(&lmf_models::SeqBatch::from_seqs(&[seq]))
            .unwrap()
            .tensor()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(got.len(), want.len(), "{}", logits(i));
        let (lo, hi) = want
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        worst = worst.max(err / (hi - lo));
    }
    worst
}
