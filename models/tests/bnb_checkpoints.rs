//! Quantized models against transformers + bitsandbytes 0.50.2 (fixtures
//! `tests/fixtures/hf/quant/prequant/`, made by `make_prequant.py`): checkpoints saved
//! quantized by bitsandbytes (4-bit NF4 with double quantization, FP4 in f32 storage, LLM.int8;
//! Llama and Qwen2) load as they are, dequantize to bitsandbytes' own weights bit for bit, and
//! give transformers' logits; the same models quantized on the fly by lmf give them too.
//! 4-bit logits are bitsandbytes' f32 path (transformers in train mode: on AVX512-BF16 CPUs
//! its eval mode computes in bf16); 8-bit logits are LLM.int8 in eval mode and the dequantized
//! weight in train mode, as `Linear8bitLt` switches.

use lmf_autograd::ops::fused::QuantBase;
use lmf_autograd::{DType, Device};
use lmf_kernels::cpu::quant::FourBit;
use lmf_models::model::linear::set_training;
use lmf_models::quantize::QuantSpec;
use lmf_models::{CausalLM, Weights};

mod common;
use std::path::{Path, PathBuf};

fn quant_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/quant/prequant")
}

fn source_model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../tests/fixtures/hf/train/models/{name}"))
}

/// Largest |ours − transformers| over the logits of the fixture's three sequences, relative
/// to the logits' range; `prefix` picks the expected set (`llama_int8.train` for train mode).
fn logits_error(model: &CausalLM, variant: &str, prefix: &str, training: bool) -> f64 {
    set_training(training);
    let worst = common::max_logit_error(
        model,
        &quant_dir().join("expected.safetensors"),
        3,
        |i| format!("{variant}.seq{i}.input_ids"),
        |i| format!("{prefix}.seq{i}.logits"),
    );
    set_training(false);
    worst as f64
}

fn load(dir: &Path, quant: Option<&QuantSpec>) -> CausalLM {
    CausalLM::load_quantized(dir, DType::F32, Device::Cpu, quant).unwrap()
}

fn check(model: &CausalLM, variant: &str, prefix: &str, training: bool) {
    let err = logits_error(model, variant, prefix, training);
    eprintln!("{variant} ({prefix}, training {training}): max logit error {err:.2e} of the range");
    assert!(
        err <= 1e-4,
        "{variant}: logits differ by {err:.2e} of their range"
    );
}

#[test]
fn saved_bnb_checkpoints_give_transformers_logits() {
    for variant in ["llama_nf4_dq", "llama_fp4", "qwen2_nf4_dq"] {
        let m = load(&quant_dir().join(variant), None);
        assert!(m.is_quantized(), "{variant}");
        // `lora_target: all` finds the quantized linears too
        assert_eq!(m.all_linear_modules().len(), 7, "{variant}");
        check(&m, variant, variant, true);
    }
    let m = load(&quant_dir().join("llama_int8"), None);
    check(&m, "llama_int8", "llama_int8", false);
    check(&m, "llama_int8", "llama_int8.train", true);
}

#[test]
fn saved_bnb_weights_dequantize_to_bitsandbytes_weights() {
    for variant in ["llama_nf4_dq", "llama_int8"] {
        let m = load(&quant_dir().join(variant), None);
        let want =
            Weights::from_files(&[quant_dir().join(format!("{variant}_dequant.safetensors"))])
                .unwrap();
        let mut checked = 0;
        for l in &m.layers {
            let p = format!("model.layers.{}", l.index);
            let mut linears = l.self_attn.linears();
            linears.extend(l.mlp.as_ref().unwrap().linears());
            assert_eq!(linears.len(), 7);
            for (name, lin) in linears {
                let q: &QuantBase = lin.quant.as_deref().expect("quantized");
                let e = want
                    .get(&format!("{p}.{name}.weight"), DType::F32, Device::Cpu)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap();
                let got = q.dequantize();
                let same = got.iter().zip(&e).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{variant} {p}.{name}: dequantized weight differs");
                checked += 1;
            }
        }
        assert_eq!(checked, 14, "{variant}");
    }
}

