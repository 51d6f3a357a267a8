//! Training through adapters: the loss and every trainable gradient (LoRA, rsLoRA, DoRA with
//! its detached norm, modules_to_save) match PEFT's backward on the same adapter (fixtures
//! from `tests/fixtures/hf/adapter/make_adapters.py`), only adapter parameters get gradients,
//! and per-layer gradient checkpointing replays the LoRA dropout masks exactly.

use lmf_autograd::ops::fused::{linear_cross_entropy, CeOptions, CeReduction};
use lmf_autograd::rng::manual_seed;
use lmf_autograd::Var;
use lmf_models::adapter::{is_adapter_param, set_training, LoraConfig};
use lmf_models::{CausalLM, SeqBatch, Weights};
use lmf_runtime::{DType, Device, Tensor};
use std::path::Path;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

fn base(name: &str) -> CausalLM {
    CausalLM::load(
        &Path::new(FIX).join("models").join(name),
        DType::F32,
        Device::Cpu,
    )
    .unwrap()
}

/// Packed batch of `seqs` with next-token labels (-100 at each sequence's last token).
fn batch(seqs: &[Vec<u32>]) -> (SeqBatch, Tensor) {
    let mut labels = vec![];
    for s in seqs {
        labels.extend(s[1..].iter().map(|&t| t as i64));
        labels.push(-100);
    }
    let n = labels.len();
    (
        SeqBatch::from_seqs(seqs),
        Tensor::from_vec(labels, &[n], Device::Cpu).unwrap(),
    )
}

/// Mean next-token loss and the gradient of every trainable parameter, by name.
fn loss_and_grads(m: &CausalLM, b: &SeqBatch, labels: &Tensor) -> (f32, Vec<(String, Vec<f32>)>) {
    let (h, w) = m.head_inputs(&m.forward_hidden(b, None).unwrap()).unwrap();
    let loss =
        linear_cross_entropy(&h, &w, labels, &CeOptions::default(), CeReduction::Mean).unwrap();
    let grads = loss.backward().unwrap();
    let named = m
        .trainable_parameters()
        .into_iter()
        .map(|(n, v)| {
            let g = grads.get(v).map(|g| g.to_vec::<f32>().unwrap());
            (n, g.unwrap_or_default())
        })
        .collect();
    (loss.tensor().to_scalar::<f32>().unwrap(), named)
}

fn sequences(w: &Weights, case: &str) -> Vec<Vec<u32>> {
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(FIX).join("adapter/cases.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<i64> = w
        .get("input_ids", DType::I64, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let mut at = 0;
    cases[case]["seq_lens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let n = n.as_u64().unwrap() as usize;
            at += n;
            ids[at - n..at].iter().map(|&i| i as u32).collect()
        })
        .collect()
}

#[test]
fn loss_and_gradients_match_peft() {
    for (case, model) in [
        ("llama_lora", "llama"),
        ("llama_rslora", "llama"),
        ("llama_dora", "llama"),
        ("qwen2_lora_mts", "qwen2"),
        ("qwen2_dora_bias", "qwen2"),
        // the inputs hold the pad token: its column of lora_embedding_A gets no gradient
        ("llama_lora_embed", "llama"),
        ("qwen3_lora_embed", "qwen3"),
    ] {
        let dir = Path::new(FIX).join("adapter").join(case);
        let exp = Weights::from_files(&[dir.join("expected.safetensors")]).unwrap();
        let mut m = base(model);
        m.load_adapter(&dir, true).unwrap();
        let (b, labels) = batch(&sequences(&exp, case));
        let (loss, grads) = loss_and_grads(&m, &b, &labels);
        let want: Vec<f32> = exp
            .get("loss", DType::F32, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(
            (loss - want[0]).abs() <= 1e-5 * want[0].abs(),
            "{case}: loss {loss} vs {}",
            want[0]
        );
        let peft_names: Vec<&str> = exp
            .names()
            .filter_map(|n| n.strip_prefix("grad."))
            .collect();
        let mut ours: Vec<&str> = grads.iter().map(|(n, _)| n.as_str()).collect();
        ours.sort();
        assert_eq!(
            ours, peft_names,
            "{case}: trainable parameters differ from PEFT's"
        );
        for (n, g) in &grads {
            let p: Vec<f32> = exp
                .get(&format!("grad.{n}"), DType::F32, Device::Cpu)
                .unwrap()
                .to_vec()
                .unwrap();
            let scale = p.iter().fold(0f32, |m, x| m.max(x.abs()));
            let d = g
                .iter()
                .zip(&p)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(scale > 0.0, "{case}: {n}: PEFT grad is zero");
            assert!(
                d <= 1e-4 * scale.max(1.0),
                "{case}: {n}: grad differs by {d} (max {scale})"
            );
        }
    }
}

#[test]
fn checkpointing_replays_lora_dropout() {
    for use_dora in [false, true] {
        let mut m = base("llama");
        let cfg = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            lora_dropout: 0.3,
            target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
            use_dora,
            ..Default::default()
        };
        m.add_lora(&cfg, 3).unwrap();
        // B away from zero so A gets gradients too
        for (k, (n, v)) in m.named_parameters_mut().into_iter().enumerate() {
            if n.ends_with("lora_B.weight") {
                let t = Tensor::randn(9, (k as u64) << 32, v.shape(), DType::F32, Device::Cpu)
                    .unwrap()
                    .scale(0.1)
                    .unwrap();
                *v = Var::param(t);
            }
        }
        let (b, labels) = batch(&[vec![5, 9, 30, 7, 100, 3], vec![40, 41, 42, 43]]);
        set_training(true);
        manual_seed(11);
        let (l0, g0) = loss_and_grads(&m, &b, &labels);
        manual_seed(12);
        let (l_other, _) = loss_and_grads(&m, &b, &labels);
        assert_ne!(
            l0, l_other,
            "dora {use_dora}: dropout did not depend on the seed"
        );
        m.gradient_checkpointing = true;
        manual_seed(11);
        let (l1, g1) = loss_and_grads(&m, &b, &labels);
        assert_eq!(l0, l1, "dora {use_dora}: loss changed under checkpointing");
        set_training(false);
        assert_eq!(g0.len(), g1.len());
        for ((n, a), (_, c)) in g0.iter().zip(&g1) {
            assert!(is_adapter_param(n), "{n} is trainable");
            assert!(
                a.iter().any(|x| *x != 0.0),
                "dora {use_dora}: {n} grad is zero"
            );
            let d = a
                .iter()
                .zip(c)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                d <= 1e-6,
                "dora {use_dora}: {n} grad differs by {d} under checkpointing"
            );
        }
    }
}
