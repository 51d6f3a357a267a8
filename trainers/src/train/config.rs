//! What the training loop reads, flattened out of the argument groups (`TrainingArguments`,
//! `FinetuningArguments`, `ModelArguments`) with HF's derived values: `eval_steps` defaulting
//! to `logging_steps`, `data_seed` defaulting to `seed`, `warmup_ratio` taking over
//! `warmup_steps`.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::args::finetuning::{ApolloProj, ApolloProjType, ApolloScaleType, GaloreProjType};
use crate::args::finetuning::{BadamMaskMode, BadamMode, BadamSwitchMode};
use crate::args::finetuning::{FinetuningArguments, Stage};
use crate::args::model::ModelArguments;
use crate::args::multi::Union2;
use crate::args::training::OptimizerNames;
use crate::args::training::{IntervalStrategy, SaveStrategy, TrainingArguments};
use crate::optim::badam::{BadamConfig, SwitchMode};
use crate::optim::badam_ratio::{MaskMode, RatioConfig};
use crate::optim::galore::{ApolloSettings, ProjType};
use crate::optim::AdamHyper;
use crate::train::monitor::{self, RunInfo};
use crate::{Error, Result};

/// The loop's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Where everything is written.
    pub output_dir: PathBuf,
    /// Rows per training micro-batch.
    pub train_batch_size: usize,
    /// Rows per evaluation batch.
    pub eval_batch_size: usize,
    /// Micro-batches per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Epochs (fractional allowed) when `max_steps` is not positive.
    pub num_train_epochs: f64,
    /// Total optimizer steps when positive.
    pub max_steps: i64,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// HF scheduler name.
    pub lr_scheduler_type: String,
    /// Scheduler kwargs.
    pub lr_scheduler_kwargs: Map<String, Value>,
    /// `warmup_steps` (below 1: a ratio).
    pub warmup_steps: f64,
    /// Deprecated `warmup_ratio` (wins when set).
    pub warmup_ratio: Option<f64>,
    /// Weight decay of the decaying group.
    pub weight_decay: f64,
    /// Adam betas / eps.
    pub adam: AdamHyper,
    /// Gradient clipping norm (0: off).
    pub max_grad_norm: f64,
    /// `logging_strategy`.
    pub logging_strategy: IntervalStrategy,
    /// `logging_steps` (below 1: a ratio of `max_steps`).
    pub logging_steps: f64,
    /// Log after the first step too.
    pub logging_first_step: bool,
    /// `eval_strategy`.
    pub eval_strategy: IntervalStrategy,
    /// `eval_steps` (None: `logging_steps`).
    pub eval_steps: Option<f64>,
    /// `eval_delay`.
    pub eval_delay: f64,
    /// Evaluate before the first step.
    pub eval_on_start: bool,
    /// `save_strategy`.
    pub save_strategy: SaveStrategy,
    /// `save_steps` (below 1: a ratio).
    pub save_steps: f64,
    /// Keep at most this many checkpoints.
    pub save_total_limit: Option<i64>,
    /// Checkpoints hold only the weights.
    pub save_only_model: bool,
    /// Seed of the autograd RNG (dropout).
    pub seed: u64,
    /// Seed of the shuffle.
    pub data_seed: u64,
    /// Keep the dataset order.
    pub disable_shuffling: bool,
    /// Drop the last incomplete micro-batch.
    pub dataloader_drop_last: bool,
    /// Checkpoint to resume from.
    pub resume_from_checkpoint: Option<PathBuf>,
    /// Do not skip the batches already seen when resuming.
    pub ignore_data_skip: bool,
    /// Recompute activations per layer in backward.
    pub gradient_checkpointing: bool,
    /// `bf16: true`. On the CPU the model stays fp32 and every f32 product of the forward,
    /// the backward and evaluation takes bf16 operands with f32 accumulation (torch's CPU
    /// autocast for matmuls, [`lmf_kernels::cpu::gemm::bf16_products`]); on a GPU the model
    /// itself computes in bf16 and this changes nothing more.
    pub bf16: bool,
    /// LoRA+ `(loraplus_lr_ratio, loraplus_lr_embedding)`.
    pub loraplus: Option<(f64, f64)>,
    /// GaLore (`use_galore`).
    pub galore: Option<GaloreConfig>,
    /// `label_smoothing_factor` (pt / sft).
    pub label_smoothing: f64,
    /// `moe_aux_loss_coef` (pt / sft): the weight of the MoE load-balancing loss, which LF
    /// then turns on (`output_router_logits`); `None` (or 0) leaves config.json's choice.
    pub moe_aux_loss_coef: Option<f64>,
    /// `neftune_noise_alpha` (pt / sft).
    pub neftune_noise_alpha: Option<f64>,
    /// `metric_for_best_model` as transformers resolves it (`loss` for `reduce_lr_on_plateau`).
    pub metric_for_best_model: Option<String>,
    /// `greater_is_better` as transformers resolves it (false for a metric ending in `loss`).
    pub greater_is_better: bool,
    /// `load_best_model_at_end`: the best checkpoint's weights after training.
    pub load_best_model_at_end: bool,
    /// BAdam, layer mode (`use_badam`).
    pub badam: Option<BadamConfig>,
    /// BAdam, ratio mode (`use_badam`, `badam_mode: ratio`).
    pub badam_ratio: Option<RatioConfig>,
    /// Draw `training_loss.png` and friends.
    pub plot_loss: bool,
    /// Pre-training (adds `eval_perplexity`).
    pub stage_pt: bool,
    /// Show the progress bar (only drawn on a terminal anyway).
    pub progress_bar: bool,
    /// Start afresh in a used `output_dir` (LF then deletes the old `trainer_log.jsonl`).
    pub overwrite_output_dir: bool,
    /// `report_to`: the monitors (resolved names) and what they are told about the run.
    pub report: ReportConfig,
}

