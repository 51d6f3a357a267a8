//! LoRA-family adapters against PEFT 0.18.1 (fixtures from
//! `tests/fixtures/hf/adapter/make_adapters.py`): PEFT folders load and give PEFT's logits,
//! merging gives `merge_and_unload`'s logits, PiSSA init and PiSSA → LoRA conversion match,
//! save → load round-trips, gradients of the LoRA/DoRA forward match finite differences, and
//! bad folders are one-line errors naming the file and tensor. `peft_reloads_our_adapter`
//! writes an adapter for `check_lmf_adapter.py` (PEFT reloading our files).

use lmf_autograd::gradcheck::GradCheck;
use lmf_autograd::rng::{rng_state, set_rng_state};
use lmf_autograd::{no_grad, DType, Device, Tensor, Var};
use lmf_models::adapter::io::WEIGHTS_FILE;
use lmf_models::adapter::{is_adapter_param, set_training, LoraConfig, LoraInit};
use lmf_models::model::linear::dora_weight_norm;
use lmf_models::model::{Linear, Lora};
use lmf_models::{CausalLM, SeqBatch, Weights};
use std::path::{Path, PathBuf};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");
const TOL: f32 = 1e-4;
const ALL: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

fn case_dir(case: &str) -> PathBuf {
    Path::new(FIX).join("adapter").join(case)
}

fn base(name: &str) -> CausalLM {
    CausalLM::load(
        &Path::new(FIX).join("models").join(name),
        DType::F32,
        Device::Cpu,
    )
    .unwrap()
}

/// The base model of a case (from cases.json).
fn base_of(case: &str) -> &'static str {
    if case.starts_with("llama") {
        "llama"
    } else if case.starts_with("qwen3_moe") {
        "qwen3_moe"
    } else if case.starts_with("gpt_oss") {
        "gpt_oss"
    } else if case.starts_with("qwen3") {
        "qwen3"
    } else {
        "qwen2"
    }
}

/// The fixture's token sequences (lengths from cases.json) and expected tensors.
struct Expected {
    seqs: Vec<Vec<u32>>,
    w: Weights,
}

impl Expected {
    fn of(case: &str) -> Expected {
        let cases: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(FIX).join("adapter/cases.json")).unwrap(),
        )
        .unwrap();
        let lens: Vec<usize> = cases[case]["seq_lens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let w = Weights::from_files(&[case_dir(case).join("expected.safetensors")]).unwrap();
        let ids = w.get("input_ids", DType::I64, Device::Cpu).unwrap();
        let ids = ids.to_vec::<i64>().unwrap();
        let mut seqs = vec![];
        let mut at = 0;
        for n in lens {
            seqs.push(ids[at..at + n].iter().map(|&i| i as u32).collect());
            at += n;
        }
        Expected { seqs, w }
    }

    fn tensor(&self, name: &str) -> Vec<f32> {
        self.w
            .get(name, DType::F32, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap()
    }
}

