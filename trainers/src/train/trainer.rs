//! The training loop with the semantics of transformers 5.6 `Trainer._inner_training_loop`:
//! epochs of micro-batches, `gradient_accumulation_steps` micro-batches per optimizer step with
//! each micro-batch loss = sum of its token losses / `num_items_in_batch` (label tokens of the
//! whole accumulated step), global-norm clipping, AdamW, one scheduler step per update, and the
//! `DefaultFlowCallback` decisions of when to log, evaluate and save. Resuming restores the
//! weights, optimizer, scheduler, RNG and state from a checkpoint and skips the batches already
//! seen, so it continues exactly like an uninterrupted run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lmf_autograd::rng::{manual_seed, rng_state, set_rng_state, RngState};
use lmf_autograd::{Grads, Var};
use lmf_models::adapter::set_training;
use lmf_models::model::neftune::with_neftune;
use lmf_models::CausalLM;

use crate::args::training::{IntervalStrategy, SaveStrategy};
use crate::data::EpochRows;
use crate::data::Example;
use crate::optim::badam::BlockSchedule;
use crate::optim::badam_ratio::BadamRatio;
use crate::optim::galore::GaloreSettings;
use crate::optim::{clip_grad_norm, default_groups, loraplus_groups, AdamW, Scheduler};
use crate::template::pyjson::PyJson;
use crate::train::batch::{epoch_batches, epoch_order};
use crate::train::checkpoint::{rotate_checkpoints, CHECKPOINT_PREFIX};
use crate::train::config::{GaloreConfig, TrainConfig};
use crate::train::export::ModelIo;
use crate::train::io::{commit_dir, dict, py_round, read_json, temp_dir_for, write_json};
use crate::train::logs::RunLog;
use crate::train::progress::Progress;
use crate::train::stage::{lm_batch_losses, LmStage, Stage};
use crate::train::state::TrainerState;
use crate::{Error, Result};

/// Scheduler state file inside a checkpoint.
pub const SCHEDULER_NAME: &str = "scheduler.json";
/// RNG state file inside a checkpoint.
pub const RNG_STATE_NAME: &str = "rng_state.json";

/// What a finished (or interrupted) training run reports.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// Optimizer steps done.
    pub global_step: u64,
    /// HF's `train_loss`: the summed logged losses of this session / `global_step`.
    pub train_loss: f64,
    /// The `train_*` metrics (what `train_results.json` holds).
    pub metrics: Vec<(String, PyJson)>,
    /// Every logged training loss, by step (for tests and the CLI).
    pub losses: Vec<(u64, f64)>,
    /// True when Ctrl-C stopped the run early (a checkpoint was saved).
    pub interrupted: bool,
}

/// A stage's metrics of one micro-batch.
type Metrics = Vec<(String, f64)>;

/// HF's `TrainerControl` flags.
#[derive(Clone, Copy, Debug, Default)]
struct Control {
    should_log: bool,
    should_evaluate: bool,
    should_save: bool,
    should_training_stop: bool,
}

/// One training run over a model: owns the optimizer, scheduler and state; the stage `S`
/// supplies the rows, the loss and the evaluation (`pt`/`sft` by default).
pub struct Trainer<'a, S: Stage = LmStage> {
    cfg: &'a TrainConfig,
    stage: S,
    /// The model being trained (its `requires_grad` flags say what trains).
    pub model: &'a mut CausalLM,
    io: &'a dyn ModelIo,
    train: &'a [S::Row],
    eval: &'a [(String, Vec<S::Row>)],
    /// A streaming run's rows of each epoch (`train` is then epoch 0's).
    stream: Option<&'a EpochRows<S::Row>>,
    /// HF trainer state (log history, counters).
    pub state: TrainerState,
    optimizer: AdamW,
    /// BAdam's block schedule, when `use_badam`.
    badam: Option<BlockSchedule>,
    /// BAdam's ratio mode: gradient masks and the sparse Adam that replaces `optimizer`.
    badam_ratio: Option<BadamRatio>,
    scheduler: Scheduler,
    log: RunLog,
    stop: Arc<AtomicBool>,
    non_embedding_params: f64,
    losses: Vec<(u64, f64)>,
    progress: Progress,
    /// The stage's metrics of each micro-batch since the last log.
    stored: Vec<Vec<(String, f64)>>,
}

/// [`training_steps`] of a run whose training set has no length (`streaming`): HF's
/// `max_steps` case without a dataloader length: `max_steps · gradient_accumulation_steps`
/// micro-batches and `max_steps` optimizer steps per epoch, and `sys.maxsize` epochs (each
/// epoch really ends when its stream runs out).
pub fn streaming_steps(cfg: &TrainConfig) -> Result<(usize, usize, u64, u64)> {
    if cfg.max_steps <= 0 {
        return Err(Error::Msg(
            "Please specify `max_steps` in streaming mode.".into(),
        ));
    }
    let gas = cfg.gradient_accumulation_steps.max(1);
    let m = cfg.max_steps as usize;
    Ok((m * gas, m, m as u64, i64::MAX as u64))
}

/// Micro-batches per epoch, optimizer steps per epoch, total optimizer steps and the integer
/// number of epochs, exactly as HF's `set_initial_training_values` derives them.
pub fn training_steps(cfg: &TrainConfig, num_rows: usize) -> (usize, usize, u64, u64) {
    let bs = cfg.train_batch_size.max(1);
    let steps_in_epoch = if cfg.dataloader_drop_last {
        num_rows / bs
    } else {
        num_rows.div_ceil(bs)
    };
    let gas = cfg.gradient_accumulation_steps.max(1);
    let nupe = steps_in_epoch.div_ceil(gas).max(1);
    let (max_steps, epochs) = if cfg.max_steps > 0 {
        let m = cfg.max_steps as u64;
        (m, m.div_ceil(nupe as u64))
    } else {
        (
            (cfg.num_train_epochs * nupe as f64).ceil() as u64,
            cfg.num_train_epochs.ceil() as u64,
        )
    };
    (steps_in_epoch, nupe, max_steps, epochs)
}

