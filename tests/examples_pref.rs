//! The preference examples of `examples/train_lora/` (`llama3_lora_reward.yaml`,
//! `llama3_lora_dpo.yaml`, `llama3_lora_kto.yaml`) end to end through the `lmf` binary, on the
//! tiny Llama of `tests/fixtures/hf/train` and the demo sets of `data/`, cut to 3 steps: the
//! run succeeds, every logged loss is finite, the stage's own metrics are in
//! `trainer_state.json`'s log history (LLaMA-Factory 0.9.5's key names: `rewards/accuracies`,
//! `logps/chosen`, ... for dpo, `kl` for kto), the files LF writes are there (the value head of
//! rm, the LoRA adapter, the loss plots `plot_loss` asks for). Plus: an unsupported
//! combination fails with one line that names the key.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `lmf train examples/train_lora/<yaml>` on the tiny model, 3 steps of 2 rows, every step
/// logged, no checkpoint before the end; `extra` overrides follow.
fn train(yaml: &str, out: &Path, extra: &[&str]) -> Output {
    let root = root();
    let model = root.join("tests/fixtures/hf/train/models/llama");
    let mut args = vec![
        "train".to_string(),
        format!("examples/train_lora/{yaml}"),
        format!("model_name_or_path={}", model.display()),
        "template=llama3".into(),
        format!("dataset_dir={}", root.join("data").display()),
        format!("output_dir={}", out.display()),
        "cutoff_len=128".into(),
        "max_samples=8".into(),
        "max_steps=3".into(),
        "per_device_train_batch_size=2".into(),
        "gradient_accumulation_steps=1".into(),
        "logging_steps=1".into(),
        "save_steps=1000".into(),
        "plot_loss=true".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_lmf"))
        .current_dir(&root)
        .args(&args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run lmf")
}

/// Runs the example into a fresh scratch folder; fails the test on a non-zero exit.
fn run_example(yaml: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!(
        "lmf-examples-pref-{}-{}",
        std::process::id(),
        yaml.trim_end_matches(".yaml")
    ));
    let _ = std::fs::remove_dir_all(&out);
    let res = train(yaml, &out, &[]);
    assert!(
        res.status.success(),
        "{yaml}: lmf train failed:\n{}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

/// `trainer_log.jsonl`: one finite loss per step (3 steps, logging_steps 1).
fn check_trainer_log(yaml: &str, out: &Path) -> Vec<Value> {
    let log: Vec<Value> = std::fs::read_to_string(out.join("trainer_log.jsonl"))
        .unwrap_or_else(|e| panic!("{yaml}: trainer_log.jsonl: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&Value> = log.iter().filter(|l| l.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 3, "{yaml}: logged steps in {log:?}");
    for l in &steps {
        let loss = l["loss"].as_f64().unwrap_or(f64::NAN);
        assert!(loss.is_finite(), "{yaml}: loss {l}");
    }
    log
}

/// The training entries (those with a `loss`) of `trainer_state.json`'s `log_history`.
fn train_history(yaml: &str, out: &Path) -> Vec<Value> {
    let state = read_json(&out.join("trainer_state.json"));
    let hist: Vec<Value> = state["log_history"]
        .as_array()
        .unwrap_or_else(|| panic!("{yaml}: no log_history"))
        .iter()
        .filter(|e| e.get("loss").is_some())
        .cloned()
        .collect();
    assert_eq!(hist.len(), 3, "{yaml}: {state}");
    hist
}

/// `key` is logged as a finite number in at least one entry of `hist` (every entry if `all`).
fn check_metric(yaml: &str, hist: &[Value], key: &str, all: bool) {
    let mut seen = 0;
    for e in hist {
        match e.get(key) {
            Some(v) => {
                let x = v.as_f64().unwrap_or(f64::NAN);
                assert!(x.is_finite(), "{yaml}: {key} = {v} in {e}");
                seen += 1;
            }
            None => assert!(!all, "{yaml}: no {key} in {e}"),
        }
    }
    assert!(seen > 0, "{yaml}: {key} never logged: {hist:?}");
}

fn check_files(yaml: &str, out: &Path, files: &[&str]) {
    for f in files {
        assert!(out.join(f).is_file(), "{yaml}: no {f} in {}", out.display());
    }
}

/// What every stage writes: the adapter, the results, the loss plot.
const COMMON: [&str; 7] = [
    "adapter_config.json",
    "adapter_model.safetensors",
    "trainer_log.jsonl",
    "trainer_state.json",
    "train_results.json",
    "all_results.json",
    "training_loss.png",
];

fn check_train_loss(yaml: &str, out: &Path) {
    let res = read_json(&out.join("all_results.json"));
    let loss = res["train_loss"].as_f64().unwrap_or(f64::NAN);
    assert!(loss.is_finite(), "{yaml}: all_results.json {res}");
}

#[test]
fn reward_example_trains_a_value_head() {
    let yaml = "llama3_lora_reward.yaml";
    let out = run_example(yaml);
    check_trainer_log(yaml, &out);
    train_history(yaml, &out);
    check_train_loss(yaml, &out);
    check_files(yaml, &out, &COMMON);
    // LF's rm workflow: the value head next to the adapter (fix_valuehead_checkpoint)
    check_files(yaml, &out, &["value_head.safetensors"]);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn dpo_example_logs_rewards_and_logps() {
    let yaml = "llama3_lora_dpo.yaml";
    let out = run_example(yaml);
    let log = check_trainer_log(yaml, &out);
    // LF's LogCallback copies rewards/accuracies into trainer_log.jsonl as `accuracy`
    for l in log.iter().filter(|l| l.get("loss").is_some()) {
        let acc = l["accuracy"].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&acc), "{yaml}: accuracy in {l}");
    }
    let hist = train_history(yaml, &out);
    for key in [
        "rewards/accuracies",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
    ] {
        check_metric(yaml, &hist, key, true);
    }
    for e in &hist {
        let acc = e["rewards/accuracies"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{yaml}: {e}");
        // log-probabilities of whole responses: negative
        assert!(e["logps/chosen"].as_f64().unwrap() < 0.0, "{yaml}: {e}");
    }
    check_train_loss(yaml, &out);
    check_files(yaml, &out, &COMMON);
    // LF's dpo workflow plots `loss` and `rewards/accuracies`
    check_files(yaml, &out, &["training_rewards_accuracies.png"]);
    assert!(!out.join("value_head.safetensors").exists(), "{yaml}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn kto_example_logs_the_kl_estimate() {
    let yaml = "llama3_lora_kto.yaml";
    let out = run_example(yaml);
    check_trainer_log(yaml, &out);
    let hist = train_history(yaml, &out);
    check_metric(yaml, &hist, "kl", true);
    // per step only for the kind of rows the batch held: 6 of the first 8 rows (4 good, 4
    // bad) hold both kinds
    check_metric(yaml, &hist, "rewards/chosen", false);
    check_metric(yaml, &hist, "rewards/rejected", false);
    check_metric(yaml, &hist, "logps/chosen", false);
    check_train_loss(yaml, &out);
    check_files(yaml, &out, &COMMON);
    // LF's kto workflow plots `loss` and `rewards/chosen`
    check_files(yaml, &out, &["training_rewards_chosen.png"]);
    let _ = std::fs::remove_dir_all(&out);
}

/// `lmf train` on the dpo example with `extra`, expected to fail with one line; returns it.
fn one_line_error(yaml: &str, extra: &[&str]) -> String {
    let out = std::env::temp_dir().join(format!(
        "lmf-examples-pref-err-{}-{}",
        std::process::id(),
        extra.join("_").replace(['/', '='], "-")
    ));
    let res = train(yaml, &out, extra);
    let _ = std::fs::remove_dir_all(&out);
    assert!(!res.status.success(), "{extra:?} should fail");
    let err = String::from_utf8_lossy(&res.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
    err
}

#[test]
fn an_unknown_pref_loss_fails_in_one_line_naming_the_key() {
    let err = one_line_error("llama3_lora_dpo.yaml", &["pref_loss=bogus"]);
    assert!(err.contains("pref_loss"), "{err}");
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn unsupported_preference_combinations_fail_in_one_line_naming_the_key() {
    let dpo = "llama3_lora_dpo.yaml";
    // LF: label smoothing belongs to the sigmoid loss only
    let err = one_line_error(dpo, &["pref_loss=ipo", "dpo_label_smoothing=0.1"]);
    assert!(err.contains("dpo_label_smoothing"), "{err}");
    // LF: stage rm / dpo take ranking datasets only, kto none
    let err = one_line_error(dpo, &["dataset=alpaca_demo"]);
    assert!(err.contains("not applicable"), "{err}");
    assert!(err.contains("alpaca_demo"), "{err}");
    let err = one_line_error("llama3_lora_kto.yaml", &["dataset=dpo_demo"]);
    assert!(err.contains("not applicable"), "{err}");
    assert!(err.contains("dpo_demo"), "{err}");
}

#[test]
fn ppo_example_trains_against_the_reward_example() {
    // its own reward model folder: reward_example_trains_a_value_head runs beside this test
    let reward = std::env::temp_dir().join(format!(
        "lmf-examples-pref-{}-ppo-reward",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&reward);
    let res = train("llama3_lora_reward.yaml", &reward, &[]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let yaml = "llama3_lora_ppo.yaml";
    let out = std::env::temp_dir().join(format!("lmf-examples-pref-{}-ppo", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let res = train(
        yaml,
        &out,
        &[
            &format!("reward_model={}", reward.display()),
            "max_new_tokens=8",
        ],
    );
    assert!(
        res.status.success(),
        "{yaml}: lmf train failed:\n{}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    // LF's PPO log: loss and reward per logged step, printed as `str(logs)`
    let log = check_trainer_log(yaml, &out);
    for l in log.iter().filter(|l| l.get("loss").is_some()) {
        assert!(
            l["reward"].as_f64().unwrap_or(f64::NAN).is_finite(),
            "{yaml}: {l}"
        );
    }
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("{'loss': "), "{yaml}: {stdout}");
    check_files(
        yaml,
        &out,
        &[
            "adapter_config.json",
            "adapter_model.safetensors",
            "value_head.safetensors",
            "trainer_state.json",
            "training_loss.png",
            "training_reward.png",
        ],
    );
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&reward);
}
