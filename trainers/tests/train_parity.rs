//! The training loop against the HF Trainer itself: `tests/fixtures/hf/trainer/trainer_llama.json`
//! (made by `make_trainer.py` with transformers 5.6) logs loss, grad_norm, learning_rate and
//! epoch at every step of a sequential, accumulated, clipped, cosine, weight-decayed run, plus
//! the eval loss before and after and some final weights. lmf must reproduce all of them.

use std::path::{Path, PathBuf};

use lmf_autograd::{DType, Device};
use lmf_models::CausalLM;
use lmf_trainers::args::training::SaveStrategy;
use lmf_trainers::data::Example;
use lmf_trainers::train::{evaluate, HfModelIo, TrainConfig, Trainer};
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

/// The rows of `make_trainer.py` (same formula).
fn rows(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            let len = 5 + (i * 7) % 9;
            let ids: Vec<u32> = (0..len)
                .map(|t| ((i * 31 + t * 17) % 250 + 4) as u32)
                .collect();
            let labels = ids
                .iter()
                .enumerate()
                .map(|(t, &id)| if t < len / 3 { -100 } else { id as i64 })
                .collect();
            Example::single(ids, labels)
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

#[test]
fn matches_the_hf_trainer_step_by_step() {
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/trainer/trainer_llama.json")).unwrap(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("lmf-parity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = TrainConfig::new(&dir);
    cfg.train_batch_size = 2;
    cfg.eval_batch_size = 2;
    cfg.gradient_accumulation_steps = 2;
    cfg.max_steps = 6;
    cfg.learning_rate = 1e-3;
    cfg.lr_scheduler_type = "cosine".into();
    cfg.warmup_steps = 1.0;
    cfg.weight_decay = 0.01;
    cfg.max_grad_norm = 1.0;
    cfg.logging_steps = 1.0;
    cfg.save_strategy = SaveStrategy::No;
    cfg.disable_shuffling = true;
    cfg.progress_bar = false;
    // LLaMA-Factory's default (`disable_gradient_checkpointing: false`): per-layer recompute.
    cfg.gradient_checkpointing = true;
    let mut model = CausalLM::load(
        &PathBuf::from(format!("{ROOT}/models/llama")),
        DType::F32,
        Device::Cpu,
    )
    .unwrap();
    let (train, eval) = (rows(10), rows(5));
    let before = evaluate(&model, &eval, 2, "eval", 0.0).unwrap();
    let v = |m: &[(String, lmf_trainers::template::pyjson::PyJson)]| match &m[0].1 {
        lmf_trainers::template::pyjson::PyJson::Float(f) => *f,
        _ => panic!(),
    };
    assert!(
        close(v(&before), fx["eval_loss_before"].as_f64().unwrap(), 1e-5),
        "{} vs {}",
        v(&before),
        fx["eval_loss_before"]
    );

    let io = HfModelIo::new(None);
    let sets = vec![(String::new(), eval.clone())];
    let mut t = Trainer::new(&mut model, &cfg, &io, &train, &sets).unwrap();
    t.train().unwrap();
    let hist: Vec<_> = t
        .state
        .log_history
        .iter()
        .filter(|h| h.get("loss").is_some())
        .map(|h| serde_json::from_str::<Value>(&h.dumps()).unwrap())
        .collect();
    drop(t);
    assert_eq!(hist.len(), 6);
    let (loss, gn, lr, ep) = (
        floats(&fx["loss"]),
        floats(&fx["grad_norm"]),
        floats(&fx["learning_rate"]),
        floats(&fx["epoch"]),
    );
    for (i, h) in hist.iter().enumerate() {
        let step = i + 1;
        assert_eq!(h["step"], step);
        assert!(
            close(h["loss"].as_f64().unwrap(), loss[i], 1e-4),
            "step {step} loss {h} vs {}",
            loss[i]
        );
        assert!(
            close(h["grad_norm"].as_f64().unwrap(), gn[i], 1e-4),
            "step {step} grad_norm {h} vs {}",
            gn[i]
        );
        assert!(
            close(h["learning_rate"].as_f64().unwrap(), lr[i], 1e-9)
                || lr[i] == 0.0 && h["learning_rate"].as_f64().unwrap() == 0.0,
            "step {step} lr {h}"
        );
        assert!(
            close(h["epoch"].as_f64().unwrap(), ep[i], 1e-12),
            "step {step} epoch {h}"
        );
    }
    let after = evaluate(&model, &eval, 2, "eval", 0.0).unwrap();
    assert!(close(
        v(&after),
        fx["eval_loss_after"].as_f64().unwrap(),
        1e-4
    ));
    let norm = model.norm.tensor().to_vec::<f32>().unwrap();
    for (a, b) in norm.iter().zip(floats(&fx["final_norm_weight"])) {
        assert!((*a as f64 - b).abs() < 1e-4, "{a} vs {b}");
    }
    let q = model.layers[0].self_attn.linears()[0]
        .1
        .weight
        .tensor()
        .to_vec::<f32>()
        .unwrap();
    for (a, b) in q.iter().zip(floats(&fx["final_q_proj_row0"])) {
        assert!((*a as f64 - b).abs() < 1e-4, "{a} vs {b}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = Path::new(ROOT);
}

#[test]
fn predictions_match_llamafactory_save_predictions() {
    use lmf_trainers::args::GeneratingArguments;
    use lmf_trainers::train::predict::{predict, PREDICTIONS_FILE};
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/trainer/trainer_llama.json")).unwrap(),
    )
    .unwrap();
    let dir = PathBuf::from(format!("{ROOT}/models/llama"));
    let model = CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap();
    let tok = lmf_models::Tokenizer::from_dir(&dir).unwrap();
    let rows: Vec<Example> = rows(3)
        .into_iter()
        .map(|r| {
            let cut = r.input_ids.len() / 3 + 1;
            let prompt = r.input_ids[..cut].to_vec();
            let label = r.input_ids[cut..].iter().map(|&i| i as i64).collect();
            Example {
                input_ids: prompt.clone(),
                labels: label,
                segments: vec![prompt.len()],
                position_ids: (0..prompt.len() as u32).collect(),
            }
        })
        .collect();
    let gen = GeneratingArguments {
        do_sample: false,
        max_new_tokens: 8,
        ..GeneratingArguments::default()
    };
    let out = std::env::temp_dir().join(format!("lmf-predict-{}", std::process::id()));
    let metrics = predict(&model, &tok, &rows, &gen, 2, 42, &out).unwrap();
    let keys: Vec<&str> = metrics.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys[..5],
        [
            "predict_rouge-1",
            "predict_rouge-2",
            "predict_rouge-l",
            "predict_bleu-4",
            "predict_runtime"
        ]
    );
    let text = std::fs::read_to_string(out.join(PREDICTIONS_FILE)).unwrap();
    let want: Vec<String> = fx["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        // Same JSON object (escaping of control characters may differ in spelling).
        let g: Value = serde_json::from_str(g).unwrap();
        let w: Value = serde_json::from_str(w).unwrap();
        assert_eq!(g, w);
    }
    assert!(out.join("predict_results.json").is_file());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn pt_rows_normalise_by_unshifted_label_count_like_hf() {
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/trainer/trainer_llama.json")).unwrap(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("lmf-parity-pt-{}", std::process::id()));
    let mut cfg = TrainConfig::new(&dir);
    cfg.train_batch_size = 2;
    cfg.gradient_accumulation_steps = 2;
    cfg.max_steps = 2;
    cfg.learning_rate = 1e-3;
    cfg.logging_steps = 1.0;
    cfg.save_strategy = SaveStrategy::No;
    cfg.disable_shuffling = true;
    cfg.progress_bar = false;
    let mut model = CausalLM::load(
        &PathBuf::from(format!("{ROOT}/models/llama")),
        DType::F32,
        Device::Cpu,
    )
    .unwrap();
    let train: Vec<Example> = rows(8)
        .into_iter()
        .map(|r| {
            let labels = r.input_ids.iter().map(|&i| i as i64).collect();
            Example::single(r.input_ids, labels)
        })
        .collect();
    let io = HfModelIo::new(None);
    let mut t = Trainer::new(&mut model, &cfg, &io, &train, &[]).unwrap();
    let out = t.train().unwrap();
    let want = floats(&fx["pt_loss"]);
    assert_eq!(out.losses.len(), want.len());
    for ((_, got), w) in out.losses.iter().zip(&want) {
        assert!(close(*got, *w, 1e-4), "{got} vs {w}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