impl<'a> Trainer<'a, LmStage> {
    /// A `pt`/`sft` run (see [`Trainer::with_stage`]).
    pub fn new(
        model: &'a mut CausalLM,
        cfg: &'a TrainConfig,
        io: &'a dyn ModelIo,
        train: &'a [Example],
        eval: &'a [(String, Vec<Example>)],
    ) -> Result<Trainer<'a, LmStage>> {
        Trainer::with_stage(LmStage::for_config(cfg), model, cfg, io, train, eval)
    }
}

impl<'a, S: Stage> Trainer<'a, S> {
    /// Sets up a run of `stage`: optimizer groups over the model's trainable parameters (HF
    /// decay split, or LoRA+), the scheduler over the run's steps, the state's intervals.
    pub fn with_stage(
        stage: S,
        model: &'a mut CausalLM,
        cfg: &'a TrainConfig,
        io: &'a dyn ModelIo,
        train: &'a [S::Row],
        eval: &'a [(String, Vec<S::Row>)],
    ) -> Result<Trainer<'a, S>> {
        if cfg.neftune_noise_alpha.is_some() && stage.padded_len(&[]).is_none() {
            return Err(Error::Msg(
                "`neftune_noise_alpha`: lmf applies NEFTune in the pt and sft stages only".into(),
            ));
        }
        if cfg.moe_aux_loss_coef.is_some() && stage.padded_len(&[]).is_none() {
            return Err(Error::Msg(
                "`moe_aux_loss_coef`: lmf adds the MoE load-balancing loss in the pt and sft stages only"
                    .into(),
            ));
        }
        model.moe_aux_loss_coef = cfg.moe_aux_loss_coef;
        let (_, _, max_steps, epochs) = training_steps(cfg, train.len());
        let badam = match &cfg.badam {
            Some(b) => {
                let names: Vec<String> = model
                    .named_parameters()
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                let schedule = BlockSchedule::new(&names, b, cfg.seed)?;
                model.set_trainable(|n| schedule.is_active(n));
                Some(schedule)
            }
            None => None,
        };
        let badam_ratio = match &cfg.badam_ratio {
            Some(rc) => {
                if model.dtype != lmf_autograd::DType::F32 {
                    return Err(Error::Msg(
                        "BAdam's ratio mode trains float32 weights only (use_cpu, or no bf16/fp16)"
                            .into(),
                    ));
                }
                let all: Vec<(String, Vec<usize>)> = model
                    .named_parameters()
                    .into_iter()
                    .map(|(n, v)| (n, v.tensor().shape().to_vec()))
                    .collect();
                let was: std::collections::HashSet<String> = model
                    .trainable_parameters()
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                let r = BadamRatio::new(&all, |n| was.contains(n), rc.clone(), cfg.seed)?;
                model.set_trainable(|n| r.is_trainable(n));
                Some(r)
            }
            None => None,
        };
        let trainable: Vec<String> = model
            .trainable_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let groups = match &badam {
            Some(s) => s.groups(&trainable, cfg.learning_rate),
            None => optimizer_groups(model, &trainable, cfg),
        };
        let warmup = crate::optim::get_warmup_steps(cfg.warmup_steps, cfg.warmup_ratio, max_steps);
        let scheduler = Scheduler::from_name(
            &cfg.lr_scheduler_type,
            cfg.learning_rate,
            warmup,
            max_steps,
            &cfg.lr_scheduler_kwargs,
        )
        .map_err(|e| Error::Msg(e.to_string()))?;
        let logging_steps = TrainConfig::abs_steps(cfg.logging_steps, max_steps);
        let state = TrainerState {
            max_steps,
            num_train_epochs: epochs,
            logging_steps,
            eval_steps: TrainConfig::abs_steps(
                cfg.eval_steps.unwrap_or(cfg.logging_steps),
                max_steps,
            ),
            save_steps: TrainConfig::abs_steps(cfg.save_steps, max_steps),
            train_batch_size: cfg.train_batch_size as u64,
            ..TrainerState::default()
        };
        let optimizer = match &cfg.galore {
            None => AdamW::new(cfg.adam, groups),
            Some(g) => {
                let mut settings = galore_settings(model, &trainable, g, &groups);
                settings.load_sign_hook()?;
                AdamW::new(cfg.adam, groups).with_galore(settings)
            }
        };
        let embed = model.embed_tokens.elem_count();
        let non_embedding_params = (model.num_parameters() - embed) as f64;
        Ok(Trainer {
            cfg,
            stage,
            model,
            io,
            train,
            eval,
            stream: None,
            state,
            optimizer,
            badam,
            badam_ratio,
            scheduler,
            log: RunLog::new(&cfg.output_dir).with_report(&cfg.report),
            stop: Arc::new(AtomicBool::new(false)),
            non_embedding_params,
            losses: vec![],
            progress: Progress::hidden(),
            stored: vec![],
        })
    }

    /// Makes this a streaming run: each epoch trains on `stream`'s rows of that epoch.
    pub fn set_stream(&mut self, stream: Option<&'a EpochRows<S::Row>>) {
        self.stream = stream;
    }

    /// The flag that stops training after the current optimizer step (and saves a checkpoint):
    /// what the Ctrl-C handler sets.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Replaces the stop flag (to share one process-wide Ctrl-C flag).
    pub fn set_stop_flag(&mut self, flag: Arc<AtomicBool>) {
        self.stop = flag;
    }

    /// The run is over: hands `files` to the `report_to` monitors that keep artifacts and
    /// closes them.
    pub fn finish_report(
        &mut self,
        end: crate::train::monitor::RunEnd,
        files: &[std::path::PathBuf],
    ) {
        self.log.finish(end, files);
    }

    /// Appends `logs` (+ `epoch`, + `step`) to the log history and to `trainer_log.jsonl`.
    fn log(&mut self, mut logs: Vec<(String, PyJson)>) -> Result<()> {
        logs.push(("epoch".into(), PyJson::Float(self.state.epoch)));
        if !super::hooks::has_log_callback() {
            self.progress.print_log(&logs);
        }
        let mut out = logs.clone();
        out.push(("step".into(), PyJson::Int(self.state.global_step as i128)));
        let entry = PyJson::Dict(out);
        self.log
            .on_log(&entry, self.state.global_step, self.state.max_steps)?;
        super::hooks::emit_log(&entry.dumps());
        self.state.log_history.push(entry);
        Ok(())
    }

    /// Runs the training loop; returns the train metrics (already logged).
    pub fn train(&mut self) -> Result<TrainOutcome> {
        let cfg = self.cfg;
        if self.train.is_empty() {
            return Err(Error::Msg("the training dataset is empty".into()));
        }
        if self.model.trainable_parameters().is_empty() {
            return Err(Error::Msg(
                "no trainable parameters: check finetuning_type and its settings".into(),
            ));
        }
        std::fs::create_dir_all(&cfg.output_dir)
            .map_err(|e| Error::Msg(format!("{}: {e}", cfg.output_dir.display())))?;
        let (steps_in_epoch, nupe, max_steps, num_epochs) = match self.stream {
            Some(_) => streaming_steps(cfg)?,
            None => training_steps(cfg, self.train.len()),
        };
        if steps_in_epoch == 0 {
            return Err(Error::Msg(format!(
                "{} training rows make no full batch of {} (dataloader_drop_last)",
                self.train.len(),
                cfg.train_batch_size
            )));
        }
        let gas = cfg.gradient_accumulation_steps.max(1);
        self.model.gradient_checkpointing = cfg.gradient_checkpointing;
        self.model.checkpoint_keep_bytes = checkpoint_keep_bytes(self.model, cfg)?;
        manual_seed(cfg.seed);

        let mut epochs_trained = 0u64;
        let mut steps_trained_in_epoch = 0usize;
        if let Some(ckpt) = cfg.resume_from_checkpoint.clone() {
            self.resume(&ckpt)?;
            epochs_trained = self.state.global_step / nupe as u64;
            if !cfg.ignore_data_skip {
                steps_trained_in_epoch = (self.state.global_step % nupe as u64) as usize * gas;
            }
        }
        self.state.max_steps = max_steps;
        self.state.num_train_epochs = num_epochs;
        let trainable_count: usize = self
            .model
            .trainable_parameters()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum();
        self.log.info(&format!(
            "***** Running training *****\n  Num examples = {}\n  Num Epochs = {num_epochs}\n  \
             Instantaneous batch size per device = {}\n  Gradient Accumulation steps = {gas}\n  \
             Total optimization steps = {max_steps}\n  Number of trainable parameters = {trainable_count}",
            match self.stream {
                // HF: `total_train_batch_size · max_steps` without a dataset length
                Some(_) => max_steps as usize * cfg.train_batch_size * gas,
                None => self.train.len(),
            },
            cfg.train_batch_size
        ))?;
        self.log.begin_train(self.state.max_steps);

        let start = Instant::now();
        let mut tr_loss: f32 = 0.0;
        let mut total_loss: f64 = 0.0;
        let mut last_logged = self.state.global_step;
        let mut grads: HashMap<String, Vec<f32>> = HashMap::new();
        self.progress = Progress::new(cfg.progress_bar, max_steps, self.state.global_step);
        let mut tokens_session = 0usize;
        let mut interrupted = false;

        if cfg.eval_on_start {
            self.evaluate_and_log()?;
        }
        let mut control = Control::default();
        'epochs: for epoch in epochs_trained..num_epochs {
            // A stream comes in its own (shuffled) order, anew each epoch.
            let streamed;
            let train: &[S::Row] = match self.stream {
                Some(s) => {
                    streamed = s.rows(epoch)?;
                    if streamed.is_empty() {
                        return Err(Error::Msg(format!(
                            "the training stream has no rows in epoch {epoch}"
                        )));
                    }
                    &streamed
                }
                None => self.train,
            };
            let shuffle = !cfg.disable_shuffling && self.stream.is_none();
            let order = epoch_order(train.len(), shuffle, cfg.data_seed, epoch);
            let batches = epoch_batches(&order, cfg.train_batch_size, cfg.dataloader_drop_last);
            let mut step: i64 = -1;
            let mut first_update = 0usize;
            if epoch == epochs_trained && steps_trained_in_epoch > 0 {
                step = steps_trained_in_epoch as i64 - 1;
                first_update = steps_trained_in_epoch / gas;
            }
            let remainder = match steps_in_epoch % gas {
                0 => gas,
                r => r,
            };
            let mut grad_norm: Option<f32> = None;
            let mut learning_rate: Option<f64> = None;
            for update_step in first_update..nupe {
                let num_batches = if update_step + 1 != nupe {
                    gas
                } else {
                    remainder
                };
                let lo = (step + 1) as usize;
                let hi = (lo + num_batches).min(batches.len());
                if lo >= hi {
                    break;
                }
                let micro: Vec<Vec<&S::Row>> = batches[lo..hi]
                    .iter()
                    .map(|b| b.iter().map(|&i| &train[i]).collect())
                    .collect();
                let num_items: usize = micro.iter().map(|rows| self.stage.count_items(rows)).sum();
                for rows in &micro {
                    step += 1;
                    let (loss, tokens) = self.micro_step(rows, num_items as f64, &mut grads)?;
                    // BAdam ratio: each parameter's accumulated gradient masked after every
                    // micro-batch (its post-accumulate-grad hook).
                    if let Some(r) = self.badam_ratio.as_mut() {
                        r.after_micro_batch(&mut grads)?;
                    }
                    tokens_session += tokens;
                    self.state.total_flos += 6.0 * tokens as f64 * self.non_embedding_params;
                    tr_loss += loss as f32;
                }
                // HF's `do_sync_step`: a stream that ran out part-way through an accumulation
                // step leaves its gradients for the next epoch's first step, unstepped.
                let done = (step + 1) as usize;
                if !done.is_multiple_of(gas) && done != steps_in_epoch {
                    break;
                }
                // Optimizer step. Layer-wise GaLore (LF 0.9.5 under transformers 5) steps each
                // parameter inside backward, on its unclipped gradient at the base learning
                // rate (its per-parameter schedulers are never built), and logs a norm of 0.
                let layerwise = cfg.galore.as_ref().is_some_and(|g| g.layerwise);
                let norm = if layerwise {
                    0.0
                } else if cfg.max_grad_norm > 0.0 {
                    clip_grad_norm(&mut grads, cfg.max_grad_norm)
                } else {
                    crate::optim::grad_norm(&grads)
                };
                grad_norm = Some(norm);
                let mult = if layerwise {
                    1.0
                } else {
                    self.scheduler.multiplier(self.scheduler.last_epoch())
                };
                {
                    let mut params: HashMap<String, &mut Var> = self
                        .model
                        .named_parameters_mut()
                        .into_iter()
                        .filter(|(n, _)| grads.contains_key(n))
                        .collect();
                    match self.badam_ratio.as_mut() {
                        Some(r) => r.step(&mut params, &grads, cfg.learning_rate * mult)?,
                        None => self.optimizer.step(&mut params, &grads, mult)?,
                    }
                }
                grads.clear();
                if self.badam.as_mut().is_some_and(|s| s.after_step()) {
                    self.activate_badam_block();
                }
                learning_rate = Some(self.scheduler.lr());
                self.scheduler.step();
                self.state.global_step += 1;
                self.state.epoch = epoch as f64 + (step + 1) as f64 / steps_in_epoch as f64;
                let gs = self.state.global_step;
                self.progress.step(
                    gs,
                    tr_loss as f64 / (gs - last_logged).max(1) as f64,
                    learning_rate.unwrap_or(0.0),
                    tokens_session as f64 / start.elapsed().as_secs_f64().max(1e-9),
                );

                // DefaultFlowCallback.on_step_end.
                let st = &self.state;
                if gs == 1 && cfg.logging_first_step {
                    control.should_log = true;
                }
                if cfg.logging_strategy == IntervalStrategy::Steps
                    && st.logging_steps > 0
                    && gs.is_multiple_of(st.logging_steps)
                {
                    control.should_log = true;
                }
                let eval_due = cfg.eval_strategy == IntervalStrategy::Steps
                    && cfg.eval_delay <= gs as f64
                    && st.eval_steps > 0;
                if eval_due && gs.is_multiple_of(st.eval_steps) {
                    control.should_evaluate = true;
                }
                if cfg.save_strategy == SaveStrategy::Steps
                    && st.save_steps > 0
                    && gs.is_multiple_of(st.save_steps)
                {
                    control.should_save = true;
                }
                if gs >= st.max_steps {
                    control.should_training_stop = true;
                    if eval_due && !gs.is_multiple_of(st.eval_steps) {
                        control.should_evaluate = true;
                    }
                    if cfg.save_strategy == SaveStrategy::Steps {
                        control.should_save = true;
                    }
                }
                if self.stop.load(Ordering::SeqCst) && !control.should_training_stop {
                    // Ctrl-C: keep this step's work in a checkpoint, then stop.
                    control.should_training_stop = true;
                    control.should_save = true;
                    interrupted = true;
                }
                self.maybe_log_save_evaluate(
                    &mut control,
                    &mut tr_loss,
                    &mut total_loss,
                    &mut last_logged,
                    grad_norm,
                    learning_rate,
                )?;
                if control.should_training_stop {
                    break;
                }
            }
            // DefaultFlowCallback.on_epoch_end.
            if cfg.logging_strategy == IntervalStrategy::Epoch {
                control.should_log = true;
            }
            if cfg.eval_strategy == IntervalStrategy::Epoch && cfg.eval_delay <= self.state.epoch {
                control.should_evaluate = true;
            }
            if cfg.save_strategy == SaveStrategy::Epoch {
                control.should_save = true;
            }
            self.maybe_log_save_evaluate(
                &mut control,
                &mut tr_loss,
                &mut total_loss,
                &mut last_logged,
                grad_norm,
                learning_rate,
            )?;
            if control.should_training_stop {
                break 'epochs;
            }
        }
        self.progress.finish();

        // _finalize_training.
        total_loss += tr_loss as f64;
        let gs = (self.state.global_step as f64).max(0.001);
        let train_loss = total_loss / gs;
        let runtime = start.elapsed().as_secs_f64().max(1e-9);
        let num_samples = if cfg.max_steps > 0 {
            max_steps as f64 * (cfg.train_batch_size * gas) as f64
        } else {
            self.train.len() as f64 * cfg.num_train_epochs
        };
        let metrics: Vec<(String, PyJson)> = vec![
            ("train_runtime".into(), PyJson::Float(py_round(runtime, 4))),
            (
                "train_samples_per_second".into(),
                PyJson::Float(py_round(num_samples / runtime, 3)),
            ),
            (
                "train_steps_per_second".into(),
                PyJson::Float(py_round(self.state.max_steps as f64 / runtime, 3)),
            ),
            ("total_flos".into(), PyJson::Float(self.state.total_flos)),
            ("train_loss".into(), PyJson::Float(train_loss)),
        ];
        self.log(metrics.clone())?;
        if cfg.load_best_model_at_end {
            if let Some(best) = self.state.best_model_checkpoint.clone() {
                self.log.info(&format!(
                    "Loading best model from {best} (score: {}).",
                    self.state.best_metric.unwrap_or(f64::NAN)
                ))?;
                self.io.load(self.model, Path::new(&best))?;
                if cfg.save_total_limit == Some(1) {
                    // transformers deletes every other checkpoint then
                    for (_, p) in crate::train::checkpoint::list_checkpoints(&cfg.output_dir)? {
                        if !crate::train::checkpoint::same_dir(&p, Path::new(&best)) {
                            std::fs::remove_dir_all(&p)
                                .map_err(|e| Error::Msg(format!("{}: {e}", p.display())))?;
                        }
                    }
                }
            }
        }
        self.log.end_train();
        let mut metrics = metrics;
        metrics.push(("epoch".into(), PyJson::Float(self.state.epoch)));
        Ok(TrainOutcome {
            global_step: self.state.global_step,
            train_loss,
            metrics,
            losses: self.losses.clone(),
            interrupted,
        })
    }

    /// Forward + backward of one micro-batch; adds its gradients into `grads` and returns its
    /// loss (sum of token losses / `num_items`).
    fn micro_step(
        &mut self,
        rows: &[&S::Row],
        num_items: f64,
        grads: &mut HashMap<String, Vec<f32>>,
    ) -> Result<(f64, usize)> {
        let model = &*self.model;
        let stage = &self.stage;
        // Adapter dropout is on only for this forward and its backward (HF `model.train()`);
        // the backward's recomputed layers replay the same masks.
        set_training(stage.dropout());
        let neftune = self.cfg.neftune_noise_alpha;
        let step = with_products(self.cfg.bf16, || -> Result<(f64, usize, Grads, Metrics)> {
            let micro = match (neftune, stage.padded_len(rows)) {
                (Some(alpha), Some(len)) => {
                    with_neftune(alpha, len, || stage.micro_loss(model, rows, num_items, 0))?
                }
                _ => stage.micro_loss(model, rows, num_items, 0)?,
            };
            let value = micro.loss.tensor().to_scalar::<f64>()?;
            if !value.is_finite() {
                return Ok((value, micro.tokens, Grads::new(), micro.metrics));
            }
            Ok((
                value,
                micro.tokens,
                micro.loss.backward_releasing()?,
                micro.metrics,
            ))
        });
        set_training(false);
        let (value, tokens, g, metrics) = step?;
        self.stored.push(metrics);
        if !value.is_finite() {
            return Err(Error::Msg(format!(
                "the training loss is {value} at step {}: lower the learning_rate, check the data \
                 for rows without labels, or use max_grad_norm",
                self.state.global_step + 1
            )));
        }
        accumulate_grads(model, &g, grads)?;
        Ok((value, tokens))
    }

    /// HF `_maybe_log_save_evaluate` + the callbacks' resets of the flags.
    fn maybe_log_save_evaluate(
        &mut self,
        control: &mut Control,
        tr_loss: &mut f32,
        total_loss: &mut f64,
        last_logged: &mut u64,
        grad_norm: Option<f32>,
        learning_rate: Option<f64>,
    ) -> Result<()> {
        let gs = self.state.global_step;
        if control.should_log && gs > *last_logged {
            let scalar = *tr_loss as f64;
            *tr_loss = 0.0;
            let loss = scalar / (gs - *last_logged) as f64;
            let mut logs: Vec<(String, PyJson)> = vec![("loss".into(), PyJson::Float(loss))];
            if let Some(n) = grad_norm {
                logs.push(("grad_norm".into(), PyJson::Float(n as f64)));
            }
            let lr = learning_rate.unwrap_or_else(|| self.scheduler.lr());
            logs.push(("learning_rate".into(), PyJson::Float(lr)));
            logs.extend(self.stage.log_metrics(&self.stored));
            self.stored.clear();
            *total_loss += scalar;
            *last_logged = gs;
            self.losses.push((gs, loss));
            self.log(logs)?;
        }
        control.should_log = false;
        if control.should_evaluate {
            let metrics = self.evaluate_and_log()?;
            let new_best = self.after_evaluate(&metrics)?;
            if self.cfg.save_strategy == SaveStrategy::Best {
                control.should_save = new_best;
            }
            control.should_evaluate = false;
        }
        if control.should_save {
            self.save_checkpoint()?;
            control.should_save = false;
        }
        Ok(())
    }

    /// HF's `_evaluate` tail and `_determine_best_metric`: steps `reduce_lr_on_plateau` with
    /// the `metric_for_best_model` value, then records a new best metric (and its step, when
    /// checkpoints are saved by steps or epochs).
    fn after_evaluate(&mut self, metrics: &[(String, PyJson)]) -> Result<bool> {
        let Some(name) = &self.cfg.metric_for_best_model else {
            return Ok(false);
        };
        let key = if name.starts_with("eval_") {
            name.clone()
        } else {
            format!("eval_{name}")
        };
        let value = metrics
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| match v {
                PyJson::Float(f) => Some(*f),
                PyJson::Int(i) => Some(*i as f64),
                _ => None,
            })
            .ok_or_else(|| {
                let names: Vec<&str> = metrics.iter().map(|(k, _)| k.as_str()).collect();
                Error::Msg(format!(
                    "The `metric_for_best_model` training argument is set to '{key}', which is \
                     not found in the evaluation metrics. The available evaluation metrics are: \
                     {names:?}. Consider changing the `metric_for_best_model` via the \
                     TrainingArguments."
                ))
            })?;
        if let Some(p) = self.scheduler.plateau_mut() {
            p.step(value);
        }
        let greater = self.cfg.greater_is_better;
        let best = self.state.best_metric.unwrap_or(if greater {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
        self.state.best_metric = Some(best);
        if (greater && value > best) || (!greater && value < best) {
            self.state.best_metric = Some(value);
            if matches!(
                self.cfg.save_strategy,
                SaveStrategy::Steps | SaveStrategy::Epoch | SaveStrategy::Best
            ) {
                self.state.best_global_step = Some(self.state.global_step);
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Evaluates every eval set and logs each set's metrics (HF `evaluate`); returns them merged.
    pub fn evaluate_and_log(&mut self) -> Result<Vec<(String, PyJson)>> {
        let mut all = Vec::new();
        let sets: Vec<(String, &[S::Row])> = self
            .eval
            .iter()
            .map(|(n, r)| (n.clone(), r.as_slice()))
            .collect();
        for (name, rows) in sets {
            let prefix = if name.is_empty() {
                "eval".to_string()
            } else {
                format!("eval_{name}")
            };
            let metrics = with_products(self.cfg.bf16, || {
                self.stage
                    .evaluate(self.model, rows, self.cfg.eval_batch_size, &prefix)
            })?;
            self.log(metrics.clone())?;
            all.extend(metrics);
        }
        Ok(all)
    }

    /// `checkpoint-{global_step}`: weights (through the [`ModelIo`] hook), optimizer,
    /// scheduler, RNG and trainer state, built in a temporary folder and renamed into place,
    /// then older checkpoints rotated out.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let out = &self.cfg.output_dir;
        let fin = out.join(format!("{CHECKPOINT_PREFIX}-{}", self.state.global_step));
        let tmp = temp_dir_for(&fin)?;
        self.io.save(self.model, &tmp)?;
        // HF `_save_checkpoint`: the best step's checkpoint folder, once it exists
        if let Some(best) = self.state.best_global_step {
            let dir = out.join(format!("{CHECKPOINT_PREFIX}-{best}"));
            if best == self.state.global_step || dir.is_dir() {
                self.state.best_model_checkpoint = Some(dir.display().to_string());
            }
        }
        if !self.cfg.save_only_model {
            save_training_state(&tmp, &self.optimizer, &self.scheduler)?;
            if let Some(r) = &self.badam_ratio {
                // its own optimizer files, in place of the unused AdamW's
                r.save(&tmp)?;
            }
        }
        self.state.save(&tmp)?;
        commit_dir(&tmp, &fin)?;
        self.log
            .info(&format!("Saving model checkpoint to {}", fin.display()))?;
        let best = self.state.best_model_checkpoint.clone().map(PathBuf::from);
        rotate_checkpoints(out, self.cfg.save_total_limit, best.as_deref())?;
        Ok(fin)
    }

    /// Loads weights, trainer state, and (when present) optimizer, scheduler and RNG state.
    /// Makes BAdam's active block the only trainable one, with a fresh optimizer over it.
    fn activate_badam_block(&mut self) {
        let Some(s) = &self.badam else { return };
        self.model.set_trainable(|n| s.is_active(n));
        let trainable: Vec<String> = self
            .model
            .trainable_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        self.optimizer = AdamW::new(self.cfg.adam, s.groups(&trainable, self.cfg.learning_rate));
    }

    fn resume(&mut self, ckpt: &Path) -> Result<()> {
        let state = TrainerState::load(ckpt)?;
        self.io.load(self.model, ckpt)?;
        if let Some(b) = &self.cfg.badam {
            // the block that was active after the checkpoint's last step
            let names: Vec<String> = self
                .model
                .named_parameters()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            self.badam = Some(BlockSchedule::at_step(
                &names,
                b,
                self.cfg.seed,
                state.global_step,
            )?);
            self.activate_badam_block();
        }
        let optimizer = match self.badam_ratio.as_mut() {
            Some(r) => {
                if ckpt.join(crate::optim::adamw::OPTIMIZER_JSON).is_file() {
                    r.load(ckpt)?;
                }
                None
            }
            None => Some(&mut self.optimizer),
        };
        load_training_state(ckpt, optimizer, &mut self.scheduler, state.global_step)?;
        self.log.info(&format!(
            "Resuming training from checkpoint {} at global step {}",
            ckpt.display(),
            state.global_step
        ))?;
        self.state = TrainerState {
            max_steps: self.state.max_steps,
            num_train_epochs: self.state.num_train_epochs,
            train_batch_size: self.state.train_batch_size,
            ..state
        };
        Ok(())
    }

    /// Saves the trained weights into `output_dir` (HF `save_model`).
    pub fn save_model(&self) -> Result<()> {
        self.io.save(self.model, &self.cfg.output_dir)?;
        self.log.info(&format!(
            "Saving model to {}",
            self.cfg.output_dir.display()
        ))
    }

    /// Writes `trainer_state.json` into `output_dir` (HF `save_state`).
    pub fn save_state(&self) -> Result<()> {
        self.state.save(&self.cfg.output_dir)
    }

    /// The current epoch (for metrics logged after training).
    pub fn epoch(&self) -> f64 {
        self.state.epoch
    }
}

/// Runs `f` with bf16 products on this thread when `bf16` (see [`TrainConfig::bf16`]).
pub(crate) fn with_products<R>(bf16: bool, f: impl FnOnce() -> R) -> R {
    if bf16 {
        lmf_kernels::cpu::gemm::bf16_products(f)
    } else {
        f()
    }
}

/// The activation bytes a checkpointed training forward may keep for layers it runs without
/// a checkpoint ([`CausalLM::checkpoint_keep_bytes`]).
///
/// The rule (README, "Gradient checkpointing on the CPU"): on the CPU, a quarter of the
/// memory available when training starts (Linux `MemAvailable`), and at least the weights'
/// own size; `LMF_CHECKPOINT_KEEP_MB` sets it instead (0: checkpoint every layer). On a GPU,
/// 0: every layer is checkpointed, as in Hugging Face. Which layers run un-checkpointed
/// never changes a result, only memory and time.
fn checkpoint_keep_bytes(model: &CausalLM, cfg: &TrainConfig) -> Result<usize> {
    if !cfg.gradient_checkpointing || !model.device.is_cpu() {
        return Ok(0);
    }
    if let Ok(v) = std::env::var("LMF_CHECKPOINT_KEEP_MB") {
        let mb: usize = v.trim().parse().map_err(|_| {
            Error::Msg(format!(
                "LMF_CHECKPOINT_KEEP_MB must be a whole number of MiB, not {v:?}"
            ))
        })?;
        return Ok(mb << 20);
    }
    Ok((available_memory().unwrap_or(0) / 4).max(model.parameter_bytes()))
}

/// Linux's `MemAvailable` in bytes (`None` elsewhere or when unreadable).
fn available_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb << 10)
}