fn logits(m: &CausalLM, seqs: &[Vec<u32>]) -> Vec<f32> {
    no_grad(|| m.forward(&SeqBatch::from_seqs(seqs)))
        .unwrap()
        .tensor()
        .to_vec()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const CASES: [&str; 10] = [
    "llama_lora",
    "llama_rslora",
    "llama_dora",
    "qwen2_lora_mts",
    "qwen2_dora_bias",
    "qwen2_pissa",
    "llama_lora_embed",
    "qwen3_lora_embed",
    "qwen3_moe_lora",
    "gpt_oss_lora",
];

#[test]
fn peft_adapters_give_peft_logits_and_merge_gives_merged_logits() {
    for case in CASES {
        let exp = Expected::of(case);
        let base_model = base(base_of(case));
        let base_logits = logits(&base_model, &exp.seqs);
        let mut m = base_model;
        let cfg = m.load_adapter(&case_dir(case), false).unwrap();
        assert!(m.has_adapter());
        let ours = logits(&m, &exp.seqs);
        let peft = exp.tensor("peft_logits");
        let d = max_diff(&ours, &peft);
        // the adapter must matter, or the comparison proves nothing
        assert!(
            max_diff(&base_logits, &peft) > 0.1,
            "{case}: adapter has no effect"
        );
        assert!(d <= TOL, "{case}: logits differ from PEFT by {d}");
        let tied = m.lm_head.is_none();
        m.merge_adapter().unwrap();
        assert!(!m.has_adapter(), "{case}: adapter left after merge");
        let merged = logits(&m, &exp.seqs);
        if case == "qwen3_lora_embed" {
            // PEFT adds both embedding increments into the one tied tensor and so changes the
            // model; lmf unties the head and keeps what the adapter computed.
            assert!(tied && m.lm_head.is_some() && !m.config.tie_word_embeddings);
            let peft_merged = exp.tensor("merged_logits");
            assert!(
                max_diff(&peft_merged, &peft) > 1.0,
                "{case}: PEFT merge kept the model"
            );
            let d = max_diff(&merged, &peft);
            assert!(
                d <= TOL,
                "{case}: merged logits differ from the adapter's by {d}"
            );
        } else {
            let d = max_diff(&merged, &exp.tensor("merged_logits"));
            assert!(d <= TOL, "{case}: merged logits differ from PEFT by {d}");
        }
        eprintln!("{case}: ok (r {}, dora {})", cfg.r, cfg.use_dora);
    }
}

#[test]
fn all_linear_modules_is_llamafactorys_lora_target_all() {
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(FIX).join("adapter/cases.json")).unwrap(),
    )
    .unwrap();
    for name in ["llama", "qwen2", "qwen3_moe", "gpt_oss"] {
        let lf: Vec<String> =
            serde_json::from_value(cases[format!("lf_all_linear_modules.{name}")].clone()).unwrap();
        assert_eq!(base(name).all_linear_modules(), lf, "{name}");
    }
}

#[test]
fn config_reads_what_peft_wrote() {
    let cfg = LoraConfig::from_peft_file(&case_dir("qwen2_lora_mts").join("adapter_config.json"))
        .unwrap();
    assert_eq!((cfg.r, cfg.lora_alpha, cfg.lora_dropout), (4, 8.0, 0.0));
    assert_eq!(cfg.modules_to_save, vec!["lm_head", "embed_tokens"]);
    assert_eq!(cfg.init, LoraInit::NoInit);
    let mut t = cfg.target_modules.clone();
    t.sort();
    assert_eq!(t, vec!["down_proj", "k_proj", "q_proj", "v_proj"]);
    let rs =
        LoraConfig::from_peft_file(&case_dir("llama_rslora").join("adapter_config.json")).unwrap();
    assert!(rs.use_rslora && (rs.scale() - 8.0).abs() < 1e-12);
    let p =
        LoraConfig::from_peft_file(&case_dir("qwen2_pissa").join("adapter_config.json")).unwrap();
    assert_eq!(p.init, LoraInit::Pissa { niter: -1 });
}

/// Keys of a JSON object file.
fn json_keys(path: &Path) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn tensor_names(dir: &Path) -> Vec<String> {
    let w = Weights::from_files(&[dir.join(WEIGHTS_FILE)]).unwrap();
    w.names().map(str::to_string).collect()
}

#[test]
fn save_then_load_round_trips_with_peft_names() {
    for case in [
        "llama_dora",
        "qwen2_lora_mts",
        "llama_lora_embed",
        "qwen3_lora_embed",
    ] {
        let exp = Expected::of(case);
        let mut m = base(base_of(case));
        let cfg = m.load_adapter(&case_dir(case), true).unwrap();
        let before = logits(&m, &exp.seqs);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("adapter-rt-{case}"));
        let _ = std::fs::remove_dir_all(&dir);
        m.save_adapter(&dir, &cfg, "base").unwrap();
        // same file layout as PEFT's own folder
        assert_eq!(tensor_names(&dir), tensor_names(&case_dir(case)), "{case}");
        assert_eq!(
            json_keys(&dir.join("adapter_config.json")),
            json_keys(&case_dir(case).join("adapter_config.json")),
            "{case}"
        );
        assert!(!dir.join("adapter_model.safetensors.tmp").exists());
        let mut again = base(base_of(case));
        let cfg2 = again.load_adapter(&dir, true).unwrap();
        assert_eq!(cfg2, cfg);
        assert_eq!(logits(&again, &exp.seqs), before, "{case}");
        // trainable set: the adapter and the saved modules, nothing else
        for (n, v) in again.named_parameters() {
            let saved = !cfg.modules_to_save.is_empty()
                && (n == "lm_head.weight" || n == "model.embed_tokens.weight");
            let want = is_adapter_param(&n) || saved;
            assert_eq!(v.requires_grad(), want, "{case}: {n}");
        }
    }
}