/// The run's `report_to` monitors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportConfig {
    /// The monitors, by `report_to` name (none: nothing is reported).
    pub monitors: Vec<&'static str>,
    /// The training arguments (`args.to_dict()`), `run_name`, the logging folder, the model's
    /// `config.json`.
    pub run: RunInfo,
}

impl ReportConfig {
    /// `report_to` and friends out of the arguments: the TensorBoard folder is
    /// `TENSORBOARD_LOGGING_DIR`, else `logging_dir` (deprecated in transformers 5, which
    /// ignores it; lmf honours it), else transformers' default `output_dir/runs/{%b%d_%H-%M-%S}_{host}`.
    pub fn from_args(
        training: &TrainingArguments,
        model: &ModelArguments,
        output_dir: &std::path::Path,
    ) -> Result<ReportConfig> {
        let names: Vec<String> = match &training.report_to {
            None => vec![],
            Some(Union2::A(s)) => vec![s.clone()],
            Some(Union2::B(list)) => list.0.clone(),
        };
        let monitors = monitor::resolve_report_to(&names)?;
        if monitors.is_empty() {
            return Ok(ReportConfig::default());
        }
        let logging_dir = std::env::var("TENSORBOARD_LOGGING_DIR")
            .ok()
            .filter(|d| !d.is_empty())
            .or_else(|| training.logging_dir.clone())
            .map(PathBuf::from)
            .unwrap_or_else(|| output_dir.join(monitor::default_logdir()));
        let model_config_json = model.model_name_or_path.as_ref().and_then(|m| {
            std::fs::read_to_string(std::path::Path::new(m).join("config.json")).ok()
        });
        Ok(ReportConfig {
            monitors,
            run: RunInfo {
                output_dir: output_dir.to_path_buf(),
                logging_dir,
                run_name: training.run_name.clone().unwrap_or_default(),
                args: serde_json::to_value(training).unwrap_or_default(),
                model_config_json,
            },
        })
    }
}