/// GaLore's target parameters among `trainable`: the weights of the linears whose module name
/// contains one of `galore_target` (`all`: the decoder linears, as LF's
/// `find_all_linear_modules`), in model order.
fn galore_targets(model: &CausalLM, trainable: &[String], g: &GaloreConfig) -> Vec<String> {
    let leaves = if g.target.len() == 1 && g.target[0] == "all" {
        model.all_linear_modules()
    } else {
        g.target.clone()
    };
    trainable
        .iter()
        .filter(|n| {
            n.strip_suffix(".weight").is_some_and(|module| {
                let linear = module == "lm_head"
                    || lmf_models::adapter::LINEAR_LEAVES
                        .iter()
                        .any(|l| module.ends_with(&format!(".{l}")));
                linear && leaves.iter().any(|t| module.contains(t.as_str()))
            })
        })
        .cloned()
        .collect()
}

/// The optimizer's GaLore / APOLLO settings for `cfg.galore`, over `groups` (APOLLO numbers
/// the parameters of all groups from 1 for its seeds; layer-wise, each parameter is alone in
/// its optimizer: seed 1).
fn galore_settings(
    model: &CausalLM,
    trainable: &[String],
    g: &GaloreConfig,
    groups: &[crate::optim::ParamGroup],
) -> GaloreSettings {
    let seeds = groups
        .iter()
        .flat_map(|gr| gr.params.iter())
        .enumerate()
        .map(|(i, n)| (n.clone(), if g.layerwise { 1 } else { i as u64 + 1 }))
        .collect();
    GaloreSettings {
        rank: g.rank,
        update_interval: g.update_interval,
        scale: g.scale as f32,
        proj_type: g.proj_type,
        targets: galore_targets(model, trainable, g).into_iter().collect(),
        signs: HashMap::new(),
        apollo: g.apollo,
        seeds,
    }
}