#[test]
fn add_lora_starts_as_a_no_op_on_a_frozen_base() {
    let exp = Expected::of("llama_lora");
    let mut m = base("llama");
    let before = logits(&m, &exp.seqs);
    let cfg = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: vec!["q_proj".into(), "down_proj".into()],
        use_dora: true,
        ..Default::default()
    };
    m.add_lora(&cfg, 42).unwrap();
    assert_eq!(logits(&m, &exp.seqs), before);
    let trainable = m.trainable_parameters();
    // 2 layers × 2 targets × (A, B, magnitude)
    assert_eq!(trainable.len(), 12);
    for (n, v) in &trainable {
        assert!(is_adapter_param(n), "{n}");
        let x: Vec<f32> = v.tensor().to_vec().unwrap();
        if n.ends_with("lora_B.weight") {
            assert!(x.iter().all(|&b| b == 0.0), "{n}");
        } else if n.ends_with("lora_A.weight") {
            // kaiming-uniform(a=√5): U(-1/√in, 1/√in), in = 64 or 128
            let fan_in = v.shape()[1] as f32;
            let bound = 1.0 / fan_in.sqrt();
            assert!(x.iter().all(|a| a.abs() <= bound), "{n}");
            let spread = x.iter().fold(0f32, |m, a| m.max(a.abs()));
            assert!(spread > 0.8 * bound, "{n}: {spread} vs {bound}");
        }
    }
    // same seed, same adapter; the two A's of one model differ
    let mut m2 = base("llama");
    m2.add_lora(&cfg, 42).unwrap();
    let a = |m: &CausalLM, n: &str| -> Vec<f32> {
        let p = m.named_parameters();
        p.iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .tensor()
            .to_vec()
            .unwrap()
    };
    let q0 = "model.layers.0.self_attn.q_proj.lora_A.weight";
    let q1 = "model.layers.1.self_attn.q_proj.lora_A.weight";
    assert_eq!(a(&m, q0), a(&m2, q0));
    assert_ne!(a(&m, q0), a(&m, q1));
    let e = m.add_lora(&cfg, 1).unwrap_err().to_string();
    assert!(e.contains("already has an adapter"), "{e}");
}

#[test]
fn lm_head_to_save_unties_a_tied_model() {
    let exp = Expected::of("llama_lora");
    let mut m = base("llama3");
    assert!(m.lm_head.is_none(), "llama3 fixture is tied");
    let before = logits(&m, &exp.seqs);
    let cfg = LoraConfig {
        r: 2,
        lora_alpha: 4.0,
        target_modules: vec!["v_proj".into()],
        modules_to_save: vec!["lm_head".into()],
        ..Default::default()
    };
    m.add_lora(&cfg, 1).unwrap();
    assert!(m.lm_head.is_some());
    assert_eq!(logits(&m, &exp.seqs), before);
    let names: Vec<String> = m
        .trainable_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"lm_head.weight".to_string()));
    assert!(!names.contains(&"model.embed_tokens.weight".to_string()));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("adapter-tied");
    let _ = std::fs::remove_dir_all(&dir);
    m.save_adapter(&dir, &cfg, "base").unwrap();
    assert!(tensor_names(&dir).contains(&"base_model.model.lm_head.weight".to_string()));
    let mut again = base("llama3");
    again.load_adapter(&dir, false).unwrap();
    assert_eq!(logits(&again, &exp.seqs), before);
    let bad = LoraConfig {
        modules_to_save: vec!["no_such_module".into()],
        ..cfg
    };
    let e = base("llama3").add_lora(&bad, 1).unwrap_err().to_string();
    assert!(e.contains("no_such_module"), "{e}");
}

