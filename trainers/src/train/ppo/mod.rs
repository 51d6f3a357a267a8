//! `stage: ppo`: LLaMA-Factory 0.9.3's `run_ppo` / `CustomPPOTrainer.ppo_train` on TRL
//! 0.9.6's classic `PPOTrainer.step` — the PPO LLaMA-Factory's YAML describes (0.9.5 itself
//! cannot start it: its TRL has no classic trainer).
//!
//! - [`math`]: rewards, GAE, whitening, the KL controller, running score moments;
//! - [`step`]: one PPO step on a batch of experience ([`step::Ppo::step`]);
//! - [`rollout`]: responses from the KV-cache generator, cut as LF cuts them;
//! - [`reward`]: the reward model (`api`, `full`);
//! - this module: the loop ([`run_ppo`]): prompts in batches of `per_device_train_batch_size ·
//!   gradient_accumulation_steps · ppo_buffer_size`, generated and scored in mini-batches,
//!   one PPO step each, LF's `loss` / `reward` log, checkpoints, the final model with its
//!   value head, `trainer_state.json` and the `loss` / `reward` plots.

pub mod math;
pub mod reward;
pub mod rollout;
pub mod step;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use lmf_models::adapter::set_training;
use lmf_models::{CausalLM, GenerationConfig, Tokenizer};

use self::math::KlController;
use self::reward::RewardModel;
use self::rollout::{generate_responses, RolloutConfig};
use self::step::{Experience, Ppo, PpoConfig};
use crate::args::train::TrainArgs;
use crate::args::GenerateRequest;
use crate::data::{DatasetModule, Example};
use crate::optim::{get_warmup_steps, AdamW, Scheduler};
use crate::template::pyjson::PyJson;
use crate::template::Template;
use crate::train::batch::{epoch_batches, epoch_order};
use crate::train::checkpoint::rotate_checkpoints;
use crate::train::config::TrainConfig;
use crate::train::export::ModelIo;
use crate::train::io::{commit_dir, py_round, read_json, temp_dir_for, write_json};
use crate::train::logs::RunLog;
use crate::train::pref::reference::Reference;
use crate::train::pref::workflow::attach_value_head;
use crate::train::progress::Progress;
use crate::train::run::setup_trainable;
use crate::train::state::TrainerState;
use crate::train::trainer::{
    load_training_state, optimizer_groups, save_training_state, TrainOutcome,
};
use crate::train::{hooks, plot, WorkflowOutcome};
use crate::{Error, Result};

/// TRL's `PPOConfig` defaults that LLaMA-Factory leaves in place.
const INIT_KL_COEF: f64 = 0.2;
const KL_HORIZON: f64 = 10000.0;

