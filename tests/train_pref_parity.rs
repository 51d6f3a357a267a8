//! `lmf train` against LLaMA-Factory 0.9.5 on the preference stages: the rm / dpo / kto cases of
//! `tests/fixtures/hf/train/cases/` (written by `make_train.py` from real LF runs, see the fixture
//! README "Preference stages") are run through the `lmf` binary on the same YAML, and compared:
//!
//! - `trainer_log.jsonl` (LF's LogCallback: `loss`, `eval_loss`, `accuracy` = `rewards/accuracies`,
//!   `lr`, `epoch`), line by line over the lines with `loss` or `eval_loss`;
//! - `trainer_state.json` → `log_history`, same lines: LF's LogCallback drops the trainers'
//!   metrics, they are only here (`rewards/*`, `logps/*`, `sft_loss`, `odds_ratio_loss`, `kl`,
//!   `eval_accuracy` and the `eval_` forms);
//! - `all_results.json` (`train_loss`, and the final evaluation's `eval_loss` / `eval_rewards/*`
//!   ... where the case evaluates);
//! - the output file names (rm: `value_head.safetensors`, whose tensors are checked too) and the
//!   adapter config.
//!
//! Every metric of [`METRICS`] that LF logged (with its `eval_` form) must be in lmf's line and
//! within `REL` of LF's value, relative to the larger magnitude, plus `ABS`; the three
//! `rewards/{chosen,rejected,margins}` of a line share one magnitude (the largest of the three),
//! since a margin is a difference of rewards and can be near zero while they are not. `logits/*`
//! are not compared: they are means (dpo) or sums (kto) over every position of the padded batch,
//! pad positions included. `lr` within 1e-12, `epoch` within 1e-9, steps equal.

mod common;

use common::{
    case_dir, check_adapter_config, check_files, fixture_dir, read_json, read_jsonl, rel,
    run_lmf_train,
};
use serde_json::{Map, Value};
use std::path::Path;

/// Relative tolerance of every compared metric.
const REL: f64 = 1e-3;
/// Absolute floor (the rewards of a full-FT run are exactly 0 until the first update; kto's `kl`
/// is clamped at 0).
const ABS: f64 = 1e-6;

/// The metrics compared where LF logged them, also as `eval_<key>`.
const METRICS: [&str; 11] = [
    "loss",
    "accuracy",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "sft_loss",
    "odds_ratio_loss",
    "kl",
];

const REWARDS: [&str; 3] = ["rewards/chosen", "rewards/rejected", "rewards/margins"];

fn split_eval(key: &str) -> (&str, &str) {
    match key.strip_prefix("eval_") {
        Some(k) => ("eval_", k),
        None => ("", key),
    }
}

fn compared(key: &str) -> bool {
    METRICS.contains(&split_eval(key).1)
}

/// The magnitude the tolerance of `key` is relative to in LF's line `lf`.
fn scale(lf: &Map<String, Value>, key: &str, a: f64, b: f64) -> f64 {
    let mut s = a.abs().max(b.abs());
    let (prefix, k) = split_eval(key);
    if REWARDS.contains(&k) {
        for r in REWARDS {
            if let Some(v) = lf.get(&format!("{prefix}{r}")).and_then(Value::as_f64) {
                s = s.max(v.abs());
            }
        }
    }
    s
}

/// Every compared metric of LF's `lf` is in lmf's `us`, within tolerance; returns how many.
fn check_metrics(what: &str, lf: &Map<String, Value>, us: &Value) -> Result<usize, String> {
    let mut n = 0;
    for (k, v) in lf {
        let Some(a) = v.as_f64().filter(|_| compared(k)) else {
            continue;
        };
        let b = us
            .get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("{what}: lmf has no {k} in {us}"))?;
        let tol = REL * scale(lf, k, a, b) + ABS;
        if (a - b).abs() > tol {
            let diff = (a - b).abs();
            return Err(format!(
                "{what}: {k} LF {a} lmf {b} (|diff| {diff:e} > {tol:e})"
            ));
        }
        n += 1;
    }
    Ok(n)
}