#[test]
fn pissa_init_matches_peft_residual_and_delta() {
    let exp = Expected::of("qwen2_pissa");
    let mut m = base("qwen2");
    let cfg = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "up_proj".into()],
        init: LoraInit::Pissa { niter: -1 },
        ..Default::default()
    };
    m.add_lora(&cfg, 0).unwrap();
    let params = m.named_parameters();
    let get = |n: &str| -> Tensor {
        params
            .iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .tensor()
            .clone()
    };
    let mut checked = 0;
    for name in exp.w.names().filter_map(|n| n.strip_prefix("residual.")) {
        let res: Vec<f32> = get(&format!("{name}.weight")).to_vec().unwrap();
        let d = max_diff(&res, &exp.tensor(&format!("residual.{name}")));
        assert!(d < 1e-4, "{name}: residual differs by {d}");
        let (a, b) = (
            get(&format!("{name}.lora_A.weight")),
            get(&format!("{name}.lora_B.weight")),
        );
        let delta: Vec<f32> = b
            .matmul(&a)
            .unwrap()
            .scale(cfg.scale())
            .unwrap()
            .to_vec()
            .unwrap();
        let d = max_diff(&delta, &exp.tensor(&format!("delta.{name}")));
        assert!(d < 1e-4, "{name}: s·B·A differs by {d}");
        checked += 1;
    }
    assert_eq!(checked, 6);
    // randomized SVD: the same split up to the approximation (W itself is recovered exactly)
    let mut fast = base("qwen2");
    let before = logits(&fast, &exp.seqs);
    let cfg4 = LoraConfig {
        init: LoraInit::Pissa { niter: 4 },
        ..cfg.clone()
    };
    fast.add_lora(&cfg4, 9).unwrap();
    let d = max_diff(&logits(&fast, &exp.seqs), &before);
    assert!(d < 1e-4, "randomized PiSSA changed the model output by {d}");
}