/// The optimizer groups over `trainable` (HF's decay split, or LoRA+'s when asked; with
/// GaLore, LLaMA-Factory's `_create_galore_optimizer` groups).
pub(crate) fn optimizer_groups(
    model: &CausalLM,
    trainable: &[String],
    cfg: &TrainConfig,
) -> Vec<crate::optim::ParamGroup> {
    if let Some(g) = &cfg.galore {
        // LF's decay names exclude only biases (its layer-norm test matches no RMSNorm), so
        // norms decay; groups: no-decay, decay, then the GaLore targets (with decay).
        let targets = galore_targets(model, trainable, g);
        let (nodecay, decay): (Vec<String>, Vec<String>) = trainable
            .iter()
            .filter(|n| !targets.contains(n))
            .cloned()
            .partition(|n| n.contains("bias"));
        let group = |weight_decay, params| crate::optim::ParamGroup {
            lr: cfg.learning_rate,
            weight_decay,
            params,
        };
        return vec![
            group(0.0, nodecay),
            group(cfg.weight_decay, decay),
            group(cfg.weight_decay, targets),
        ];
    }
    match cfg.loraplus {
        Some((ratio, emb_lr)) => {
            let ranks: HashMap<String, usize> = model
                .named_parameters()
                .into_iter()
                .map(|(n, v)| (n, v.rank()))
                .collect();
            loraplus_groups(
                trainable,
                |n| ranks.get(n).copied().unwrap_or(2),
                cfg.learning_rate,
                ratio,
                emb_lr,
                cfg.weight_decay,
            )
        }
        None => default_groups(trainable, cfg.learning_rate, cfg.weight_decay),
    }
}