/// The lines with `loss` or `eval_loss` of LF's `lf` and lmf's `us` agree one by one: the step
/// (`step_key`), every compared metric, the learning rate (`lr_key`) and the epoch. Returns how
/// many metric values were compared.
fn check_lines(
    what: &str,
    lf: &[Value],
    us: &[Value],
    step_key: &str,
    lr_key: &str,
) -> Result<usize, String> {
    let keyed = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .filter(|l| l.get("loss").is_some() || l.get("eval_loss").is_some())
            .cloned()
            .collect()
    };
    let (lf, us) = (keyed(lf), keyed(us));
    if lf.is_empty() {
        return Err(format!("{what}: LF logged nothing"));
    }
    if lf.len() != us.len() {
        let (a, b) = (lf.len(), us.len());
        return Err(format!(
            "{what}: {a} loss / eval_loss lines in LF, {b} in lmf"
        ));
    }
    let mut n = 0;
    for (a, b) in lf.iter().zip(&us) {
        let at = format!("{what} {step_key} {}", a[step_key]);
        if a[step_key] != b[step_key] {
            return Err(format!("{at}: lmf's {step_key} is {}", b[step_key]));
        }
        n += check_metrics(&at, a.as_object().unwrap(), b)?;
        if let Some(lr) = a.get(lr_key).and_then(Value::as_f64) {
            let ours = b[lr_key]
                .as_f64()
                .ok_or_else(|| format!("{at}: no {lr_key}"))?;
            if (lr - ours).abs() > 1e-12 {
                return Err(format!("{at}: {lr_key} LF {lr} lmf {ours}"));
            }
        }
        if let Some(e) = a.get("epoch").and_then(Value::as_f64) {
            let ours = b["epoch"]
                .as_f64()
                .ok_or_else(|| format!("{at}: no epoch"))?;
            if (e - ours).abs() >= 1e-9 {
                return Err(format!("{at}: epoch LF {e} lmf {ours}"));
            }
        }
    }
    Ok(n)
}

fn log_history(p: &Path) -> Vec<Value> {
    read_json(p)["log_history"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no log_history", p.display()))
        .clone()
}

/// `trainer_log.jsonl` (LF's LogCallback lines).
fn check_trainer_log(case: &str, ours: &Path) {
    let lf = read_jsonl(&case_dir(case).join("trainer_log.jsonl"));
    let us = read_jsonl(&ours.join("trainer_log.jsonl"));
    let what = format!("{case} trainer_log.jsonl");
    check_lines(&what, &lf, &us, "current_steps", "lr").unwrap_or_else(|e| panic!("{e}"));
}

/// `trainer_state.json` → `log_history`: where the rewards / logps / ... metrics are.
fn check_log_history(case: &str, ours: &Path) {
    let lf = log_history(&case_dir(case).join("trainer_state.json"));
    let us = log_history(&ours.join("trainer_state.json"));
    let what = format!("{case} trainer_state.json");
    check_lines(&what, &lf, &us, "step", "learning_rate").unwrap_or_else(|e| panic!("{e}"));
}

/// `all_results.json`: `train_loss`, `epoch` and the compared metrics of the final evaluation.
fn check_results(case: &str, ours: &Path) {
    let lf = read_json(&case_dir(case).join("all_results.json"));
    let us = read_json(&ours.join("all_results.json"));
    let what = format!("{case} all_results.json");
    let lf = lf.as_object().unwrap();
    let mut keys = lf.clone();
    keys.retain(|k, v| (k == "train_loss" || compared(k)) && v.is_f64());
    assert!(keys.contains_key("train_loss"), "{what}: no train_loss");
    for (k, v) in &keys {
        let a = v.as_f64().unwrap();
        let b = us
            .get(k)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{what}: lmf has no {k}"));
        let tol = REL * scale(&keys, k, a, b) + ABS;
        assert!((a - b).abs() <= tol, "{what}: {k} LF {a} lmf {b}");
    }
    if let Some(e) = lf.get("epoch").and_then(Value::as_f64) {
        let ours = us["epoch"].as_f64().unwrap();
        assert!((e - ours).abs() < 1e-9, "{what}: epoch LF {e} lmf {ours}");
    }
}

/// The value of `key: value` in the case's YAML (flat, one key a line, as `make_train.py` writes).
fn yaml_value(case: &str, key: &str) -> Option<String> {
    let p = case_dir(case).join(format!("{case}.yaml"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().trim_matches('\'').to_string())
    })
}