/// `stage: ppo` on a loaded policy (its adapter set up by `io`'s maker) with the encoded
/// prompts `dataset`.
pub fn run_ppo(
    args: &TrainArgs,
    model: &mut CausalLM,
    tokenizer: &Tokenizer,
    template: &Template,
    dataset: &DatasetModule,
    io: &dyn ModelIo,
    model_dir: &Path,
) -> Result<WorkflowOutcome> {
    let t = &args.training;
    let f = &args.finetuning;
    let cfg = TrainConfig::from_args(t, f, &args.model)?;
    if !dataset.eval.is_empty() {
        return Err(Error::Msg(
            "PPOTrainer does not support eval dataset yet (drop `eval_dataset` / `val_size`)"
                .into(),
        ));
    }
    setup_trainable(model, args)?;
    attach_value_head(args, model, model_dir, cfg.seed)?;
    let reference = Reference::for_run(args, model, model_dir, true)?;
    let reward = RewardModel::for_run(args, model, tokenizer)?;

    let mini = cfg.train_batch_size.max(1);
    let gas = cfg.gradient_accumulation_steps.max(1);
    let batch_size = mini * gas * (f.ppo_buffer_size.max(1) as usize);
    let ppo_cfg = PpoConfig {
        batch_size,
        mini_batch_size: mini,
        gradient_accumulation_steps: gas,
        ppo_epochs: f.ppo_epochs.max(1) as usize,
        gamma: 1.0,
        lam: 0.95,
        cliprange: 0.2,
        cliprange_value: 0.2,
        vf_coef: 0.1,
        ratio_threshold: 10.0,
        max_grad_norm: cfg.max_grad_norm,
        whiten_rewards: f.ppo_whiten_rewards,
        score_norm: f.ppo_score_norm,
    };
    let rows = &dataset.train;
    // TRL's DataLoader drops the last partial batch; LF counts the schedule with ceil.
    let batches_per_epoch = rows.len() / batch_size;
    if batches_per_epoch == 0 {
        return Err(Error::Msg(format!(
            "PPO needs at least {batch_size} prompts (per_device_train_batch_size × \
             gradient_accumulation_steps × ppo_buffer_size), the dataset has {}",
            rows.len()
        )));
    }
    let (max_steps, steps_in_epoch, schedule_steps) = if cfg.max_steps > 0 {
        let m = cfg.max_steps as u64;
        (m, m, m)
    } else {
        (
            (cfg.num_train_epochs * batches_per_epoch as f64).ceil() as u64,
            batches_per_epoch as u64,
            (cfg.num_train_epochs * rows.len().div_ceil(batch_size) as f64) as u64,
        )
    };
    let trainable: Vec<String> = model
        .trainable_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    // HF's groups (LF's PPO optimizer gives its no-decay group torch's default 0.01 by accident)
    let optimizer = AdamW::new(cfg.adam, optimizer_groups(model, &trainable, &cfg));
    let warmup = get_warmup_steps(cfg.warmup_steps, cfg.warmup_ratio, schedule_steps);
    let mut scheduler = Scheduler::from_name(
        &cfg.lr_scheduler_type,
        cfg.learning_rate,
        warmup,
        schedule_steps,
        &cfg.lr_scheduler_kwargs,
    )
    .map_err(|e| Error::Msg(e.to_string()))?;
    let kl = KlController {
        value: INIT_KL_COEF,
        target: Some(f.ppo_target),
        horizon: KL_HORIZON,
    };
    let mut ppo = Ppo::new(ppo_cfg, kl, optimizer, cfg.seed)?;
    let rollout = rollout_config(args, template, tokenizer)?;

    let out_dir = &cfg.output_dir;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| Error::Msg(format!("{}: {e}", out_dir.display())))?;
    let mut log = RunLog::new(out_dir).with_report(&cfg.report);
    let logging_steps = TrainConfig::abs_steps(cfg.logging_steps, max_steps).max(1);
    let save_steps = TrainConfig::abs_steps(cfg.save_steps, max_steps);
    let mut state = TrainerState {
        max_steps,
        num_train_epochs: if cfg.max_steps > 0 {
            u64::MAX
        } else {
            cfg.num_train_epochs.ceil() as u64
        },
        logging_steps,
        save_steps,
        train_batch_size: cfg.train_batch_size as u64,
        ..TrainerState::default()
    };
    log.info(&format!(
        "***** Running training *****\n  Num examples = {}\n  Instantaneous batch size per device = {mini}\n  \
         Total train batch size (w. parallel, buffer, distributed & accumulation) = {batch_size}\n  \
         Gradient Accumulation steps = {gas}\n  Num optimization epochs per batch = {}\n  \
         Total training steps = {max_steps}\n  Number of trainable parameters = {}",
        rows.len(),
        f.ppo_epochs,
        model.trainable_parameters().iter().map(|(_, v)| v.elem_count()).sum::<usize>()
    ))?;
    let (mut loss_meter, mut reward_meter) = (Meter::default(), Meter::default());
    if let Some(ckpt) = &cfg.resume_from_checkpoint {
        let saved = TrainerState::load(ckpt)?;
        io.load(model, ckpt)?;
        load_training_state(
            ckpt,
            Some(&mut ppo.optimizer),
            &mut scheduler,
            saved.global_step,
        )?;
        let path = ckpt.join(PPO_STATE_NAME);
        if path.is_file() {
            let j = read_json(&path)?;
            let what = path.display().to_string();
            ppo.restore(&j, &what)?;
            (loss_meter, reward_meter) = (Meter::read(&j, "loss")?, Meter::read(&j, "reward")?);
        }
        log.info(&format!(
            "Resuming training from checkpoint {} at global step {}",
            ckpt.display(),
            saved.global_step
        ))?;
        state = TrainerState {
            max_steps,
            num_train_epochs: state.num_train_epochs,
            train_batch_size: state.train_batch_size,
            ..saved
        };
    }
    log.begin_train(max_steps);
    let stop = hooks::stop_flag();
    let first_step = state.global_step;
    let mut progress = Progress::new(cfg.progress_bar, max_steps, first_step);
    let mut losses = vec![];
    let mut interrupted = false;
    let start = Instant::now();
    // The batch order of an epoch depends on the epoch alone, so a resumed run continues
    // exactly where it stopped.
    let mut epoch = first_step / batches_per_epoch as u64;
    let mut order = epoch_batches(
        &epoch_order(rows.len(), !cfg.disable_shuffling, cfg.data_seed, epoch),
        batch_size,
        true,
    );
    let mut next_batch = (first_step % batches_per_epoch as u64) as usize;
    for step in first_step..max_steps {
        if next_batch == order.len() {
            epoch += 1;
            order = epoch_batches(
                &epoch_order(rows.len(), !cfg.disable_shuffling, cfg.data_seed, epoch),
                batch_size,
                true,
            );
            next_batch = 0;
        }
        let prompts: Vec<&Example> = order[next_batch].iter().map(|&i| &rows[i]).collect();
        next_batch += 1;

        // Rollouts, mini-batch by mini-batch, with the model in eval mode.
        set_training(false);
        let mut exp = Experience::default();
        let (mut gen_s, mut score_s) = (0.0, 0.0);
        for (j, chunk) in prompts.chunks(mini).enumerate() {
            let queries: Vec<Vec<u32>> = chunk.iter().map(|e| e.input_ids.clone()).collect();
            let seed = cfg.seed ^ (step << 20) ^ j as u64;
            let t0 = Instant::now();
            let responses = generate_responses(model, &queries, &rollout, seed)?;
            let t1 = Instant::now();
            let scores = reward.scores(tokenizer, &queries, &responses)?;
            gen_s += (t1 - t0).as_secs_f64();
            score_s += t1.elapsed().as_secs_f64();
            exp.queries.extend(queries);
            exp.responses.extend(responses);
            exp.scores.extend(scores);
        }

        let mult = scheduler.multiplier(scheduler.last_epoch());
        let t0 = Instant::now();
        // `bf16: true` on the CPU: the optimisation's products in bf16, as in every stage
        let out = crate::train::trainer::with_products(cfg.bf16, || {
            ppo.step(model, &reference, &exp, mult)
        })?;
        // Where the step's time went (the PPO benchmark reads these lines).
        log.info(&format!(
            "ppo step {}: generate {gen_s:.4} s ({} new tokens), score {score_s:.4} s, optimize {:.4} s",
            step + 1,
            exp.responses.iter().map(Vec::len).sum::<usize>(),
            t0.elapsed().as_secs_f64()
        ))?;
        let lr = out.stat("ppo/learning_rate").unwrap_or(0.0);
        scheduler.step();
        let total = out.stat("ppo/loss/total").unwrap_or(f64::NAN);
        if !total.is_finite() {
            return Err(Error::Msg(format!(
                "the PPO loss is {total} at step {}: lower the learning_rate",
                step + 1
            )));
        }
        let n = exp.scores.len() as f64;
        loss_meter.update(total, n);
        reward_meter.update(exp.scores.iter().sum::<f64>() / n, n);
        state.global_step += 1;
        state.epoch = step as f64 / steps_in_epoch as f64;
        progress.step(state.global_step, loss_meter.avg(), lr, 0.0);

        if (step + 1) % logging_steps == 0 {
            let logs = vec![
                (
                    "loss".to_string(),
                    PyJson::Float(py_round(loss_meter.avg(), 4)),
                ),
                (
                    "reward".to_string(),
                    PyJson::Float(py_round(reward_meter.avg(), 4)),
                ),
                ("learning_rate".to_string(), PyJson::Float(lr)),
                (
                    "epoch".to_string(),
                    PyJson::Float(py_round(step as f64 / steps_in_epoch as f64, 2)),
                ),
            ];
            if !hooks::has_log_callback() {
                // LF: tqdm.write(str(logs))
                progress.println(&PyJson::Dict(logs.clone()).py_repr());
            }
            let mut entry = logs;
            entry.push(("step".into(), PyJson::Int(step as i128)));
            let entry = PyJson::Dict(entry);
            log.on_log(&entry, state.global_step, max_steps)?;
            hooks::emit_log(&entry.dumps());
            state.log_history.push(entry);
            losses.push((state.global_step, loss_meter.avg()));
            loss_meter = Meter::default();
            reward_meter = Meter::default();
        }
        let stopping = stop.load(Ordering::SeqCst) && step + 1 < max_steps;
        if (save_steps > 0 && (step + 1) % save_steps == 0) || stopping {
            let fin = out_dir.join(format!("checkpoint-{}", state.global_step));
            let tmp = temp_dir_for(&fin)?;
            io.save(model, &tmp)?;
            if !cfg.save_only_model {
                save_training_state(&tmp, &ppo.optimizer, &scheduler)?;
                let mut j = ppo.state_json();
                if let PyJson::Dict(items) = &mut j {
                    items.push(("loss".into(), loss_meter.json()));
                    items.push(("reward".into(), reward_meter.json()));
                }
                write_json(&tmp.join(PPO_STATE_NAME), &j, 2, false)?;
            }
            state.save(&tmp)?;
            commit_dir(&tmp, &fin)?;
            log.info(&format!("Saving model checkpoint to {}", fin.display()))?;
            rotate_checkpoints(out_dir, cfg.save_total_limit, None)?;
        }
        if stopping {
            interrupted = true;
            break;
        }
    }
    progress.finish();
    log.end_train();

    io.save(model, out_dir)?;
    log.info(&format!("Saving model to {}", out_dir.display()))?;
    state.save(out_dir)?;
    if cfg.plot_loss {
        plot::plot_loss(
            out_dir,
            &state.log_history,
            &["loss".into(), "reward".into()],
        )?;
    }
    let end = if interrupted {
        crate::train::monitor::RunEnd::Stopped
    } else {
        crate::train::monitor::RunEnd::Finished
    };
    log.finish(end, &crate::train::report_files(out_dir));
    let runtime = start.elapsed().as_secs_f64();
    Ok(WorkflowOutcome {
        train: Some(TrainOutcome {
            global_step: state.global_step,
            train_loss: losses.iter().map(|l| l.1).sum::<f64>() / losses.len().max(1) as f64,
            metrics: vec![("train_runtime".into(), PyJson::Float(py_round(runtime, 4)))],
            losses,
            interrupted,
        }),
        eval: None,
        predict: None,
    })
}

