//! Training-side plumbing of the decoder: per-layer gradient checkpointing gives the same
//! loss and parameter gradients as keeping every activation, and `set_trainable` /
//! `named_parameters_mut` select what trains.

mod common;

use lmf_autograd::ops::fused::{linear_cross_entropy, CeOptions, CeReduction};
use lmf_models::{CausalLM, SeqBatch};
use lmf_runtime::{DType, Device, Tensor};

fn loss_and_grads(m: &CausalLM, b: &SeqBatch, labels: &Tensor) -> (f32, Vec<(String, Vec<f32>)>) {
    let h = m.forward_hidden(b, None).unwrap();
    let loss = linear_cross_entropy(
        &h,
        m.head_weight(),
        labels,
        &CeOptions::default(),
        CeReduction::Mean,
    )
    .unwrap();
    let grads = loss.backward().unwrap();
    let named = m
        .trainable_parameters()
        .into_iter()
        .map(|(n, v)| (n, grads.get(v).unwrap().to_vec::<f32>().unwrap()))
        .collect();
    (loss.tensor().to_scalar::<f32>().unwrap(), named)
}

#[test]
fn checkpointing_matches_plain_backward() {
    for arch in ["llama", "qwen2"] {
        let dir = common::tiny_model(&format!("ckpt-{arch}"), arch);
        let mut m = CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap();
        let b = SeqBatch::from_seqs(&[vec![1u32, 5, 9, 3, 7], vec![2, 4, 6]]);
        let labels: Vec<i64> = vec![5, 9, 3, 7, -100, 4, 6, -100];
        let labels = Tensor::from_vec(labels, &[8], Device::Cpu).unwrap();
        let (l0, g0) = loss_and_grads(&m, &b, &labels);
        m.gradient_checkpointing = true;
        let (l1, g1) = loss_and_grads(&m, &b, &labels);
        assert_eq!(l0, l1, "{arch}: loss changed under checkpointing");
        assert_eq!(g0.len(), g1.len());
        assert!(g0.len() > 10, "{arch}: every parameter should get a grad");
        for ((n0, a), (n1, b)) in g0.iter().zip(&g1) {
            assert_eq!(n0, n1);
            let d = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(d <= 1e-6, "{arch}: {n0} grad differs by {d}");
            assert!(a.iter().any(|x| *x != 0.0), "{arch}: {n0} grad is all zero");
        }
    }
}

/// Under checkpointing, the layers that fit in `checkpoint_keep_bytes` (the last ones) run
/// without a checkpoint; whatever the split, the loss and every gradient are the bits of the
/// fully checkpointed run.
#[test]
fn partial_checkpointing_gives_the_same_bits() {
    let dir = common::tiny_model("ckpt-partial", "llama");
    let mut m = CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap();
    let layers = m.config.num_layers;
    assert!(layers >= 2, "the test wants a split between layers");
    let b = SeqBatch::from_seqs(&[vec![1u32, 5, 9, 3, 7], vec![2, 4, 6]]);
    let labels =
        Tensor::from_vec(vec![5i64, 9, 3, 7, -100, 4, 6, -100], &[8], Device::Cpu).unwrap();
    m.gradient_checkpointing = true;
    let (l_all, g_all) = loss_and_grads(&m, &b, &labels);
    let per_layer = m.layer_activation_bytes(8);
    assert!(per_layer > 0);
    for kept in [1, layers - 1, layers, layers + 3] {
        m.checkpoint_keep_bytes = kept * per_layer + per_layer / 2;
        assert_eq!(m.unchecked_layers(8), kept.min(layers));
        let (l, g) = loss_and_grads(&m, &b, &labels);
        assert_eq!(l.to_bits(), l_all.to_bits(), "{kept} layers kept: loss");
        assert_eq!(g, g_all, "{kept} layers kept: gradients");
    }
    m.checkpoint_keep_bytes = per_layer - 1;
    assert_eq!(m.unchecked_layers(8), 0);
}

#[test]
fn set_trainable_selects_parameters() {
    let dir = common::tiny_model("trainable", "llama");
    let mut m = CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap();
    let all = m.named_parameters().len();
    assert_eq!(m.trainable_parameters().len(), all);
    m.set_trainable(|n| n.starts_with("model.layers.1."));
    let names: Vec<String> = m
        .trainable_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!names.is_empty() && names.len() < all);
    assert!(names.iter().all(|n| n.starts_with("model.layers.1.")));
    let mut_names: Vec<String> = m
        .named_parameters_mut()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let names_all: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(mut_names, names_all);
}
