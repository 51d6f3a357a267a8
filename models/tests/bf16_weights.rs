//! `CausalLM::keep_weights_bf16` (inference with `infer_dtype: bfloat16` on the CPU): the
//! linears and the head computed from bf16 weights with bf16-rounded activations and f32 sums
//! give the logits of the f32 model whose weights were rounded to bf16 and whose products
//! round their operands (`bf16_products`, the same math through other kernels); the KV-cached
//! decode gives the full forward's logits; and the weights really are bf16 (the logits move
//! away from the f32 model's).

mod common;

use half::bf16;
use lmf_autograd::{no_grad, Tensor, Var};
use lmf_kernels::cpu::gemm::bf16_products;
use lmf_models::model::QkvProj;
use lmf_models::{CausalLM, SeqBatch};
use lmf_runtime::{DType, Device};

fn logits(m: &CausalLM, b: &SeqBatch) -> Vec<f32> {
    no_grad(|| m.forward(b))
        .unwrap()
        .tensor()
        .to_vec::<f32>()
        .unwrap()
}

/// Largest |a − b| relative to the largest |b|.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// `m` with every linear weight and the head rounded to bf16 values (kept in f32).
fn rounded(mut m: CausalLM) -> CausalLM {
    for (name, v) in m.named_parameters_mut() {
        if !(name.ends_with("proj.weight") || name == "lm_head.weight") {
            continue;
        }
        let t = v.tensor();
        let data: Vec<f32> = t
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|&x| bf16::from_f32(x).to_f32())
            .collect();
        *v = Var::leaf(
            Tensor::from_vec(data, t.shape(), Device::Cpu).unwrap(),
            false,
        );
    }
    m
}

/// 20 tokens per sequence: every product of the forward has at least 16 rows, so
/// `bf16_products` rounds all of them.
fn seqs() -> Vec<Vec<u32>> {
    vec![
        (0..20).map(|i| (i * 7 + 3) % 50).collect(),
        (0..20).map(|i| (i * 11 + 5) % 50).collect(),
    ]
}

#[test]
fn bf16_weights_give_the_bf16_products_of_the_rounded_model() {
    for t in ["llama", "qwen2"] {
        let dir = common::tiny_model(&format!("bf16w-{t}"), t);
        let f32_model = CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap();
        let mut m = f32_model.clone();
        // per layer fused q/k/v, o, fused gate/up, down; and the head
        assert_eq!(m.keep_weights_bf16().unwrap(), 2 * 4 + 1, "{t}");
        assert!(
            matches!(m.layers[1].self_attn.qkv, QkvProj::Fused { .. }),
            "{t}"
        );
        let b = SeqBatch::from_seqs(&seqs());
        let got = logits(&m, &b);
        let reference = rounded(f32_model.clone());
        let want = bf16_products(|| logits(&reference, &b));
        let d = rel_diff(&got, &want);
        assert!(d < 2e-5, "{t}: bf16 weights vs rounded f32 model: {d}");
        // the rounding is real: the f32 model's logits are further away
        let exact = logits(&f32_model, &b);
        let e = rel_diff(&got, &exact);
        assert!(
            e > 50.0 * d && e > 1e-4,
            "{t}: bf16 vs f32 logits: {e} (vs {d})"
        );
    }
}

#[test]
fn bf16_weights_decode_through_the_cache() {
    let dir = common::tiny_model("bf16w-kv", "llama");
    let mut m = CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap();
    m.keep_weights_bf16().unwrap();
    let seqs = seqs();
    let full = logits(&m, &SeqBatch::from_seqs(&seqs));
    let v = m.config.vocab_size;
    let mut cache = m.new_cache(2);
    let prefix: Vec<Vec<u32>> = seqs.iter().map(|s| s[..s.len() - 3].to_vec()).collect();
    no_grad(|| m.forward_last(&SeqBatch::from_seqs(&prefix), &mut cache)).unwrap();
    for step in (1..=3).rev() {
        let feed: Vec<Vec<u32>> = seqs.iter().map(|s| vec![s[s.len() - step]]).collect();
        let b = SeqBatch::with_offsets(&feed, cache.lens());
        let got = no_grad(|| m.forward_last(&b, &mut cache))
            .unwrap()
            .tensor()
            .to_vec::<f32>()
            .unwrap();
        for (i, s) in seqs.iter().enumerate() {
            let row = i * s.len() + s.len() - step;
            let want = &full[row * v..(row + 1) * v];
            let d = rel_diff(&got[i * v..(i + 1) * v], want);
            assert!(d < 2e-5, "seq {i} step {step}: {d}");
        }
    }
}

#[test]
fn bf16_weights_need_an_f32_cpu_model() {
    let dir = common::tiny_model("bf16w-f64", "llama");
    let mut m = CausalLM::load(&dir, DType::F64, Device::Cpu).unwrap();
    let err = m.keep_weights_bf16().unwrap_err().to_string();
    assert!(err.contains("f32 model on the CPU"), "{err}");
}
