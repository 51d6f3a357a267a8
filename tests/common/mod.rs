//! Helpers shared by the `lmf train` ↔ LLaMA-Factory parity tests (`train_lf_parity.rs`,
//! `train_pref_parity.rs`): the fixture folder `tests/fixtures/hf/train` (written by
//! `make_train.py`), reading LF's JSON outputs, running `lmf train` on a case's YAML, and the
//! checks that do not depend on the stage (output file names, adapter config).

// Each test crate uses a different subset of these.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the `lmf` binary in the repository root (offline) with `args`, feeding `stdin` when
/// given; returns its exit status and output.
pub fn lmf_in_root<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lmf");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().unwrap();
        input.write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// `tests/fixtures/hf/train`: the cases' YAML paths are relative to it.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/train")
}

/// `cases/<case>/` with LF's outputs of that case; a case named `group/case` lives in
/// `group/cases/case/` (fixtures made by another script, e.g. `llama_pro/`).
pub fn case_dir(case: &str) -> PathBuf {
    fixture_dir().join(case_rel(case))
}

/// [`case_dir`] relative to the fixture folder.
fn case_rel(case: &str) -> String {
    match case.split_once('/') {
        Some((group, name)) => format!("{group}/cases/{name}"),
        None => format!("cases/{case}"),
    }
}

pub fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// The sorted `target_modules` of the PEFT adapter in `dir`.
pub fn adapter_targets(dir: &Path) -> Vec<String> {
    let cfg = read_json(&dir.join("adapter_config.json"));
    let mut t: Vec<String> = cfg["target_modules"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no target_modules list", dir.display()))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(1e-12)
}

/// Runs `lmf ARGS` from the fixture folder; panics (with lmf's stderr, naming `what`) unless it
/// succeeds.
pub fn run_lmf_in_fixture(what: &str, args: &[String]) {
    run_lmf_in_fixture_env(what, args, &[]);
}

/// [`run_lmf_in_fixture`] with extra environment variables.
pub fn run_lmf_in_fixture_env(what: &str, args: &[String], envs: &[(&str, &Path)]) {
    let res = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .current_dir(fixture_dir())
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run lmf");
    assert!(
        res.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
}

/// Runs `lmf train <case dir>/<case>.yaml output_dir=<tmp>` from the fixture folder; returns
/// lmf's output folder (`tag` keeps the folders of different test crates apart).
pub fn run_lmf_train(tag: &str, case: &str) -> PathBuf {
    run_lmf_train_with(tag, case, &[])
}

/// [`run_lmf_train`] with extra `key=value` overrides.
pub fn run_lmf_train_with(tag: &str, case: &str, extra: &[&str]) -> PathBuf {
    let out = std::env::temp_dir().join(format!(
        "lmf-{tag}-{}-{}",
        std::process::id(),
        case.replace('/', "-")
    ));
    let _ = std::fs::remove_dir_all(&out);
    run_lmf_in_fixture(
        case,
        &[
            "train".into(),
            format!(
                "{}/{}.yaml",
                case_rel(case),
                case.rsplit('/').next().unwrap_or(case)
            ),
            format!("output_dir={}", out.display()),
        ]
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect::<Vec<_>>(),
    );
    out
}

/// Every file LF wrote into `output_dir` (`output_files.json`) is in lmf's output folder too.
pub fn check_files(case: &str, ours: &Path) {
    check_files_except(case, ours, &[]);
}

/// [`check_files`], not asking for the files in `also_skip`.
pub fn check_files_except(case: &str, ours: &Path, also_skip: &[&str]) {
    // README.md (model card) and training_args.bin (a pickle) are LF/HF-only by design.
    let skip: Vec<&str> = ["README.md", "training_args.bin"]
        .into_iter()
        .chain(also_skip.iter().copied())
        .collect();
    let lf: BTreeSet<String> = read_json(&case_dir(case).join("output_files.json"))
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .filter(|n| !skip.contains(&n.as_str()))
        .collect();
    let us: BTreeSet<String> = std::fs::read_dir(ours)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let missing: Vec<&String> = lf.difference(&us).collect();
    assert!(missing.is_empty(), "{case}: lmf did not write {missing:?}");
}

/// LoRA cases: lmf's `adapter_config.json` has LF's keys and LF's values of the keys that matter.
pub fn check_adapter_config(case: &str, ours: &Path) {
    let lf_path = case_dir(case).join("adapter_config.json");
    if !lf_path.is_file() {
        return;
    }
    let lf = read_json(&lf_path);
    let us = read_json(&ours.join("adapter_config.json"));
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&lf), keys(&us), "{case}: adapter_config.json keys");
    for k in [
        "r",
        "lora_alpha",
        "lora_dropout",
        "use_rslora",
        "use_dora",
        "peft_type",
        "task_type",
    ] {
        assert_eq!(lf[k], us[k], "{case}: adapter_config.json {k}");
    }
    let set = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        set(&lf["target_modules"]),
        set(&us["target_modules"]),
        "{case}"
    );
}