impl TrainConfig {
    /// Test-friendly defaults (HF's) writing into `output_dir`.
    pub fn new(output_dir: impl Into<PathBuf>) -> TrainConfig {
        TrainConfig {
            output_dir: output_dir.into(),
            train_batch_size: 8,
            eval_batch_size: 8,
            gradient_accumulation_steps: 1,
            num_train_epochs: 3.0,
            max_steps: -1,
            learning_rate: 5e-5,
            lr_scheduler_type: "linear".into(),
            lr_scheduler_kwargs: Map::new(),
            warmup_steps: 0.0,
            warmup_ratio: None,
            weight_decay: 0.0,
            adam: AdamHyper::default(),
            max_grad_norm: 1.0,
            logging_strategy: IntervalStrategy::Steps,
            logging_steps: 500.0,
            logging_first_step: false,
            eval_strategy: IntervalStrategy::No,
            eval_steps: None,
            eval_delay: 0.0,
            eval_on_start: false,
            save_strategy: SaveStrategy::Steps,
            save_steps: 500.0,
            save_total_limit: None,
            save_only_model: false,
            seed: 42,
            data_seed: 42,
            disable_shuffling: false,
            dataloader_drop_last: false,
            resume_from_checkpoint: None,
            ignore_data_skip: false,
            gradient_checkpointing: false,
            bf16: false,
            loraplus: None,
            galore: None,
            label_smoothing: 0.0,
            moe_aux_loss_coef: None,
            neftune_noise_alpha: None,
            metric_for_best_model: None,
            greater_is_better: false,
            load_best_model_at_end: false,
            badam: None,
            badam_ratio: None,
            plot_loss: false,
            stage_pt: false,
            progress_bar: true,
            overwrite_output_dir: false,
            report: ReportConfig::default(),
        }
    }

    /// Reads the settings out of the parsed argument groups.
    pub fn from_args(
        training: &TrainingArguments,
        finetuning: &FinetuningArguments,
        model: &ModelArguments,
    ) -> Result<TrainConfig> {
        let output_dir = training
            .output_dir
            .clone()
            .ok_or_else(|| Error::Msg("`output_dir` is required for training".into()))?;
        let pos = |k: &str, v: i64| -> Result<usize> {
            if v < 1 {
                return Err(Error::Msg(format!("`{k}` must be at least 1, got {v}")));
            }
            Ok(v as usize)
        };
        let kwargs = match &training.lr_scheduler_kwargs {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(Error::Msg(format!(
                        "`lr_scheduler_kwargs` must be a mapping, got {s:?}"
                    )))
                }
            },
            Some(other) => {
                return Err(Error::Msg(format!(
                    "`lr_scheduler_kwargs` must be a mapping, got {other}"
                )))
            }
        };
        let seed = training.seed.max(0) as u64;
        let report = ReportConfig::from_args(training, model, std::path::Path::new(&output_dir))?;
        Ok(TrainConfig {
            output_dir: PathBuf::from(output_dir),
            train_batch_size: pos(
                "per_device_train_batch_size",
                training.per_device_train_batch_size,
            )?,
            eval_batch_size: pos(
                "per_device_eval_batch_size",
                training.per_device_eval_batch_size,
            )?,
            gradient_accumulation_steps: pos(
                "gradient_accumulation_steps",
                training.gradient_accumulation_steps,
            )?,
            num_train_epochs: training.num_train_epochs,
            max_steps: training.max_steps,
            learning_rate: training.learning_rate,
            lr_scheduler_type: training.lr_scheduler_type.as_str().to_string(),
            lr_scheduler_kwargs: kwargs,
            warmup_steps: training.warmup_steps,
            warmup_ratio: training.warmup_ratio,
            weight_decay: training.weight_decay,
            adam: AdamHyper {
                beta1: training.adam_beta1,
                beta2: training.adam_beta2,
                eps: training.adam_epsilon,
            },
            max_grad_norm: training.max_grad_norm,
            logging_strategy: training.logging_strategy,
            logging_steps: training.logging_steps,
            logging_first_step: training.logging_first_step,
            eval_strategy: training.eval_strategy,
            eval_steps: training.eval_steps,
            eval_delay: training.eval_delay,
            eval_on_start: training.eval_on_start,
            save_strategy: training.save_strategy,
            save_steps: training.save_steps,
            save_total_limit: training.save_total_limit,
            save_only_model: training.save_only_model,
            seed,
            data_seed: training.data_seed.map_or(seed, |s| s.max(0) as u64),
            disable_shuffling: finetuning.disable_shuffling,
            dataloader_drop_last: training.dataloader_drop_last,
            resume_from_checkpoint: training.resume_from_checkpoint.as_ref().map(PathBuf::from),
            ignore_data_skip: training.ignore_data_skip,
            gradient_checkpointing: !model.disable_gradient_checkpointing,
            bf16: training.bf16,
            loraplus: finetuning
                .loraplus_lr_ratio
                .map(|r| (r, finetuning.loraplus_lr_embedding)),
            galore: GaloreConfig::from_args(training, finetuning)?,
            label_smoothing: training.label_smoothing_factor,
            moe_aux_loss_coef: model.moe_aux_loss_coef.filter(|&c| c != 0.0),
            neftune_noise_alpha: training.neftune_noise_alpha,
            metric_for_best_model: metric_for_best_model(training),
            greater_is_better: training.greater_is_better.unwrap_or_else(|| {
                !metric_for_best_model(training).is_some_and(|m| m.ends_with("loss"))
            }),
            load_best_model_at_end: training.load_best_model_at_end,
            badam: badam_config(finetuning)?,
            badam_ratio: badam_ratio_config(training, finetuning)?,
            plot_loss: finetuning.plot_loss,
            stage_pt: finetuning.stage == Stage::Pt,
            progress_bar: training.disable_tqdm != Some(true),
            overwrite_output_dir: training.overwrite_output_dir,
            report,
        })
    }

    /// HF `TrainingArguments.__post_init__` + `TrainerState.compute_steps`: an interval below 1
    /// is a ratio of `max_steps` (rounded up), else its integer value.
    pub fn abs_steps(value: f64, max_steps: u64) -> u64 {
        if value < 1.0 {
            (max_steps as f64 * value).ceil() as u64
        } else {
            value as u64
        }
    }
}