/// A checkpoint's PPO state: [`Ppo::state_json`] plus the running log averages.
pub const PPO_STATE_NAME: &str = "ppo_state.json";

/// LF's `AverageMeter`.
#[derive(Default)]
struct Meter {
    sum: f64,
    count: f64,
}

impl Meter {
    fn json(&self) -> PyJson {
        PyJson::List(vec![PyJson::Float(self.sum), PyJson::Float(self.count)])
    }

    fn read(j: &PyJson, key: &str) -> Result<Meter> {
        match j.get(key) {
            Some(PyJson::List(v)) => match v.as_slice() {
                [PyJson::Float(sum), PyJson::Float(count)] => Ok(Meter {
                    sum: *sum,
                    count: *count,
                }),
                _ => Err(Error::Msg(format!(
                    "{PPO_STATE_NAME}: `{key}` is malformed"
                ))),
            },
            _ => Err(Error::Msg(format!("{PPO_STATE_NAME}: `{key}` is missing"))),
        }
    }

    fn update(&mut self, value: f64, n: f64) {
        self.sum += value * n;
        self.count += n;
    }

    fn avg(&self) -> f64 {
        self.sum / self.count.max(1e-300)
    }
}

/// LF's rollout `GenerationConfig`: the generating arguments, stopping at the template's stop
/// tokens (the tokenizer's eos + additional special tokens once the template fixed it).
fn rollout_config(
    args: &TrainArgs,
    template: &Template,
    tokenizer: &Tokenizer,
) -> Result<RolloutConfig> {
    let g = args
        .generating
        .to_generate_config(&GenerateRequest::default());
    let eos = tokenizer
        .eos_token_id()
        .ok_or_else(|| Error::Msg("PPO: the tokenizer has no eos token".into()))?;
    let pad = tokenizer.pad_token_id().unwrap_or(eos);
    let (max_new_tokens, max_length) = match (g.max_new_tokens, g.max_length) {
        (Some(n), _) => (n.max(0) as usize, None),
        (None, Some(total)) => (0, Some(total.max(0) as usize)),
        (None, None) => (0, Some(20)),
    };
    Ok(RolloutConfig {
        generation: GenerationConfig {
            max_new_tokens,
            do_sample: g.do_sample,
            temperature: g.temperature.unwrap_or(1.0),
            top_p: g.top_p.unwrap_or(1.0),
            top_k: g.top_k.max(0) as usize,
            repetition_penalty: g.repetition_penalty,
            eos_token_ids: template.stop_token_ids(tokenizer),
            seed: 0,
        },
        max_length,
        pad_token_id: pad,
        eos_token_id: eos,
    })
}