#[test]
fn quantizing_on_the_fly_gives_the_saved_models_logits() {
    let cases = [
        (
            "llama",
            "llama_nf4_dq",
            QuantSpec::Four {
                kind: FourBit::Nf4,
                double_quant: true,
            },
        ),
        (
            "llama",
            "llama_fp4",
            QuantSpec::Four {
                kind: FourBit::Fp4,
                double_quant: false,
            },
        ),
        (
            "qwen2",
            "qwen2_nf4_dq",
            QuantSpec::Four {
                kind: FourBit::Nf4,
                double_quant: true,
            },
        ),
    ];
    for (src, variant, spec) in cases {
        let m = load(&source_model(src), Some(&spec));
        check(&m, variant, variant, true);
    }
    let spec = QuantSpec::Eight { threshold: 6.0 };
    let m = load(&source_model("llama"), Some(&spec));
    check(&m, "llama_int8", "llama_int8", false);
    check(&m, "llama_int8", "llama_int8.train", true);
}

#[test]
fn other_quantization_methods_are_refused_naming_the_method() {
    let dir = std::env::temp_dir().join(format!("lmf-aqlm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = quant_dir().join("llama_nf4_dq");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["quantization_config"] = serde_json::json!({"quant_method": "aqlm", "bits": 2});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let err = CausalLM::load(&dir, DType::F32, Device::Cpu)
        .err()
        .expect("aqlm is refused")
        .to_string();
    assert!(
        err.contains("quant_method `aqlm` is not supported yet"),
        "{err}"
    );
    assert!(err.contains("config.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// DoRA on a quantized base (PEFT's `lora.bnb` DoRA: the weight norm of the dequantized
/// weight): the same forward and adapter gradients as DoRA on a dense model whose weights are
/// the dequantized ones.
#[test]
fn dora_on_a_quantized_base_equals_dora_on_its_dequantized_weights() {
    use lmf_autograd::{Tensor, Var};
    use lmf_models::LoraConfig;
    let spec = QuantSpec::Four {
        kind: FourBit::Nf4,
        double_quant: true,
    };
    let mut quant = load(&source_model("llama"), Some(&spec));
    let mut dense = load(&source_model("llama"), None);
    for (lq, ld) in quant.layers.iter().zip(dense.layers.iter_mut()) {
        let mut quants = lq.self_attn.linears();
        quants.extend(lq.mlp.as_ref().unwrap().linears());
        let mut denses = ld.self_attn.linears_mut();
        denses.extend(ld.mlp.as_mut().unwrap().linears_mut());
        assert_eq!(quants.len(), 7);
        for ((_, q), (_, d)) in quants.into_iter().zip(denses) {
            let (o, i) = q.dims();
            let w = q.quant.as_ref().unwrap().dequantize();
            d.weight = Var::leaf(Tensor::from_vec(w, &[o, i], Device::Cpu).unwrap(), false);
        }
    }
    let cfg = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: quant.all_linear_modules(),
        use_dora: true,
        init: lmf_models::LoraInit::NoInit,
        ..Default::default()
    };
    quant.add_lora(&cfg, 7).unwrap();
    dense.add_lora(&cfg, 7).unwrap();
    let ids: Vec<u32> = (60..75).collect();
    let run = |m: &CausalLM| {
        let y = m
            .forward(&lmf_models::SeqBatch::from_seqs(std::slice::from_ref(&ids)))
            .unwrap();
        let loss = y.sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Vec<f32>> = m
            .trainable_parameters()
            .iter()
            .map(|(_, v)| grads.get(v).unwrap().to_vec::<f32>().unwrap())
            .collect();
        (y.tensor().to_vec::<f32>().unwrap(), g)
    };
    let ((yq, gq), (yd, gd)) = (run(&quant), run(&dense));
    let close = |a: &[f32], b: &[f32], what: &str| {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let err = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(err <= 1e-5 * scale, "{what}: {err} of {scale}");
    };
    close(&yq, &yd, "logits");
    assert_eq!(gq.len(), gd.len());
    assert_eq!(gq.len(), 14 * 3, "A, B and the magnitude of every linear");
    for (k, (a, b)) in gq.iter().zip(&gd).enumerate() {
        close(a, b, &format!("grad {k}"));
    }
}
