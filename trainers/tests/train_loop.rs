//! End-to-end checks of the training loop on the tiny random Llama fixture: loss
//! normalisation under accumulation, output files, atomic checkpoints and bit-exact resume.

use std::path::{Path, PathBuf};

use lmf_autograd::{DType, Device};
use lmf_models::CausalLM;
use lmf_trainers::args::training::SaveStrategy;
use lmf_trainers::data::{DatasetModule, Example};
use lmf_trainers::train::{
    freeze_trainable, run_workflow, FreezeSpec, HfModelIo, TrainConfig, Trainer,
};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/hf/models/llama"
);

fn model() -> CausalLM {
    CausalLM::load(Path::new(MODEL), DType::F32, Device::Cpu).unwrap()
}

/// Deterministic rows of varied length; the first third of each row is a masked prompt.
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

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lmf-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(dir: &Path) -> TrainConfig {
    let mut c = TrainConfig::new(dir);
    c.train_batch_size = 2;
    c.gradient_accumulation_steps = 2;
    c.max_steps = 6;
    c.learning_rate = 1e-3;
    c.lr_scheduler_type = "cosine".into();
    c.logging_steps = 1.0;
    c.save_steps = 2.0;
    c.disable_shuffling = false;
    c.progress_bar = false;
    c.gradient_checkpointing = false;
    c
}

