//! GPTQ and AWQ checkpoints made by GPTQModel 7.3.1 on the CPU (fixtures
//! `tests/fixtures/hf/quant/gptq_awq/`, `make_gptq_awq.py`): 4-bit symmetric, act-order
//! (`desc_act`, an unsorted `g_idx`), asymmetric and 8-bit GPTQ (checkpoint format v1, zero
//! points stored minus one) and 4-bit GEMM AWQ load as they are, every linear dequantizes to
//! GPTQModel's own weight bit for bit, and the logits equal an f32 Llama built from those
//! weights. Transformers itself runs these f16 checkpoints in f16 (its two GPTQ backends differ
//! by up to 0.05 there), so against its logits the check is loose.

use lmf_autograd::ops::fused::QuantBase;
use lmf_autograd::{DType, Device};
use lmf_models::{CausalLM, Weights};

mod common;
use std::path::PathBuf;

const VARIANTS: [&str; 5] = [
    "gptq_4bit_g32_sym",
    "gptq_4bit_g32_descact",
    "gptq_4bit_asym",
    "gptq_8bit_g32",
    "awq_4bit_gemm",
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/quant/gptq_awq")
}

fn f32s(w: &Weights, name: &str) -> Vec<f32> {
    w.get(name, DType::F32, Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
}

/// Largest logit error over the three fixture sequences, relative to the logits' range.
fn logits_error(model: &CausalLM, variant: &str, key: &str) -> f32 {
    common::max_logit_error(
        model,
        &dir().join("expected.safetensors"),
        3,
        |i| format!("{variant}.seq{i}.input_ids"),
        |i| format!("{variant}.seq{i}.{key}"),
    )
}

#[test]
fn gptq_and_awq_weights_dequantize_to_gptqmodels() {
    for variant in VARIANTS {
        let m = CausalLM::load(&dir().join(variant), DType::F32, Device::Cpu).unwrap();
        assert!(m.is_quantized(), "{variant}");
        let want =
            Weights::from_files(&[dir().join(format!("{variant}_dequant.safetensors"))]).unwrap();
        let mut checked = 0;
        for l in &m.layers {
            let p = format!("model.layers.{}", l.index);
            let mut linears = l.self_attn.linears();
            linears.extend(l.mlp.as_ref().unwrap().linears());
            assert_eq!(linears.len(), 7);
            for (name, lin) in linears {
                let q: &QuantBase = lin.quant.as_deref().expect("quantized");
                assert!(matches!(q, QuantBase::Group(_)), "{variant} {name}");
                let e = f32s(&want, &format!("{p}.{name}.weight"));
                let got = q.dequantize();
                let diff = got
                    .iter()
                    .zip(&e)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(diff, 0, "{variant} {p}.{name}: {diff} weights differ");
                checked += 1;
            }
        }
        assert_eq!(checked, 14, "{variant}");
    }
}

#[test]
fn gptq_and_awq_logits_equal_the_dequantized_f32_model() {
    for variant in VARIANTS {
        let m = CausalLM::load(&dir().join(variant), DType::F32, Device::Cpu).unwrap();
        let tight = logits_error(&m, variant, "logits_f32dequant");
        let loose = logits_error(&m, variant, "logits");
        eprintln!("{variant}: vs the f32 model {tight:.2e}, vs transformers' f16 run {loose:.2e} of the range");
        assert!(tight <= 1e-5, "{variant}: {tight:.2e}");
        assert!(
            loose <= 2e-2,
            "{variant}: {loose:.2e} from transformers' f16 logits"
        );
    }
}
