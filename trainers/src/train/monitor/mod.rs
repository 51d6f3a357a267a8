//! `report_to` monitors: where a run's log records go besides `trainer_log.jsonl`.
//!
//! transformers' trainer calls each reporting callback at the start of training, at every log
//! record (training logs and evaluation metrics) and at the end. lmf does the same through
//! [`Monitors`], which the run's [`super::logs::RunLog`] drives. A monitor that fails (a
//! folder that cannot be written, a tracking server that does not answer) warns once on
//! stderr and is dropped: training goes on.

pub mod event_file;
pub mod mlflow;
pub mod tb_proto;
pub mod tensorboard;

use std::path::PathBuf;

use crate::template::pyjson::PyJson;
use crate::{Error, Result};

/// What the monitors know about the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunInfo {
    /// The run's `output_dir`.
    pub output_dir: PathBuf,
    /// TensorBoard's folder (`logging_dir`, else transformers' default under `output_dir`).
    pub logging_dir: PathBuf,
    /// `run_name` (transformers: `output_dir` when unset).
    pub run_name: String,
    /// The training arguments as a JSON object (transformers' `args.to_dict()`).
    pub args: serde_json::Value,
    /// The model's `config.json` text, when there is one.
    pub model_config_json: Option<String>,
}

/// transformers' `default_logdir()`: `runs/{%b%d_%H-%M-%S}_{hostname}` (the time in UTC, as
/// lmf's other dates).
pub fn default_logdir() -> PathBuf {
    let stamp = crate::clock::now("%b%d_%H-%M-%S");
    PathBuf::from("runs").join(format!("{stamp}_{}", event_file::hostname()))
}

impl RunInfo {
    /// `args.to_json_string()`: the arguments, indented by 2.
    pub fn args_json_text(&self) -> String {
        serde_json::to_string_pretty(&self.args).unwrap_or_default()
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// It finished.
    Finished,
    /// It was stopped (Ctrl-C, a stop flag) after saving a checkpoint.
    Stopped,
    /// It failed with an error.
    Failed,
}

/// One reporting integration. Errors are messages for the user's warning.
pub trait Monitor {
    /// The `report_to` name.
    fn name(&self) -> &'static str;
    /// Training starts.
    fn on_train_begin(&mut self, run: &RunInfo) -> std::result::Result<(), String>;
    /// A log record at `step` (without its `step` key).
    fn on_log(
        &mut self,
        run: &RunInfo,
        step: u64,
        logs: &[(String, PyJson)],
    ) -> std::result::Result<(), String>;
    /// The run ends.
    fn on_train_end(&mut self, run: &RunInfo, end: RunEnd) -> std::result::Result<(), String>;
    /// Files to keep with the run (the loss plot, the trainer log), after training.
    fn log_artifacts(
        &mut self,
        _run: &RunInfo,
        _files: &[PathBuf],
    ) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The `report_to` monitors lmf writes (wandb and swanlab are refused, naming the TensorBoard
/// route).
pub const SUPPORTED: &[&str] = &["tensorboard", "mlflow"];

/// The monitors of one run.
#[derive(Default)]
pub struct Monitors {
    run: RunInfo,
    list: Vec<Box<dyn Monitor>>,
    began: bool,
    ended: bool,
}

impl std::fmt::Debug for Monitors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.list.iter().map(|m| m.name()).collect();
        f.debug_struct("Monitors").field("list", &names).finish()
    }
}

/// Resolves `report_to` (a list of names; `none` / empty: nothing; `all`: every monitor lmf
/// writes) into the monitor names, or the error a user should see for one lmf does not have.
pub fn resolve_report_to(names: &[String]) -> Result<Vec<&'static str>> {
    let mut out: Vec<&'static str> = vec![];
    for raw in names {
        let name = raw.trim();
        match name {
            "" | "none" => {}
            "all" => {
                // transformers: every integration installed; lmf: TensorBoard, and MLflow when
                // a tracking server is configured.
                let mlflow = std::env::var("MLFLOW_TRACKING_URI").is_ok_and(|u| !u.is_empty());
                for s in SUPPORTED {
                    if !out.contains(s) && (*s != "mlflow" || mlflow) {
                        out.push(s);
                    }
                }
            }
            "tensorboard" | "mlflow" => {
                let s = SUPPORTED.iter().find(|s| **s == name).expect("listed");
                if !out.contains(s) {
                    out.push(s);
                }
            }
            "wandb" => {
                return Err(Error::Msg(
                    "report_to: `wandb` is not built into lmf. Route: `report_to: tensorboard`, \
                     then import the event files into W&B: `wandb sync --sync-tensorboard \
                     <logging_dir>` (wandb <= 0.29, logged in), or with current wandb \
                     `wandb.tensorboard.patch(root_logdir=<logging_dir>)` + \
                     `wandb.init(sync_tensorboard=True)` (offline too, then `wandb sync \
                     <offline run>`; tests/monitors/route_check.py does it; see README, Monitors)"
                        .into(),
                ))
            }
            "swanlab" => {
                return Err(Error::Msg(
                    "report_to: `swanlab` is not built into lmf (nor `use_swanlab`). Route: \
                     `report_to: tensorboard`, then `swanlab login` and `swanlab convert -t \
                     tensorboard --tb-log-dir <logging_dir>` (see README, Monitors)"
                        .into(),
                ))
            }
            other => {
                return Err(Error::Msg(format!(
                    "report_to: `{other}` is not supported by lmf; it writes {} (and routes \
                     wandb and swanlab through TensorBoard's files)",
                    SUPPORTED.join(", ")
                )))
            }
        }
    }
    Ok(out)
}