/// The logged training / eval lines of LF and lmf agree.
pub fn check_logs(case: &str, ours: &Path) {
    check_logs_within(case, ours, 1e-3, 1e-4);
}

/// [`check_logs`] with the relative tolerances of the training and the eval losses given.
pub fn check_logs_within(case: &str, ours: &Path, loss_tol: f64, eval_tol: f64) {
    let lf_log = case_dir(case).join("trainer_log.jsonl");
    let keyed = |v: &Vec<Value>| -> Vec<Value> {
        v.iter()
            .filter(|l| l.get("loss").is_some() || l.get("eval_loss").is_some())
            .cloned()
            .collect()
    };
    let lf = keyed(&read_jsonl(&lf_log));
    let us = keyed(&read_jsonl(&ours.join("trainer_log.jsonl")));
    assert_eq!(lf.len(), us.len(), "{case}: number of logged lines");
    assert!(!lf.is_empty(), "{case}: LF logged nothing");
    for (a, b) in lf.iter().zip(&us) {
        assert_eq!(a["current_steps"], b["current_steps"], "{case}");
        for (k, tol) in [("loss", loss_tol), ("eval_loss", eval_tol)] {
            if let Some(x) = a.get(k).and_then(Value::as_f64) {
                let y = b[k]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{case}: no {k} in {b}"));
                assert!(
                    rel(x, y) <= tol,
                    "{case} step {}: {k} LF {x} lmf {y}",
                    a["current_steps"]
                );
            }
        }
        if let Some(lr) = a.get("lr").and_then(Value::as_f64) {
            let ours = b["lr"].as_f64().unwrap();
            assert!((lr - ours).abs() <= 1e-12, "{case}: lr {lr} vs {ours}");
        }
        if let Some(e) = a.get("epoch").and_then(Value::as_f64) {
            assert!((e - b["epoch"].as_f64().unwrap()).abs() < 1e-9, "{case}");
        }
    }
}

pub fn check_results(case: &str, ours: &Path) {
    let lf = read_json(&case_dir(case).join("all_results.json"));
    let us = read_json(&ours.join("all_results.json"));
    for (k, tol) in [("train_loss", 1e-3), ("eval_loss", 1e-4)] {
        if let Some(x) = lf.get(k).and_then(Value::as_f64) {
            let y = us[k].as_f64().unwrap_or_else(|| panic!("{case}: {k}"));
            assert!(rel(x, y) <= tol, "{case}: {k} LF {x} lmf {y}");
        }
    }
    if let Some(e) = lf.get("epoch").and_then(Value::as_f64) {
        assert!((e - us["epoch"].as_f64().unwrap()).abs() < 1e-9, "{case}");
    }
    // predict_with_generate: LF's ComputeSimilarity scores (percentages).
    for k in ["bleu-4", "rouge-1", "rouge-2", "rouge-l"] {
        let key = format!("predict_{k}");
        if let Some(x) = lf.get(&key).and_then(Value::as_f64) {
            let y = us[&key].as_f64().unwrap_or_else(|| panic!("{case}: {key}"));
            assert!((x - y).abs() <= 1e-4, "{case}: {key} LF {x} lmf {y}");
        }
    }
}