/// Adds the gradients `g` of the model's trainable parameters into `grads` (host f32, by
/// name): accumulation over micro-batches.
pub(crate) fn accumulate_grads(
    model: &CausalLM,
    g: &Grads,
    grads: &mut HashMap<String, Vec<f32>>,
) -> Result<()> {
    for (name, var) in model.trainable_parameters() {
        if let Some(t) = g.get(var) {
            let v = t.to_vec::<f32>()?;
            match grads.get_mut(&name) {
                Some(acc) => acc.iter_mut().zip(&v).for_each(|(a, b)| *a += b),
                None => {
                    grads.insert(name, v);
                }
            }
        }
    }
    Ok(())
}

/// Writes the optimizer, the scheduler position (`scheduler.json`) and the dropout RNG cursor
/// (`rng_state.json`) into the checkpoint folder `dir`.
pub(crate) fn save_training_state(
    dir: &Path,
    optimizer: &AdamW,
    scheduler: &Scheduler,
) -> Result<()> {
    optimizer.save(dir)?;
    let mut sched = vec![("last_epoch", PyJson::Int(scheduler.last_epoch() as i128))];
    if let Some((lr, best, bad, cooldown, epoch)) = scheduler.plateau().map(|p| p.state()) {
        // torch's ReduceLROnPlateau state (`best` null while still ±inf)
        sched.push((
            "plateau",
            dict(vec![
                ("lr", PyJson::Float(lr)),
                (
                    "best",
                    if best.is_finite() {
                        PyJson::Float(best)
                    } else {
                        PyJson::Null
                    },
                ),
                ("num_bad_epochs", PyJson::Int(bad as i128)),
                ("cooldown_counter", PyJson::Int(cooldown as i128)),
                ("last_epoch", PyJson::Int(epoch as i128)),
            ]),
        ));
    }
    write_json(&dir.join(SCHEDULER_NAME), &dict(sched), 2, true)?;
    let rng = rng_state();
    write_json(
        &dir.join(RNG_STATE_NAME),
        &dict(vec![
            ("offset", PyJson::Int(rng.offset as i128)),
            ("seed", PyJson::Int(rng.seed as i128)),
        ]),
        2,
        true,
    )
}