fn weights(m: &CausalLM) -> Vec<Vec<f32>> {
    m.named_parameters()
        .iter()
        .map(|(_, v)| v.tensor().to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn resume_from_checkpoint_matches_an_uninterrupted_run() {
    let data = DatasetModule {
        train: rows(10),
        eval: vec![],
        stream: None,
    };
    // Uninterrupted: 6 steps.
    let d1 = out_dir("full");
    let cfg1 = config(&d1);
    let mut m1 = model();
    let io1 = HfModelIo::new(Some(PathBuf::from(MODEL)));
    let r1 = run_workflow(&mut m1, &cfg1, &io1, &data, true, false).unwrap();
    let full = r1.train.unwrap();
    assert_eq!(full.global_step, 6);
    assert_eq!(full.losses.len(), 6);

    // Resume from the run's own checkpoints: checkpoint-2 is mid-epoch (3 optimizer steps per
    // epoch: 10 rows, batch 2, accumulation 2), checkpoint-4 likewise in the second epoch.
    for k in [2usize, 4] {
        let ckpt = d1.join(format!("checkpoint-{k}"));
        assert!(ckpt.join("trainer_state.json").is_file());
        assert!(ckpt.join("optimizer.safetensors").is_file());
        assert!(ckpt.join("model.safetensors").is_file());
        let d2 = out_dir(&format!("resumed{k}"));
        let mut cfg2 = config(&d2);
        cfg2.resume_from_checkpoint = Some(ckpt);
        let mut m2 = model();
        let io2 = HfModelIo::new(Some(PathBuf::from(MODEL)));
        let mut t2 = Trainer::new(&mut m2, &cfg2, &io2, &data.train, &data.eval).unwrap();
        let resumed = t2.train().unwrap();
        assert_eq!(resumed.global_step, 6);
        assert_eq!(resumed.losses, full.losses[k..].to_vec());
        drop(t2);
        assert_eq!(weights(&m1), weights(&m2));
        let _ = std::fs::remove_dir_all(&d2);
    }
    let _ = std::fs::remove_dir_all(&d1);
}

#[test]
fn accumulation_normalises_by_the_tokens_of_the_whole_step() {
    // One step of batch 4 equals one step of batch 2 x accumulation 2 (same rows, same order):
    // both divide the summed token losses by the label tokens of all four rows.
    let data = rows(4);
    let run = |bs: usize, gas: usize, name: &str| {
        let d = out_dir(name);
        let mut c = config(&d);
        c.train_batch_size = bs;
        c.gradient_accumulation_steps = gas;
        c.max_steps = 1;
        c.disable_shuffling = true;
        c.save_strategy = SaveStrategy::No;
        let mut m = model();
        let io = HfModelIo::new(None);
        let mut t = Trainer::new(&mut m, &c, &io, &data, &[]).unwrap();
        let out = t.train().unwrap();
        drop(t);
        let _ = std::fs::remove_dir_all(&d);
        (out.losses[0].1, weights(&m))
    };
    let (l1, w1) = run(4, 1, "bs4");
    let (l2, w2) = run(2, 2, "bs2x2");
    assert!((l1 - l2).abs() < 1e-5 * l1.abs(), "{l1} vs {l2}");
    for (a, b) in w1.iter().zip(&w2) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}

#[test]
fn writes_the_llamafactory_output_files() {
    let d = out_dir("files");
    let mut c = config(&d);
    c.max_steps = 4;
    c.save_steps = 2.0;
    c.save_total_limit = Some(1);
    c.logging_steps = 2.0;
    c.eval_strategy = lmf_trainers::args::training::IntervalStrategy::Steps;
    c.eval_steps = Some(2.0);
    c.plot_loss = true;
    let data = DatasetModule {
        train: rows(8),
        eval: vec![(String::new(), rows(3))],
        stream: None,
    };
    let mut m = model();
    let io = HfModelIo::new(Some(PathBuf::from(MODEL)));
    let out = run_workflow(&mut m, &c, &io, &data, true, true).unwrap();
    for f in [
        "trainer_log.jsonl",
        "trainer_state.json",
        "train_results.json",
        "eval_results.json",
        "all_results.json",
        "running_log.txt",
        "model.safetensors",
        "config.json",
        "tokenizer.json",
    ] {
        assert!(d.join(f).is_file(), "missing {f}");
    }
    // save_total_limit 1: only the last checkpoint survives.
    assert!(!d.join("checkpoint-2").exists());
    assert!(d.join("checkpoint-4").is_dir());
    let log = std::fs::read_to_string(d.join("trainer_log.jsonl")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // steps 2 and 4: a loss line and an eval line each, then the train summary.
    assert_eq!(lines.len(), 5, "{log}");
    assert!(lines[0].starts_with("{\"current_steps\": 2, \"total_steps\": 4, \"loss\": "));
    assert!(lines[1].contains("\"eval_loss\": "));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("trainer_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["global_step"], 4);
    assert_eq!(state["log_history"].as_array().unwrap().len(), 5);
    assert_eq!(state["log_history"][0]["step"], 2);
    let eval = out.eval.unwrap();
    assert_eq!(eval[0].0, "eval_loss");
    // The saved model loads back and equals the trained one.
    let back = CausalLM::load(&d, DType::F32, Device::Cpu).unwrap();
    assert_eq!(weights(&back), weights(&m));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn freeze_trains_only_the_selected_layers() {
    let mut m = model();
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    let spec = FreezeSpec {
        trainable_layers: 1,
        trainable_modules: vec!["mlp".into()],
        extra_modules: vec![],
        use_llama_pro: false,
    };
    let (trainable, _) = freeze_trainable(&names, m.layers.len(), &spec).unwrap();
    assert_eq!(trainable.len(), 3);
    m.set_trainable(|n| trainable.iter().any(|t| t == n));
    let before = weights(&m);
    let d = out_dir("freeze");
    let mut c = config(&d);
    c.max_steps = 2;
    c.save_strategy = SaveStrategy::No;
    let data = rows(4);
    let io = HfModelIo::new(None);
    let mut t = Trainer::new(&mut m, &c, &io, &data, &[]).unwrap();
    t.train().unwrap();
    drop(t);
    let after = weights(&m);
    for ((name, b), a) in names.iter().zip(&before).zip(&after) {
        assert_eq!(b != a, trainable.contains(name), "{name}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn stop_flag_saves_a_checkpoint_and_stops() {
    let d = out_dir("stop");
    let mut c = config(&d);
    c.save_steps = 100.0;
    let data = rows(8);
    let mut m = model();
    let io = HfModelIo::new(None);
    let mut t = Trainer::new(&mut m, &c, &io, &data, &[]).unwrap();
    // What the first Ctrl-C does: stop after the current optimizer step, with a checkpoint.
    t.stop_flag()
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let out = t.train().unwrap();
    assert!(out.interrupted);
    assert_eq!(out.global_step, 1);
    assert!(d.join("checkpoint-1/trainer_state.json").is_file());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn several_eval_sets_log_eval_name_loss() {
    let d = out_dir("multieval");
    let mut c = config(&d);
    c.max_steps = 2;
    c.save_strategy = SaveStrategy::No;
    c.eval_strategy = lmf_trainers::args::training::IntervalStrategy::Steps;
    c.eval_steps = Some(2.0);
    let data = DatasetModule {
        train: rows(4),
        eval: vec![("alpaca".into(), rows(2)), ("sharegpt".into(), rows(3))],
        stream: None,
    };
    let mut m = model();
    let io = HfModelIo::new(None);
    let out = run_workflow(&mut m, &c, &io, &data, true, true).unwrap();
    let keys: Vec<&str> = out
        .eval
        .as_ref()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(
        keys.contains(&"eval_alpaca_loss") && keys.contains(&"eval_sharegpt_loss"),
        "{keys:?}"
    );
    let log = std::fs::read_to_string(d.join("trainer_log.jsonl")).unwrap();
    // Loss lines of steps 1 and 2, one line per eval set at step 2 (LF's jsonl keys hold no
    // eval_{name}_loss), then the train summary.
    assert_eq!(log.lines().count(), 5, "{log}");
    let state = std::fs::read_to_string(d.join("trainer_state.json")).unwrap();
    assert!(state.contains("\"eval_sharegpt_loss\""), "{state}");
    let _ = std::fs::remove_dir_all(&d);
}