/// LLaMA-Factory's GaLore or APOLLO arguments (APOLLO is GaLore's optimizer with another
/// update rule), checked as `_create_galore_optimizer` / `_create_apollo_optimizer` check them.
#[derive(Clone, Debug, PartialEq)]
pub struct GaloreConfig {
    /// `galore_target` / `apollo_target`: module names (`all`: every decoder linear); a
    /// linear is a target when its full name contains one of them.
    pub target: Vec<String>,
    /// `*_rank`.
    pub rank: usize,
    /// `*_update_interval`.
    pub update_interval: u64,
    /// `*_scale`.
    pub scale: f64,
    /// `*_proj_type`.
    pub proj_type: ProjType,
    /// `*_layerwise`: each parameter steps on its own gradient at the base learning rate
    /// (what LF 0.9.5 with transformers 5 runs: no clipping, no schedule).
    pub layerwise: bool,
    /// APOLLO's projector and scaling (`use_apollo`); `None` for GaLore.
    pub apollo: Option<ApolloSettings>,
}

impl GaloreConfig {
    fn from_args(
        training: &TrainingArguments,
        finetuning: &FinetuningArguments,
    ) -> Result<Option<GaloreConfig>> {
        let f = finetuning;
        let (name, cfg) = if f.use_galore {
            (
                "GaLore",
                GaloreConfig {
                    target: f.galore_target.clone(),
                    rank: f.galore_rank.max(0) as usize,
                    update_interval: f.galore_update_interval.max(0) as u64,
                    scale: f.galore_scale,
                    proj_type: match f.galore_proj_type {
                        GaloreProjType::Std => ProjType::Std,
                        GaloreProjType::ReverseStd => ProjType::ReverseStd,
                        GaloreProjType::Right => ProjType::Right,
                        GaloreProjType::Left => ProjType::Left,
                        GaloreProjType::Full => ProjType::Full,
                    },
                    layerwise: f.galore_layerwise,
                    apollo: None,
                },
            )
        } else if f.use_apollo {
            if f.apollo_scale_front {
                eprintln!(
                    "note: `apollo_scale_front` has no effect, as in LLaMA-Factory 0.9.5 \
                     (apollo-torch reads it from its constructor, LF sets it in the group)"
                );
            }
            (
                "APOLLO",
                GaloreConfig {
                    target: f.apollo_target.clone(),
                    rank: f.apollo_rank.max(0) as usize,
                    update_interval: f.apollo_update_interval.max(0) as u64,
                    scale: f.apollo_scale,
                    proj_type: match f.apollo_proj_type {
                        ApolloProjType::Std => ProjType::Std,
                        ApolloProjType::Right => ProjType::Right,
                        ApolloProjType::Left => ProjType::Left,
                    },
                    layerwise: f.apollo_layerwise,
                    apollo: Some(ApolloSettings {
                        random: f.apollo_proj == ApolloProj::Random,
                        channel: f.apollo_scale_type == ApolloScaleType::Channel,
                    }),
                },
            )
        } else {
            return Ok(None);
        };
        if training.optim != OptimizerNames::AdamwTorch {
            return Err(Error::Msg(format!(
                "Unknown optim: {}. ({name} in lmf runs with `optim: adamw_torch`, as \
                 LLaMA-Factory's {name} AdamW; other optimizers are not supported)",
                training.optim.as_str()
            )));
        }
        if cfg.layerwise && training.gradient_accumulation_steps != 1 {
            return Err(Error::Msg(format!(
                "Per-layer {name} does not support gradient accumulation."
            )));
        }
        if cfg.rank < 1 || cfg.update_interval < 1 {
            return Err(Error::Msg(format!(
                "{name}: the rank ({}) and the update interval ({}) must be at least 1",
                cfg.rank, cfg.update_interval
            )));
        }
        Ok(Some(cfg))
    }
}