/// Restores what [`save_training_state`] wrote, each part when present (a checkpoint written
/// with `save_only_model` has none: the scheduler then resumes at `global_step`).
pub(crate) fn load_training_state(
    ckpt: &Path,
    optimizer: Option<&mut AdamW>,
    scheduler: &mut Scheduler,
    global_step: u64,
) -> Result<()> {
    if let Some(optimizer) = optimizer {
        if ckpt.join(crate::optim::adamw::OPTIMIZER_JSON).is_file() {
            optimizer.load(ckpt)?;
        }
    }
    let sched = ckpt.join(SCHEDULER_NAME);
    if sched.is_file() {
        let j = read_json(&sched)?;
        match j.get("last_epoch") {
            Some(PyJson::Int(i)) if *i >= 0 => scheduler.set_last_epoch(*i as u64),
            _ => {
                return Err(Error::Msg(format!(
                    "{}: `last_epoch` is missing",
                    sched.display()
                )))
            }
        }
        if let (Some(p), Some(saved)) = (scheduler.plateau_mut(), j.get("plateau")) {
            let num = |k: &str| match saved.get(k) {
                Some(PyJson::Float(f)) => Some(*f),
                Some(PyJson::Int(i)) => Some(*i as f64),
                _ => None,
            };
            let missing = || Error::Msg(format!("{}: bad `plateau` state", sched.display()));
            let mut state = p.state();
            state.0 = num("lr").ok_or_else(missing)?;
            if let Some(b) = num("best") {
                state.1 = b;
            }
            state.2 = num("num_bad_epochs").ok_or_else(missing)? as u64;
            state.3 = num("cooldown_counter").ok_or_else(missing)? as u64;
            state.4 = num("last_epoch").ok_or_else(missing)? as u64;
            p.set_state(state);
        }
    } else {
        scheduler.set_last_epoch(global_step);
    }
    let rng = ckpt.join(RNG_STATE_NAME);
    if rng.is_file() {
        let j = read_json(&rng)?;
        let get = |k: &str| match j.get(k) {
            Some(PyJson::Int(i)) if *i >= 0 => Ok(*i as u64),
            _ => Err(Error::Msg(format!("{}: `{k}` is missing", rng.display()))),
        };
        set_rng_state(RngState {
            seed: get("seed")?,
            offset: get("offset")?,
        });
    }
    Ok(())
}