#[test]
fn pissa_conversion_matches_peft() {
    let dir = case_dir("qwen2_pissa");
    let mut m = base("qwen2");
    // the trained adapter (saved with init_lora_weights=true, as LF's pissa_backup)
    m.load_adapter(&dir.join("pissa_trained"), true).unwrap();
    let cfg = LoraConfig::from_peft_file(&dir.join("adapter_config.json")).unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("adapter-pissa-converted");
    let _ = std::fs::remove_dir_all(&out);
    m.save_pissa_converted(&out, &cfg, "base", &dir.join("pissa_init"))
        .unwrap();
    let ours = Weights::from_files(&[out.join(WEIGHTS_FILE)]).unwrap();
    let peft = Weights::from_files(&[dir.join("pissa_converted").join(WEIGHTS_FILE)]).unwrap();
    let names: Vec<&str> = peft.names().collect();
    assert_eq!(ours.names().collect::<Vec<_>>(), names);
    for n in names {
        let a: Vec<f32> = ours
            .get(n, DType::F32, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        let b: Vec<f32> = peft
            .get(n, DType::F32, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(a, b, "{n}");
    }
    let ours = LoraConfig::from_peft_file(&out.join("adapter_config.json")).unwrap();
    let peft =
        LoraConfig::from_peft_file(&dir.join("pissa_converted/adapter_config.json")).unwrap();
    assert_eq!(
        (ours.r, ours.lora_alpha, ours.init),
        (peft.r, peft.lora_alpha, peft.init)
    );
}

fn rand(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    Tensor::randn(seed, 0, shape, DType::F64, Device::Cpu)
        .unwrap()
        .scale(scale)
        .unwrap()
}

fn lora_linear_of(v: &[Var], magnitude: Option<Var>) -> Linear {
    Linear {
        weight: v[1].clone(),
        bias: Some(v[2].clone()),
        lora: Some(Lora {
            a: v[3].clone(),
            b: v[4].clone(),
            scale: 1.7,
            dropout: 0.0,
            magnitude,
        }),
        quant: None,
        tap: None,
    }
}

/// `[x, W, bias, A, B]` of a small layer, f64.
fn layer_inputs() -> Vec<Tensor> {
    let (n, inp, out, r) = (5, 7, 6, 3);
    vec![
        rand(&[n, inp], 1, 1.0),
        rand(&[out, inp], 2, 0.5),
        rand(&[out], 3, 0.5),
        rand(&[r, inp], 4, 0.5),
        rand(&[out, r], 5, 0.5),
    ]
}

#[test]
fn lora_forward_gradients_match_finite_differences() {
    GradCheck::default()
        .run("lora", &layer_inputs(), |v| {
            lora_linear_of(v, None).forward(&v[0])
        })
        .unwrap();
}

/// DoRA detaches ‖W + s·B·A‖ (PEFT, paper §4.3), so finite differences apply to x, bias and
/// the magnitude only; the W/A/B gradients are checked through the identity that at
/// `m = ‖W + s·B·A‖` DoRA's gradients equal plain LoRA's (which are checked above).
#[test]
fn dora_forward_gradients_match_finite_differences() {
    let l = layer_inputs();
    let m = rand(&[6], 6, 0.3).affine(1.0, 1.0).unwrap();
    let inputs = vec![l[0].clone(), l[2].clone(), m];
    GradCheck::default()
        .run("dora x/bias/m", &inputs, |v| {
            let fixed = |i: usize| Var::constant(l[i].clone());
            let vars = [v[0].clone(), fixed(1), v[1].clone(), fixed(3), fixed(4)];
            lora_linear_of(&vars, Some(v[2].clone())).forward(&v[0])
        })
        .unwrap();

    let norm = dora_weight_norm(&l[1], &l[3], &l[4], 1.7).unwrap();
    let grads = |magnitude: Option<Tensor>| -> Vec<Vec<f64>> {
        let vars: Vec<Var> = l.iter().map(|t| Var::param(t.clone())).collect();
        let y = lora_linear_of(&vars, magnitude.map(Var::constant))
            .forward(&vars[0])
            .unwrap();
        let w = rand(y.shape(), 8, 1.0);
        let loss = y.mul(&Var::constant(w)).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        vars.iter()
            .map(|v| g.get(v).unwrap().to_vec::<f64>().unwrap())
            .collect()
    };
    let (dora, lora) = (grads(Some(norm)), grads(None));
    for (i, (a, b)) in dora.iter().zip(&lora).enumerate() {
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(
            d < 1e-12,
            "input {i}: DoRA at m = norm differs from LoRA by {d}"
        );
    }
}

#[test]
fn dropout_only_in_training_mode() {
    let (n, inp, out, r) = (4, 8, 5, 2);
    for dora in [false, true] {
        let lin = Linear {
            weight: Var::constant(rand(&[out, inp], 2, 0.5)),
            bias: None,
            lora: Some(Lora {
                a: Var::param(rand(&[r, inp], 4, 0.5)),
                b: Var::param(rand(&[out, r], 5, 0.5)),
                scale: 2.0,
                dropout: 0.5,
                magnitude: dora.then(|| Var::param(rand(&[out], 6, 0.3).affine(1.0, 1.0).unwrap())),
            }),
            quant: None,
            tap: None,
        };
        let x = Var::constant(rand(&[n, inp], 1, 1.0));
        let eval = |lin: &Linear| -> Vec<f64> {
            no_grad(|| lin.forward(&x))
                .unwrap()
                .tensor()
                .to_vec()
                .unwrap()
        };
        set_training(true);
        let at = rng_state();
        let train: Vec<f64> = lin.forward(&x).unwrap().tensor().to_vec().unwrap();
        assert_ne!(
            rng_state(),
            at,
            "dora {dora}: dropout drew no random numbers"
        );
        // the mask depends on the RNG cursor only, not on grad mode (checkpoint replays)
        set_rng_state(at);
        let replay: Vec<f64> = no_grad(|| lin.forward(&x))
            .unwrap()
            .tensor()
            .to_vec()
            .unwrap();
        set_training(false);
        assert_eq!(train, replay, "dora {dora}");
        let mut plain = lin.clone();
        if let Some(l) = &mut plain.lora {
            l.dropout = 0.0;
        }
        assert_eq!(eval(&lin), eval(&plain), "dora {dora}");
        assert_ne!(train, eval(&lin), "dora {dora}: dropout had no effect");
    }
}

/// Writes a copy of `case`'s folder to a temp dir with `edit` applied to its config.
fn edited_copy(case: &str, tag: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = case_dir(case);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("adapter-bad-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join(WEIGHTS_FILE), dir.join(WEIGHTS_FILE)).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap())
            .unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("adapter_config.json"), cfg.to_string()).unwrap();
    dir
}

#[test]
fn bad_adapter_folders_are_errors_naming_file_and_tensor() {
    let err = |dir: &Path| {
        base("llama")
            .load_adapter(dir, true)
            .unwrap_err()
            .to_string()
    };
    let d = edited_copy("llama_rslora", "rank", |c| c["r"] = 2.into());
    let e = err(&d);
    assert!(
        e.contains("adapter_model.safetensors")
            && e.contains("lora_A.weight")
            && e.contains("shape"),
        "{e}"
    );
    let d = edited_copy("llama_rslora", "missing", |c| {
        c["target_modules"] = serde_json::json!(["q_proj", "v_proj", "o_proj"])
    });
    let e = err(&d);
    assert!(
        e.contains("missing tensor") && e.contains("o_proj.lora_A.weight"),
        "{e}"
    );
    // a failed load leaves the model as it was
    let mut m = base("llama");
    assert!(m.load_adapter(&d, true).is_err());
    assert!(!m.has_adapter());
    assert_eq!(m.trainable_parameters().len(), m.named_parameters().len());
    let d = edited_copy("llama_rslora", "extra", |c| {
        c["target_modules"] = serde_json::json!(["q_proj"])
    });
    let e = err(&d);
    assert!(
        e.contains("v_proj.lora_A.weight") && e.contains("names no layer"),
        "{e}"
    );
    let d = edited_copy("llama_rslora", "target", |c| {
        c["target_modules"] = serde_json::json!(["wq"])
    });
    let e = err(&d);
    assert!(e.contains("wq") && e.contains("q_proj"), "{e}");
    let d = edited_copy("llama_rslora", "pattern", |c| {
        c["rank_pattern"] = serde_json::json!({"q_proj": 8})
    });
    let e = err(&d);
    assert!(
        e.contains("adapter_config.json") && e.contains("rank_pattern"),
        "{e}"
    );
    let e = err(Path::new("/nonexistent-adapter"));
    assert!(
        e.contains("adapter_config.json") && e.contains("not found"),
        "{e}"
    );
}

/// Builds a non-trivial adapter with every option (rsLoRA, DoRA, biases, modules_to_save),
/// saves it and our logits to `target/tmp/adapter-for-peft/` for `check_lmf_adapter.py`.
#[test]
fn peft_reloads_our_adapter() {
    let exp = Expected::of("qwen2_lora_mts");
    let base_dir = Path::new(FIX).join("models/qwen2");
    let mut m = base("qwen2");
    let cfg = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.05,
        target_modules: ALL.iter().map(|s| s.to_string()).collect(),
        target_regex: None,
        use_rslora: true,
        use_dora: true,
        init: LoraInit::Default,
        modules_to_save: vec!["lm_head".into()],
    };
    m.add_lora(&cfg, 5).unwrap();
    // move B, the magnitudes and lm_head away from their starting values (as training would)
    for (k, (n, v)) in m.named_parameters_mut().into_iter().enumerate() {
        let t = v.tensor();
        let noise =
            Tensor::randn(77, (k as u64) << 32, t.shape(), DType::F32, Device::Cpu).unwrap();
        let new = if n.ends_with("lora_B.weight") {
            noise.scale(0.1).unwrap()
        } else if n.ends_with("lora_magnitude_vector") || n == "lm_head.weight" {
            t.mul(&noise.affine(0.1, 1.0).unwrap()).unwrap()
        } else {
            continue;
        };
        *v = Var::param(new);
    }
    let ours = logits(&m, &exp.seqs);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("adapter-for-peft");
    let _ = std::fs::remove_dir_all(&dir);
    m.save_adapter(&dir, &cfg, &base_dir.to_string_lossy())
        .unwrap();
    let rows: Vec<&[f32]> = ours.chunks(400).collect();
    let json = serde_json::json!({
        "base_model": base_dir.canonicalize().unwrap(),
        "seqs": exp.seqs,
        "logits": rows,
    });
    std::fs::write(dir.join("lmf_logits.json"), json.to_string()).unwrap();
    // our own reload gives the same logits
    let mut again = base("qwen2");
    again.load_adapter(&dir, false).unwrap();
    assert_eq!(logits(&again, &exp.seqs), ours);
    eprintln!("wrote {}", dir.display());
}
