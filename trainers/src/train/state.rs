//! HF's `TrainerState` (`trainer_state.json`): progress counters, the step intervals and the
//! `log_history`, written with `json.dumps(asdict(state), indent=2, sort_keys=True)` and read
//! back when resuming.

use std::path::Path;

use crate::template::pyjson::PyJson;
use crate::train::io::{read_json, write_json};
use crate::{Error, Result};

/// File name of the state (HF `TRAINER_STATE_NAME`).
pub const TRAINER_STATE_NAME: &str = "trainer_state.json";

/// The HF trainer state of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerState {
    /// Fractional epoch reached.
    pub epoch: f64,
    /// Optimizer steps done.
    pub global_step: u64,
    /// Optimizer steps of the whole run.
    pub max_steps: u64,
    /// Absolute logging interval.
    pub logging_steps: u64,
    /// Absolute evaluation interval.
    pub eval_steps: u64,
    /// Absolute save interval.
    pub save_steps: u64,
    /// Per-device training batch size.
    pub train_batch_size: u64,
    /// Epochs of the run (integer, as HF stores it).
    pub num_train_epochs: u64,
    /// Input tokens seen (only counted when asked; 0 here like HF's default).
    pub num_input_tokens_seen: u64,
    /// Floating-point operations so far (HF's 6 · tokens · non-embedding parameters).
    pub total_flos: f64,
    /// Every log record (ordered dicts with `step` last).
    pub log_history: Vec<PyJson>,
    /// Best metric (unused: no `metric_for_best_model`).
    pub best_metric: Option<f64>,
    /// Step of the best metric.
    pub best_global_step: Option<u64>,
    /// Folder of the best checkpoint.
    pub best_model_checkpoint: Option<String>,
}

impl Default for TrainerState {
    /// HF's dataclass defaults.
    fn default() -> Self {
        TrainerState {
            epoch: 0.0,
            global_step: 0,
            max_steps: 0,
            logging_steps: 500,
            eval_steps: 500,
            save_steps: 500,
            train_batch_size: 0,
            num_train_epochs: 0,
            num_input_tokens_seen: 0,
            total_flos: 0.0,
            log_history: vec![],
            best_metric: None,
            best_global_step: None,
            best_model_checkpoint: None,
        }
    }
}

/// `Option<u64>` as JSON.
fn opt_int(v: Option<u64>) -> PyJson {
    v.map_or(PyJson::Null, |v| PyJson::Int(v as i128))
}

impl TrainerState {
    /// `dataclasses.asdict(state)` (keys sorted when written).
    pub fn to_json(&self) -> PyJson {
        let int = |v: u64| PyJson::Int(v as i128);
        let control = PyJson::Dict(vec![
            (
                "args".into(),
                PyJson::Dict(
                    [
                        "should_epoch_stop",
                        "should_evaluate",
                        "should_log",
                        "should_save",
                        "should_training_stop",
                    ]
                    .iter()
                    .map(|k| {
                        let v = *k == "should_training_stop" && self.global_step >= self.max_steps;
                        (k.to_string(), PyJson::Bool(v))
                    })
                    .collect(),
                ),
            ),
            ("attributes".into(), PyJson::Dict(vec![])),
        ]);
        PyJson::Dict(vec![
            ("best_global_step".into(), opt_int(self.best_global_step)),
            (
                "best_metric".into(),
                self.best_metric.map_or(PyJson::Null, PyJson::Float),
            ),
            (
                "best_model_checkpoint".into(),
                self.best_model_checkpoint
                    .clone()
                    .map_or(PyJson::Null, PyJson::Str),
            ),
            ("epoch".into(), PyJson::Float(self.epoch)),
            ("eval_steps".into(), int(self.eval_steps)),
            ("global_step".into(), int(self.global_step)),
            ("is_hyper_param_search".into(), PyJson::Bool(false)),
            ("is_local_process_zero".into(), PyJson::Bool(true)),
            ("is_world_process_zero".into(), PyJson::Bool(true)),
            ("log_history".into(), PyJson::List(self.log_history.clone())),
            ("logging_steps".into(), int(self.logging_steps)),
            ("max_steps".into(), int(self.max_steps)),
            (
                "num_input_tokens_seen".into(),
                int(self.num_input_tokens_seen),
            ),
            ("num_train_epochs".into(), int(self.num_train_epochs)),
            ("save_steps".into(), int(self.save_steps)),
            (
                "stateful_callbacks".into(),
                PyJson::Dict(vec![("TrainerControl".into(), control)]),
            ),
            ("total_flos".into(), PyJson::Float(self.total_flos)),
            ("train_batch_size".into(), int(self.train_batch_size)),
            ("trial_name".into(), PyJson::Null),
            ("trial_params".into(), PyJson::Null),
        ])
    }

    /// Writes `trainer_state.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(TRAINER_STATE_NAME), &self.to_json(), 2, true)
    }

    /// Reads `trainer_state.json` from a checkpoint folder.
    pub fn load(dir: &Path) -> Result<TrainerState> {
        let path = dir.join(TRAINER_STATE_NAME);
        let j = read_json(&path)?;
        let bad = |k: &str| {
            Error::Msg(format!(
                "{}: `{k}` is missing or not a number",
                path.display()
            ))
        };
        let num = |k: &str| -> Result<f64> {
            match j.get(k) {
                Some(PyJson::Int(i)) => Ok(*i as f64),
                Some(PyJson::Float(f)) => Ok(*f),
                _ => Err(bad(k)),
            }
        };
        let int = |k: &str| -> Result<u64> {
            match j.get(k) {
                Some(PyJson::Int(i)) if *i >= 0 => Ok(*i as u64),
                _ => Err(bad(k)),
            }
        };
        let opt_num = |k: &str| match j.get(k) {
            Some(PyJson::Int(i)) => Some(*i as f64),
            Some(PyJson::Float(f)) => Some(*f),
            _ => None,
        };
        Ok(TrainerState {
            epoch: num("epoch")?,
            global_step: int("global_step")?,
            max_steps: int("max_steps")?,
            logging_steps: int("logging_steps")?,
            eval_steps: int("eval_steps")?,
            save_steps: int("save_steps")?,
            train_batch_size: int("train_batch_size").unwrap_or(0),
            num_train_epochs: int("num_train_epochs").unwrap_or(0),
            num_input_tokens_seen: int("num_input_tokens_seen").unwrap_or(0),
            total_flos: num("total_flos").unwrap_or(0.0),
            log_history: match j.get("log_history") {
                Some(PyJson::List(l)) => l.clone(),
                _ => return Err(bad("log_history")),
            },
            best_metric: opt_num("best_metric"),
            best_global_step: opt_num("best_global_step").map(|v| v as u64),
            best_model_checkpoint: j
                .get("best_model_checkpoint")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_through_json() {
        let s = TrainerState {
            epoch: 1.5,
            global_step: 3,
            max_steps: 6,
            logging_steps: 1,
            log_history: vec![PyJson::Dict(vec![
                ("loss".into(), PyJson::Float(2.25)),
                ("step".into(), PyJson::Int(1)),
            ])],
            total_flos: 1234.0,
            ..TrainerState::default()
        };
        let dir = std::env::temp_dir().join(format!("lmf-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        s.save(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join(TRAINER_STATE_NAME)).unwrap();
        assert!(
            text.starts_with("{\n  \"best_global_step\": null,\n"),
            "{text}"
        );
        assert_eq!(TrainerState::load(&dir).unwrap(), s);
        std::fs::remove_dir_all(&dir).ok();
    }
}