/// HF `evaluation_loop` loss: batches of `batch_size` rows in order, each batch's loss its
/// summed token losses over its label count before the shift (see `lm_batch_losses`),
/// repeated `batch_size` times, and accelerate's
/// `gather_for_metrics` cutting the last batch's copies to the rows it really has; so
/// `{prefix}_loss` is the mean of the batch losses weighted by their row counts. Plus the
/// speed metrics.
pub fn evaluate(
    model: &CausalLM,
    rows: &[Example],
    batch_size: usize,
    prefix: &str,
    label_smoothing: f64,
) -> Result<Vec<(String, PyJson)>> {
    evaluate_lm(model, rows, batch_size, prefix, label_smoothing, false)
}

/// [`evaluate`], with `full_last_batch`: a short last batch weighs like a full one (its loss
/// repeated `batch_size` times and kept whole). That is what LLaMA-Factory 0.9.5's sft
/// evaluation reports (map-style and streaming eval sets alike, measured against its runs),
/// while its pt evaluation cuts the copies to the rows, as plain HF does.
pub fn evaluate_lm(
    model: &CausalLM,
    rows: &[Example],
    batch_size: usize,
    prefix: &str,
    label_smoothing: f64,
    full_last_batch: bool,
) -> Result<Vec<(String, PyJson)>> {
    let start = Instant::now();
    let bs = batch_size.max(1);
    let losses: Vec<(f64, usize)> = lm_batch_losses(model, rows, bs, label_smoothing)?
        .into_iter()
        .map(|(l, k)| (l as f64, if full_last_batch { bs } else { k }))
        .collect();
    Ok(eval_metrics(prefix, &losses, rows.len(), bs, start, vec![]))
}