/// One tensor of a safetensors file; `values` read as little-endian f32.
struct Tensor {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

impl Tensor {
    fn layout(&self) -> (String, String, Vec<usize>) {
        (self.name.clone(), self.dtype.clone(), self.shape.clone())
    }
}

/// The tensors of a safetensors file, sorted by name.
fn tensors(p: &Path) -> Vec<Tensor> {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out: Vec<Tensor> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| Tensor {
            name,
            dtype: format!("{:?}", view.dtype()),
            shape: view.shape().to_vec(),
            values: view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// rm: lmf saved a value head with the tensors (names, f32, shapes) of the one the case resumed,
/// and trained it (LF trains the value head next to the LoRA weights).
fn check_value_head(case: &str, ours: &Path) {
    let lf_files = read_json(&case_dir(case).join("output_files.json"));
    if !lf_files
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "value_head.safetensors")
    {
        return;
    }
    let adapter = yaml_value(case, "adapter_name_or_path")
        .unwrap_or_else(|| panic!("{case}: no adapter_name_or_path"));
    let start = tensors(&fixture_dir().join(adapter).join("value_head.safetensors"));
    let end = tensors(&ours.join("value_head.safetensors"));
    let layout = |t: &[Tensor]| -> Vec<_> { t.iter().map(Tensor::layout).collect() };
    assert_eq!(
        layout(&start),
        layout(&end),
        "{case}: value_head.safetensors"
    );
    assert!(
        start.iter().zip(&end).any(|(a, b)| a.values != b.values),
        "{case}: the saved value head is the initial one"
    );
}

fn check_case(case: &str) {
    let ours = run_lmf_train("prefparity", case);
    check_trainer_log(case, &ours);
    check_log_history(case, &ours);
    check_results(case, &ours);
    check_files(case, &ours);
    check_adapter_config(case, &ours);
    check_value_head(case, &ours);
    let _ = std::fs::remove_dir_all(&ours);
}

const CASES: [&str; 15] = [
    "rm_llama",
    "rm_qwen",
    "dpo_sigmoid_llama",
    "dpo_sigmoid_ftx_llama",
    "dpo_orpo_llama",
    "dpo_orpo_ftx_llama",
    "dpo_simpo_llama",
    "dpo_simpo_ftx_llama",
    "dpo_sigmoid_qwen",
    "dpo_orpo_qwen",
    "dpo_full_llama",
    "dpo_bco_llama",
    "kto_llama",
    "kto_qwen",
    "kto_weighted_ftx_llama",
];

/// The comparison itself, without lmf: LF's outputs pass against themselves, each case but
/// `rm_qwen` (rm without eval logs the loss only) compares metrics beyond the loss in
/// `log_history` (rewards for dpo / kto, `eval_accuracy` for `rm_llama`), and
/// moving one value of the last step by 1% (rewards: of the line's largest reward) fails.
#[test]
fn comparison_accepts_llamafactory_and_rejects_a_moved_value() {
    for case in CASES {
        let dir = case_dir(case);
        check_trainer_log(case, &dir);
        check_log_history(case, &dir);
        check_results(case, &dir);
        let hist = log_history(&dir.join("trainer_state.json"));
        let n = check_lines(case, &hist, &hist, "step", "learning_rate").unwrap();
        let lines = hist.iter().filter(|l| l.get("loss").is_some()).count();
        assert!(
            n > lines || case == "rm_qwen",
            "{case}: only the losses compared"
        );
        for key in [
            "loss",
            "rewards/chosen",
            "rewards/margins",
            "logps/rejected",
            "kl",
        ] {
            let mut moved = hist.clone();
            let Some(line) = moved.iter_mut().rev().find(|l| l.get(key).is_some()) else {
                continue;
            };
            let line = line.as_object_mut().unwrap();
            let size = scale(line, key, 0.0, line[key].as_f64().unwrap());
            let v = line[key].as_f64().unwrap() + 0.01 * size + 1e-4;
            line.insert(key.to_string(), Value::from(v));
            assert!(
                check_lines(case, &hist, &moved, "step", "learning_rate").is_err(),
                "{case}: moving {key} went unnoticed"
            );
        }
        if let Some(adapter) = yaml_value(case, "adapter_name_or_path") {
            let head = fixture_dir().join(adapter).join("value_head.safetensors");
            if case.starts_with("rm_") {
                let names: Vec<_> = tensors(&head).iter().map(Tensor::layout).collect();
                let want: Vec<_> = [
                    ("v_head.summary.bias", vec![1]),
                    ("v_head.summary.weight", vec![1, 64]),
                ]
                .into_iter()
                .map(|(n, s)| (n.to_string(), "F32".to_string(), s))
                .collect();
                assert_eq!(names, want, "{case}: {}", head.display());
            }
        }
    }
}

#[test]
fn rm_llama_matches_llamafactory() {
    check_case("rm_llama");
}

#[test]
fn rm_qwen_matches_llamafactory() {
    check_case("rm_qwen");
}

#[test]
fn dpo_sigmoid_llama_matches_llamafactory() {
    check_case("dpo_sigmoid_llama");
}

#[test]
fn dpo_sigmoid_ftx_llama_matches_llamafactory() {
    check_case("dpo_sigmoid_ftx_llama");
}

#[test]
fn dpo_orpo_llama_matches_llamafactory() {
    check_case("dpo_orpo_llama");
}

#[test]
fn dpo_orpo_ftx_llama_matches_llamafactory() {
    check_case("dpo_orpo_ftx_llama");
}

#[test]
fn dpo_simpo_llama_matches_llamafactory() {
    check_case("dpo_simpo_llama");
}

#[test]
fn dpo_simpo_ftx_llama_matches_llamafactory() {
    check_case("dpo_simpo_ftx_llama");
}

#[test]
fn dpo_sigmoid_qwen_matches_llamafactory() {
    check_case("dpo_sigmoid_qwen");
}

#[test]
fn dpo_orpo_qwen_matches_llamafactory() {
    check_case("dpo_orpo_qwen");
}

#[test]
fn dpo_full_llama_matches_llamafactory() {
    check_case("dpo_full_llama");
}

#[test]
fn dpo_bco_llama_matches_llamafactory() {
    check_case("dpo_bco_llama");
}

#[test]
fn kto_llama_matches_llamafactory() {
    check_case("kto_llama");
}

#[test]
fn kto_qwen_matches_llamafactory() {
    check_case("kto_qwen");
}

#[test]
fn kto_weighted_ftx_llama_matches_llamafactory() {
    check_case("kto_weighted_ftx_llama");
}

/// rm `do_predict` without training (`rm_predict_llama`): LF's `predict_loss` and
/// `predict_accuracy`, and its `generated_predictions.jsonl` (one `{"chosen", "rejected"}` line
/// per pair, scores rounded to 2 decimals: equal, or one rounding step apart).
#[test]
fn rm_predict_llama_matches_llamafactory() {
    let case = "rm_predict_llama";
    let ours = run_lmf_train("prefparity", case);
    let lf = read_json(&case_dir(case).join("predict_results.json"));
    let us = read_json(&ours.join("predict_results.json"));
    let (a, b) = (
        lf["predict_loss"].as_f64().unwrap(),
        us["predict_loss"].as_f64().unwrap(),
    );
    assert!(rel(a, b) <= 1e-4, "predict_loss LF {a} lmf {b}");
    assert_eq!(lf["predict_accuracy"], us["predict_accuracy"]);
    let lf_lines = read_jsonl(&case_dir(case).join("generated_predictions.jsonl"));
    let us_lines = read_jsonl(&ours.join("generated_predictions.jsonl"));
    assert_eq!(lf_lines.len(), us_lines.len(), "prediction lines");
    assert!(!lf_lines.is_empty());
    for (i, (x, y)) in lf_lines.iter().zip(&us_lines).enumerate() {
        assert_eq!(
            x.as_object().unwrap().keys().collect::<Vec<_>>(),
            y.as_object().unwrap().keys().collect::<Vec<_>>(),
            "line {i}"
        );
        for k in ["chosen", "rejected"] {
            let (p, q) = (x[k].as_f64().unwrap(), y[k].as_f64().unwrap());
            assert!((p - q).abs() <= 0.01 + 1e-9, "line {i} {k}: LF {p} lmf {q}");
        }
    }
    let _ = std::fs::remove_dir_all(&ours);
}
