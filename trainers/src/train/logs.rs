//! The run's log files as LLaMA-Factory writes them: `trainer_log.jsonl` (LogCallback.on_log:
//! one line per HF log record while training, with its fixed keys) and `running_log.txt` (the
//! info lines of the run).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::template::pyjson::PyJson;
use crate::train::config::ReportConfig;
use crate::train::io::{append_line, now_utc, py_round, timedelta_str};
use crate::train::monitor::{Monitors, RunEnd};
use crate::Result;

/// LF `TRAINER_LOG`.
pub const TRAINER_LOG: &str = "trainer_log.jsonl";
/// LF `RUNNING_LOG`.
pub const RUNNING_LOG: &str = "running_log.txt";

/// Writer of the two log files of one run.
#[derive(Debug)]
pub struct RunLog {
    dir: PathBuf,
    start: Option<Instant>,
    max_steps: u64,
    monitors: Monitors,
}

impl RunLog {
    /// Logs into `dir` (created on first write).
    pub fn new(dir: &Path) -> RunLog {
        RunLog {
            dir: dir.to_path_buf(),
            start: None,
            max_steps: 0,
            monitors: Monitors::none(),
        }
    }

    /// Also reports to the `report_to` monitors of `report`.
    pub fn with_report(mut self, report: &ReportConfig) -> RunLog {
        self.monitors = Monitors::new(&report.monitors, report.run.clone());
        self
    }

    /// The run is over: `files` (the loss plots, the trainer log) go to the monitors that keep
    /// artifacts, then the monitors close (a `RunLog` dropped without this reports a failure).
    pub fn finish(&mut self, end: RunEnd, files: &[PathBuf]) {
        self.monitors.artifacts(files);
        self.monitors.end(end);
    }

    /// LF `on_train_begin`: starts the clock; records go to `trainer_log.jsonl` from now on.
    pub fn begin_train(&mut self, max_steps: u64) {
        self.start = Some(Instant::now());
        self.max_steps = max_steps;
        self.monitors.train_begin();
    }

    /// LF `on_train_end`: later records (evaluation after training) are not written.
    pub fn end_train(&mut self) {
        self.start = None;
    }

    /// One line of `running_log.txt` (LF's `[LEVEL|time] file:line >> message` form).
    pub fn info(&self, msg: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir).ok();
        let line = format!("[INFO|{}] lmf >> {msg}", now_utc());
        append_line(&self.dir.join(RUNNING_LOG), &line)
    }

    /// LF `LogCallback.on_log` for the record just appended to the log history (and the
    /// monitors' `on_log`, during and after training).
    pub fn on_log(&mut self, rec: &PyJson, cur_steps: u64, max_steps: u64) -> Result<()> {
        if let PyJson::Dict(items) = rec {
            self.monitors.log(cur_steps, items);
        }
        let Some(start) = self.start else {
            return Ok(());
        };
        let max_steps = if self.max_steps > 0 {
            self.max_steps
        } else {
            max_steps
        };
        let elapsed = start.elapsed().as_secs_f64();
        let avg = if cur_steps != 0 {
            elapsed / cur_steps as f64
        } else {
            0.0
        };
        let remaining = (max_steps as f64 - cur_steps as f64) * avg;
        let get = |k: &str| rec.get(k).cloned();
        let pct = if max_steps != 0 {
            PyJson::Float(py_round(cur_steps as f64 / max_steps as f64 * 100.0, 2))
        } else {
            PyJson::Int(100)
        };
        let fields: Vec<(&str, Option<PyJson>)> = vec![
            ("current_steps", Some(PyJson::Int(cur_steps as i128))),
            ("total_steps", Some(PyJson::Int(max_steps as i128))),
            ("loss", get("loss")),
            ("eval_loss", get("eval_loss")),
            ("predict_loss", get("predict_loss")),
            ("reward", get("reward")),
            ("accuracy", get("rewards/accuracies")),
            ("lr", get("learning_rate")),
            ("epoch", get("epoch")),
            ("percentage", Some(pct)),
            (
                "elapsed_time",
                Some(PyJson::Str(timedelta_str(elapsed as u64))),
            ),
            (
                "remaining_time",
                Some(PyJson::Str(timedelta_str(remaining.max(0.0) as u64))),
            ),
        ];
        let line = PyJson::Dict(
            fields
                .into_iter()
                .filter_map(|(k, v)| match v {
                    None | Some(PyJson::Null) => None,
                    Some(v) => Some((k.to_string(), v)),
                })
                .collect(),
        );
        std::fs::create_dir_all(&self.dir).ok();
        append_line(&self.dir.join(TRAINER_LOG), &line.dumps())
    }
}

/// LF's `trainer_log.jsonl` of an evaluation-only run: `LogCallback.on_prediction_step` writes
/// a progress line every 5 eval batches, then `on_log` writes the metrics at
/// `current_steps = global_step = 0` (so percentage 0 and no remaining time).
pub fn eval_only_log(
    dir: &Path,
    batches: u64,
    elapsed: f64,
    metrics: &[(String, PyJson)],
) -> Result<()> {
    std::fs::create_dir_all(dir).ok();
    let path = dir.join(TRAINER_LOG);
    let per_batch = elapsed / batches.max(1) as f64;
    for step in (5..=batches).step_by(5) {
        let line = PyJson::Dict(vec![
            ("current_steps".into(), PyJson::Int(step as i128)),
            ("total_steps".into(), PyJson::Int(batches as i128)),
            (
                "percentage".into(),
                PyJson::Float(py_round(step as f64 / batches as f64 * 100.0, 2)),
            ),
            (
                "elapsed_time".into(),
                PyJson::Str(timedelta_str((per_batch * step as f64) as u64)),
            ),
            (
                "remaining_time".into(),
                PyJson::Str(timedelta_str((per_batch * (batches - step) as f64) as u64)),
            ),
        ]);
        append_line(&path, &line.dumps())?;
    }
    let mut fields = vec![
        ("current_steps".to_string(), PyJson::Int(0)),
        ("total_steps".to_string(), PyJson::Int(batches as i128)),
    ];
    for (k, v) in metrics {
        if k == "eval_loss" || k == "epoch" || (k.starts_with("eval_") && k.ends_with("_loss")) {
            fields.push((k.clone(), v.clone()));
        }
    }
    fields.push(("percentage".into(), PyJson::Float(0.0)));
    fields.push((
        "elapsed_time".into(),
        PyJson::Str(timedelta_str(elapsed as u64)),
    ));
    fields.push(("remaining_time".into(), PyJson::Str(timedelta_str(0))));
    append_line(&path, &PyJson::Dict(fields).dumps())
}