/// HF `evaluation_loop`'s loss over batches of `(mean loss, rows)`: the row-weighted mean, as
/// numpy's float32 mean of the repeated batch losses.
pub(crate) fn eval_loss(batches: &[(f64, usize)]) -> f64 {
    let n: usize = batches.iter().map(|b| b.1).sum();
    if n == 0 {
        return f64::NAN;
    }
    let sum: f64 = batches
        .iter()
        .map(|&(l, k)| l as f32 as f64 * k as f64)
        .sum();
    (sum / n as f64) as f32 as f64
}

/// `{prefix}_loss` and the speed metrics of HF's `evaluate`, then the stage's metrics.
pub(crate) fn eval_metrics(
    prefix: &str,
    batches: &[(f64, usize)],
    rows: usize,
    batch_size: usize,
    start: Instant,
    extra: Vec<(String, PyJson)>,
) -> Vec<(String, PyJson)> {
    let runtime = start.elapsed().as_secs_f64().max(1e-9);
    let steps = rows.div_ceil(batch_size.max(1));
    let mut out = vec![(format!("{prefix}_loss"), PyJson::Float(eval_loss(batches)))];
    out.extend(extra);
    out.extend([
        (
            format!("{prefix}_runtime"),
            PyJson::Float(py_round(runtime, 4)),
        ),
        (
            format!("{prefix}_samples_per_second"),
            PyJson::Float(py_round(rows as f64 / runtime, 3)),
        ),
        (
            format!("{prefix}_steps_per_second"),
            PyJson::Float(py_round(steps as f64 / runtime, 3)),
        ),
    ]);
    out
}