impl Monitors {
    /// No monitors.
    pub fn none() -> Monitors {
        Monitors::default()
    }

    /// The monitors named (already resolved by [`resolve_report_to`]).
    pub fn new(names: &[&str], run: RunInfo) -> Monitors {
        let list = names
            .iter()
            .filter_map(|n| -> Option<Box<dyn Monitor>> {
                match *n {
                    "tensorboard" => Some(Box::new(tensorboard::TensorBoard::new())),
                    "mlflow" => Some(Box::new(mlflow::MlFlow::from_env())),
                    _ => None,
                }
            })
            .collect();
        Monitors {
            run,
            list,
            began: false,
            ended: false,
        }
    }

    /// Whether any monitor is active.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Runs `f` on each monitor; one that fails warns once and is dropped.
    fn each(
        &mut self,
        mut f: impl FnMut(&mut dyn Monitor, &RunInfo) -> std::result::Result<(), String>,
    ) {
        let run = &self.run;
        self.list.retain_mut(|m| match f(m.as_mut(), run) {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "warning: report_to {}: {e}; this monitor is off for the rest of the run \
                     (training goes on)",
                    m.name()
                );
                false
            }
        });
    }

    /// Training starts (once).
    pub fn train_begin(&mut self) {
        if self.began {
            return;
        }
        self.began = true;
        self.each(|m, run| m.on_train_begin(run));
    }

    /// One log record (its `step` key, if any, is the step and is not reported as a value).
    pub fn log(&mut self, step: u64, record: &[(String, PyJson)]) {
        if self.list.is_empty() {
            return;
        }
        if !self.began {
            self.train_begin();
        }
        let logs: Vec<(String, PyJson)> = record
            .iter()
            .filter(|(k, _)| k != "step")
            .cloned()
            .collect();
        self.each(|m, run| m.on_log(run, step, &logs));
    }

    /// Hands the run's files to the monitors that keep artifacts.
    pub fn artifacts(&mut self, files: &[PathBuf]) {
        let files: Vec<PathBuf> = files.iter().filter(|p| p.is_file()).cloned().collect();
        if files.is_empty() {
            return;
        }
        self.each(|m, run| m.log_artifacts(run, &files));
    }

    /// The run ends.
    pub fn end(&mut self, end: RunEnd) {
        if self.ended || !self.began {
            self.ended = true;
            return;
        }
        self.ended = true;
        self.each(|m, run| m.on_train_end(run, end));
    }
}

impl Drop for Monitors {
    /// A run that ends without [`Monitors::end`] (an error, a panic) is reported as failed.
    fn drop(&mut self) {
        self.end(RunEnd::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn report_to_names_resolve_as_transformers_lists_them() {
        assert!(resolve_report_to(&names(&["none"])).unwrap().is_empty());
        assert!(resolve_report_to(&[]).unwrap().is_empty());
        assert_eq!(
            resolve_report_to(&names(&["mlflow", "tensorboard", "mlflow"])).unwrap(),
            vec!["mlflow", "tensorboard"]
        );
        let e = resolve_report_to(&names(&["comet_ml"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`comet_ml`") && e.contains("tensorboard, mlflow"),
            "{e}"
        );
        let e = resolve_report_to(&names(&["wandb"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sync_tensorboard=True"), "{e}");
        let e = resolve_report_to(&names(&["swanlab"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("swanlab convert -t tensorboard --tb-log-dir"),
            "{e}"
        );
    }
}
