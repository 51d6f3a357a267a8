//! `lmf train` for stages pt and sft: the HF-Trainer loop ([`trainer`]), what trains under
//! full / freeze fine-tuning ([`freeze`]), batches and shifted labels ([`batch`]), checkpoints
//! and resume ([`checkpoint`], [`state`], [`export`]), the output files LLaMA-Factory writes
//! ([`logs`], [`results`], [`plot`]), prediction ([`predict`]) and the progress bar / Ctrl-C
//! ([`progress`]).
//!
//! The workflow ([`run_workflow`]) mirrors LLaMA-Factory's `run_sft` / `run_pt`: train, save
//! the model, `train_results.json`, `trainer_state.json`, the loss plot, then evaluate.
//! [`run::run`] is what the CLI calls; its two hooks [`run::load_dataset`] (`data::get_dataset`
//! → a [`DatasetModule`]) and [`run::model_io`] (LoRA: a [`ModelIo`] over `save_adapter` /
//! `load_adapter`) are where the data and adapter parts plug in.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod export;
pub mod freeze;
pub mod hooks;
pub mod io;
pub mod logs;
pub mod monitor;
pub mod plot;
pub mod ppo;
pub mod predict;
pub mod pref;
pub mod pref_loss;
pub mod progress;
pub mod results;
pub mod run;
pub mod scratch;
pub mod similarity;
pub mod stage;
pub mod state;
pub mod trainer;

pub use batch::{make_batch, Batch};
pub use checkpoint::{auto_resume, get_last_checkpoint};
pub use config::TrainConfig;
pub use export::{HfModelIo, ModelIo};
pub use freeze::{freeze_trainable, full_trainable, FreezeSpec};
pub use hooks::{run_with_hooks, RunHooks};
pub use run::{run, run_sft, setup_trainable};
pub use stage::{LmStage, MicroLoss, Stage};
pub use trainer::{evaluate, TrainOutcome, Trainer};

use lmf_models::CausalLM;

use crate::data::DatasetModule;
use crate::template::pyjson::PyJson;
use crate::Result;

/// What [`run_workflow`] did.
#[derive(Clone, Debug, Default)]
pub struct WorkflowOutcome {
    /// The training result (when `do_train`).
    pub train: Option<TrainOutcome>,
    /// The evaluation metrics (when `do_eval`).
    pub eval: Option<Vec<(String, PyJson)>>,
    /// The prediction metrics (when `do_predict`).
    pub predict: Option<Vec<(String, PyJson)>>,
}

/// LLaMA-Factory's `run_sft` / `run_pt` after the model and data are ready: train (+ save the
/// model, `train_results.json`, `all_results.json`, `trainer_state.json`, the loss plots),
/// then evaluate (`eval_results.json`, with `eval_perplexity` for pt). The model's
/// `requires_grad` flags must already say what trains.
pub fn run_workflow(
    model: &mut CausalLM,
    cfg: &TrainConfig,
    io: &dyn ModelIo,
    dataset: &DatasetModule,
    do_train: bool,
    do_eval: bool,
) -> Result<WorkflowOutcome> {
    let keys = plot_keys(&["loss"], &dataset.eval, &["loss"]);
    let stage = LmStage::for_config(cfg);
    run_stage_workflow(stage, model, cfg, io, dataset, do_train, do_eval, &keys)
}

/// The curves LF's workflows plot: `train` keys of the training logs, then for each eval set
/// (one unnamed set: `eval_{key}`; named sets: `eval_{name}_{key}`) the `eval` keys.
pub fn plot_keys<R>(train: &[&str], eval: &[(String, Vec<R>)], eval_keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = train.iter().map(|k| k.to_string()).collect();
    if eval.len() == 1 && eval[0].0.is_empty() || eval.is_empty() {
        keys.extend(eval_keys.iter().map(|k| format!("eval_{k}")));
    } else {
        for (name, _) in eval {
            keys.extend(eval_keys.iter().map(|k| format!("eval_{name}_{k}")));
        }
    }
    keys
}

/// [`run_workflow`] for any [`Stage`]: train with `stage` (plotting `plot_keys` with
/// `plot_loss`), then evaluate.
#[allow(clippy::too_many_arguments)]
pub fn run_stage_workflow<S: Stage>(
    stage: S,
    model: &mut CausalLM,
    cfg: &TrainConfig,
    io: &dyn ModelIo,
    dataset: &DatasetModule<S::Row>,
    do_train: bool,
    do_eval: bool,
    plot_keys: &[String],
) -> Result<WorkflowOutcome> {
    let old_log = cfg.output_dir.join(logs::TRAINER_LOG);
    if cfg.overwrite_output_dir && old_log.is_file() {
        // LF LogCallback.on_init_end: "Previous trainer log in this folder will be deleted."
        std::fs::remove_file(&old_log)
            .map_err(|e| crate::Error::Msg(format!("{}: {e}", old_log.display())))?;
    }
    let mut trainer = Trainer::with_stage(stage, model, cfg, io, &dataset.train, &dataset.eval)?;
    trainer.set_stream(dataset.stream.as_ref());
    trainer.set_stop_flag(hooks::stop_flag());
    let mut out = WorkflowOutcome::default();
    if do_train {
        let res = trainer.train()?;
        trainer.save_model()?;
        results::save_metrics(&cfg.output_dir, "train", &res.metrics)?;
        trainer.save_state()?;
        if cfg.plot_loss {
            plot::plot_loss(&cfg.output_dir, &trainer.state.log_history, plot_keys)?;
        }
        out.train = Some(res);
    }
    let interrupted = out.train.as_ref().is_some_and(|t| t.interrupted);
    if do_eval && !interrupted {
        let eval_start = std::time::Instant::now();
        let mut metrics = trainer.evaluate_and_log()?;
        if cfg.stage_pt {
            let extra: Vec<(String, PyJson)> = metrics
                .iter()
                .filter(|(k, _)| k.ends_with("_loss"))
                .map(|(k, v)| {
                    let loss = match v {
                        PyJson::Float(f) => *f,
                        _ => f64::NAN,
                    };
                    let p = loss.exp();
                    (
                        format!("{}_perplexity", k.trim_end_matches("_loss")),
                        PyJson::Float(if p.is_finite() { p } else { f64::INFINITY }),
                    )
                })
                .collect();
            metrics.extend(extra);
        }
        // HF's TrainerState.epoch stays the integer 0 when nothing trained.
        let epoch = if do_train {
            PyJson::Float(trainer.epoch())
        } else {
            PyJson::Int(0)
        };
        metrics.push(("epoch".into(), epoch));
        if !do_train {
            let batches: usize = dataset
                .eval
                .iter()
                .map(|(_, rows)| rows.len().div_ceil(cfg.eval_batch_size.max(1)))
                .sum();
            let elapsed = eval_start.elapsed().as_secs_f64();
            logs::eval_only_log(&cfg.output_dir, batches as u64, elapsed, &metrics)?;
        }
        results::save_metrics(&cfg.output_dir, "eval", &metrics)?;
        out.eval = Some(metrics);
    }
    let end = if interrupted {
        monitor::RunEnd::Stopped
    } else {
        monitor::RunEnd::Finished
    };
    trainer.finish_report(end, &report_files(&cfg.output_dir));
    Ok(out)
}

/// What the monitors keep of a run: the loss plots (`training_*.png`) and `trainer_log.jsonl`.
pub fn report_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("training_") && n.ends_with(".png"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.push(dir.join(logs::TRAINER_LOG));
    files
}