/// LF's BAdam arguments (layer mode; `badam_mode: ratio` is refused by the argument table).
/// BAdam's ratio mode (`BlockOptimizerRatio`): LF passes the optimizer's Adam settings, so
/// with transformers' default `adamw_torch_fused` it fails on the `fused` keyword.
fn badam_ratio_config(
    training: &TrainingArguments,
    finetuning: &FinetuningArguments,
) -> Result<Option<RatioConfig>> {
    if !finetuning.use_badam || finetuning.badam_mode != BadamMode::Ratio {
        return Ok(None);
    }
    if training.optim != OptimizerNames::AdamwTorch {
        return Err(Error::Msg(format!(
            "BAdam's ratio mode needs `optim: adamw_torch` (with `{}` LLaMA-Factory fails: \
             `BlockOptimizerRatio.__init__() got an unexpected keyword argument 'fused'`)",
            training.optim.as_str()
        )));
    }
    let mask_mode = match finetuning.badam_mask_mode {
        BadamMaskMode::Adjacent => MaskMode::Adjacent,
        BadamMaskMode::Scatter => MaskMode::Scatter,
    };
    let hyper = AdamHyper {
        beta1: training.adam_beta1,
        beta2: training.adam_beta2,
        eps: training.adam_epsilon,
    };
    Ok(Some(RatioConfig::lf(
        finetuning.badam_update_ratio,
        mask_mode,
        hyper,
    )))
}

fn badam_config(finetuning: &FinetuningArguments) -> Result<Option<BadamConfig>> {
    if !finetuning.use_badam || finetuning.badam_mode != BadamMode::Layer {
        return Ok(None);
    }
    let start_block = match finetuning.badam_start_block {
        Some(b) if b < 0 => {
            return Err(Error::Msg(format!(
                "`badam_start_block` must not be negative, got {b}"
            )))
        }
        b => b.map(|b| b as usize),
    };
    Ok(Some(BadamConfig {
        start_block,
        switch_mode: match finetuning.badam_switch_mode {
            // an explicit null: BlockOptimizer's own default
            None | Some(BadamSwitchMode::Descending) => SwitchMode::Descending,
            Some(BadamSwitchMode::Ascending) => SwitchMode::Ascending,
            Some(BadamSwitchMode::Random) => SwitchMode::Random,
            Some(BadamSwitchMode::Fixed) => SwitchMode::Fixed,
        },
        // an explicit null: LF's (and BlockOptimizer's) default
        switch_interval: finetuning.badam_switch_interval.unwrap_or(50),
    }))
}

/// transformers' `metric_for_best_model` default: `loss` with `load_best_model_at_end` or
/// `reduce_lr_on_plateau`.
fn metric_for_best_model(training: &TrainingArguments) -> Option<String> {
    training.metric_for_best_model.clone().or_else(|| {
        (training.load_best_model_at_end
            || training.lr_scheduler_type
                == crate::args::training::SchedulerType::ReduceLrOnPlateau)
            .then(|| "loss".to_string())
    })
}
