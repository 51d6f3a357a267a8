//! LLaMA-Factory's `run_rm`, `run_dpo` and `run_kto` on a loaded model: the value head (rm) or
//! the reference model (dpo, kto), then the shared workflow ([`run_stage_workflow`]) with the
//! stage's loss and plots, and for rm `do_predict`'s scores.

use std::path::Path;

use lmf_models::value_head::{summary_dropout, ValueHead};
use lmf_models::CausalLM;

use super::dpo::DpoStage;
use super::kto::KtoStage;
use super::reference::Reference;
use super::rm::{predict_scores, RmStage};
use crate::args::finetuning::Stage as StageName;
use crate::args::train::TrainArgs;
use crate::data::StageDataset;
use crate::train::config::TrainConfig;
use crate::train::export::ModelIo;
use crate::train::pref_loss::{uses_reference, KtoConfig, PrefLossConfig};
use crate::train::results::save_metrics;
use crate::train::run::setup_trainable;
use crate::train::{plot_keys, run_stage_workflow, WorkflowOutcome};
use crate::tuner::adapter_dir;
use crate::{Error, Result};

/// Runs stage rm, dpo or kto of `args` on `model` (loaded from `model_dir`, its adapter set up
/// by `io`'s maker) with the encoded `dataset`.
pub fn run_pref(
    args: &TrainArgs,
    model: &mut CausalLM,
    dataset: &StageDataset,
    io: &dyn ModelIo,
    model_dir: &Path,
) -> Result<WorkflowOutcome> {
    let t = &args.training;
    let f = &args.finetuning;
    let cfg = TrainConfig::from_args(t, f, &args.model)?;
    if t.do_train {
        setup_trainable(model, args)?;
    }
    match (f.stage, dataset) {
        (StageName::Rm, StageDataset::Pairwise(data)) => {
            attach_value_head(args, model, model_dir, cfg.seed)?;
            let keys = plot_keys(&["loss"], &data.eval, &["loss", "accuracy"]);
            let mut out =
                run_stage_workflow(RmStage, model, &cfg, io, data, t.do_train, t.do_eval, &keys)?;
            if t.do_predict {
                let rows = data
                    .eval
                    .first()
                    .map(|(_, r)| r.as_slice())
                    .ok_or_else(|| Error::Msg("do_predict needs an eval dataset".into()))?;
                let metrics = predict_scores(model, rows, cfg.eval_batch_size, &cfg.output_dir)?;
                save_metrics(&cfg.output_dir, "predict", &metrics)?;
                out.predict = Some(metrics);
            }
            Ok(out)
        }
        (StageName::Dpo, StageDataset::Pairwise(data)) => {
            let loss = PrefLossConfig {
                loss: f.pref_loss,
                beta: f.pref_beta,
                label_smoothing: f.dpo_label_smoothing,
                simpo_gamma: f.simpo_gamma,
            };
            let reference =
                Reference::for_run(args, model, model_dir, uses_reference(f.pref_loss))?;
            let stage = DpoStage::new(loss, f.pref_ftx, f.pref_bco_weight, reference)?;
            let keys = plot_keys(&["loss", "rewards/accuracies"], &data.eval, &["loss"]);
            run_stage_workflow(stage, model, &cfg, io, data, t.do_train, t.do_eval, &keys)
        }
        (StageName::Kto, StageDataset::Feedback(data)) => {
            let kto = KtoConfig {
                beta: f.pref_beta,
                desirable_weight: f.kto_chosen_weight,
                undesirable_weight: f.kto_rejected_weight,
            };
            let reference = Reference::for_run(args, model, model_dir, true)?;
            let stage = KtoStage::new(kto, f.pref_ftx, reference)?;
            let keys = plot_keys(&["loss", "rewards/chosen"], &data.eval, &["loss"]);
            run_stage_workflow(stage, model, &cfg, io, data, t.do_train, t.do_eval, &keys)
        }
        (stage, _) => Err(Error::Msg(format!(
            "stage `{}` is not a preference stage, or its dataset does not match it",
            stage.as_str()
        ))),
    }
}

/// TRL's value head on the model: loaded from `value_head.safetensors` of the last adapter
/// folder, else of the model folder (LF's "Loaded valuehead from checkpoint"), else fresh;
/// dropout from the model's `summary_dropout_prob`.
pub(crate) fn attach_value_head(
    args: &TrainArgs,
    model: &mut CausalLM,
    model_dir: &Path,
    seed: u64,
) -> Result<()> {
    let dropout = summary_dropout(model_dir)?;
    let hidden = model.config.hidden_size;
    let mut dirs = vec![];
    if let Some(last) = args.model.adapters().last() {
        dirs.push(adapter_dir(&args.model, last)?);
    }
    dirs.push(model_dir.to_path_buf());
    for dir in &dirs {
        if let Some(head) = ValueHead::load(dir, hidden, dropout, model.device)? {
            eprintln!("note: loaded the value head from {}", dir.display());
            model.value_head = Some(head);
            return Ok(());
        }
    }
    model.value_head = Some(ValueHead::new(hidden, dropout, seed, model.device)?);
    Ok(())
}
