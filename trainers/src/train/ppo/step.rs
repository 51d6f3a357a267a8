//! One PPO optimisation step on a batch of experience, as TRL 0.9.6's classic
//! `PPOTrainer.step(queries, responses, scores)` does it:
//!
//! 1. scores → optional running normalisation (`ppo_score_norm`);
//! 2. the policy's (log-probs, values) and the reference's log-probs of every response token,
//!    with the model in training mode (LLaMA-Factory calls `model.train()` before `step`);
//! 3. per-token rewards `−kl_coef·(logp − ref_logp)` + the score on the last token, GAE
//!    advantages (whitened over the batch) and returns ([`super::math`]);
//! 4. `ppo_epochs` passes over the batch in a numpy `permutation` order (TRL's
//!    `np.random.permutation`, replayed with numpy's legacy MT19937), in mini-batches of
//!    `mini_batch_size`, `gradient_accumulation_steps` of them per optimizer step: clipped
//!    policy loss + `vf_coef` × clipped value loss, gradients clipped to `max_grad_norm`;
//! 5. the adaptive KL controller update with the batch's mean summed KL.
//!
//! Sequences are packed (no padding); the response tokens of sequence `i` sit at positions
//! `len(q_i) − 1 ..` of its row (the hidden state before each response token predicts it and
//! carries its value), which is TRL's response mask. With `ppo_whiten_rewards`, TRL also
//! whitens the zero rewards of padding positions and lets them
//! leak into the last advantages of shorter responses: reproduced from the padded width
//! ([`super::math::advantages_and_returns`]), so the numbers are TRL's.

use std::collections::HashMap;

use lmf_autograd::ops::fused::linear_logprobs;
use lmf_autograd::{no_grad, DType, Tensor, Var};
use lmf_models::adapter::set_training;
use lmf_models::{CausalLM, SeqBatch};

use super::math::{
    advantages_and_returns, masked_mean, masked_var, token_rewards, KlController, RunningMoments,
};
use crate::data::numpy_rng::LegacyRng;
use crate::data::IGNORE_INDEX;
use crate::optim::{clip_grad_norm, grad_norm, AdamW};
use crate::template::pyjson::PyJson;
use crate::train::pref::reference::Reference;
use crate::train::stage::ce_options;
use crate::train::trainer::accumulate_grads;
use crate::{Error, Result};

/// TRL's `PPOConfig` as LLaMA-Factory fills it.
#[derive(Clone, Debug, PartialEq)]
pub struct PpoConfig {
    /// Sequences per step: `per_device_train_batch_size · gradient_accumulation_steps ·
    /// ppo_buffer_size`.
    pub batch_size: usize,
    /// Sequences per forward/backward (`per_device_train_batch_size`).
    pub mini_batch_size: usize,
    /// Mini-batches per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Passes over each batch (`ppo_epochs`).
    pub ppo_epochs: usize,
    /// Discount γ (TRL default 1).
    pub gamma: f64,
    /// GAE λ (TRL default 0.95).
    pub lam: f64,
    /// Policy ratio clip (0.2).
    pub cliprange: f64,
    /// Value clip around the old values (0.2).
    pub cliprange_value: f64,
    /// Value-loss weight (0.1).
    pub vf_coef: f64,
    /// Mini-batches whose mean ratio exceeds this are skipped (TRL's `ratio_threshold`, 10).
    pub ratio_threshold: f64,
    /// Gradient clipping (`max_grad_norm`; 0 = none).
    pub max_grad_norm: f64,
    /// `ppo_whiten_rewards`.
    pub whiten_rewards: bool,
    /// `ppo_score_norm` (TRL's `use_score_scaling` + `use_score_norm`).
    pub score_norm: bool,
}

impl PpoConfig {
    /// Sequences per optimizer step.
    pub fn backward_batch_size(&self) -> usize {
        self.mini_batch_size * self.gradient_accumulation_steps
    }
}

/// One batch of experience: the prompts, the generated responses and their scores.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Experience {
    /// Prompt ids of each sequence.
    pub queries: Vec<Vec<u32>>,
    /// Response ids of each sequence (at least one token each).
    pub responses: Vec<Vec<u32>>,
    /// The reward model's score of each sequence.
    pub scores: Vec<f64>,
}

/// What one step computed: TRL's stats (`objective/kl`, `ppo/loss/total`, ...) and the
/// per-token arrays behind them.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    /// TRL's scalar stats, by TRL's names.
    pub stats: Vec<(String, f64)>,
    /// Whitened advantages of each sequence's response tokens.
    pub advantages: Vec<Vec<f64>>,
    /// Returns of each sequence's response tokens.
    pub returns: Vec<Vec<f64>>,
    /// The batch order of each epoch (TRL's permutations).
    pub permutations: Vec<Vec<usize>>,
}

impl StepOutput {
    /// The stat `key`.
    pub fn stat(&self, key: &str) -> Option<f64> {
        self.stats.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// PPO's state across steps: the config, the optimizer, the KL controller, the score moments
/// and numpy's global generator as TRL's `set_seed(seed)` left it.
pub struct Ppo {
    /// The configuration.
    pub cfg: PpoConfig,
    /// The KL coefficient.
    pub kl: KlController,
    /// Running score moments (`ppo_score_norm`).
    pub moments: RunningMoments,
    /// The optimizer over the trainable parameters.
    pub optimizer: AdamW,
    rng: LegacyRng,
}

/// The policy's or reference's numbers for the response tokens of some sequences.
struct ResponseForward {
    /// `[tokens]` log-prob of each response token.
    logps: Var,
    /// `[tokens]` value before each response token (policy only).
    values: Option<Var>,
}

impl Ppo {
    /// A fresh PPO run: `kl` starts at its initial coefficient, numpy's generator at `seed`.
    pub fn new(cfg: PpoConfig, kl: KlController, optimizer: AdamW, seed: u64) -> Result<Ppo> {
        if cfg.mini_batch_size == 0 || !cfg.batch_size.is_multiple_of(cfg.backward_batch_size()) {
            return Err(Error::Msg(format!(
                "PPO batch size {} is not a multiple of mini_batch_size {} × gradient_accumulation_steps {}",
                cfg.batch_size, cfg.mini_batch_size, cfg.gradient_accumulation_steps
            )));
        }
        Ok(Ppo {
            cfg,
            kl,
            moments: RunningMoments::default(),
            optimizer,
            rng: LegacyRng::new(seed),
        })
    }

    /// What a resumed run needs besides weights and optimizer: the KL coefficient, the score
    /// moments and numpy's generator (`ppo_state.json` of a checkpoint).
    pub fn state_json(&self) -> PyJson {
        let (key, index) = self.rng.state();
        let m = &self.moments;
        PyJson::Dict(vec![
            ("kl_coef".into(), PyJson::Float(self.kl.value)),
            (
                "score_moments".into(),
                PyJson::List(
                    [m.mean, m.std, m.var, m.count]
                        .iter()
                        .map(|&x| PyJson::Float(x))
                        .collect(),
                ),
            ),
            (
                "numpy_mt19937".into(),
                PyJson::List(key.iter().map(|&k| PyJson::Int(k as i128)).collect()),
            ),
            ("numpy_pos".into(), PyJson::Int(index as i128)),
        ])
    }

    /// Restores [`Ppo::state_json`]; `what` names the file in errors.
    pub fn restore(&mut self, j: &PyJson, what: &str) -> Result<()> {
        let bad = |k: &str| Error::Msg(format!("{what}: `{k}` is missing or malformed"));
        let float = |v: &PyJson| match v {
            PyJson::Float(f) => Some(*f),
            PyJson::Int(i) => Some(*i as f64),
            _ => None,
        };
        let kl = j
            .get("kl_coef")
            .and_then(float)
            .ok_or_else(|| bad("kl_coef"))?;
        let m: Vec<f64> = match j.get("score_moments") {
            Some(PyJson::List(v)) if v.len() == 4 => v.iter().filter_map(float).collect(),
            _ => vec![],
        };
        if m.len() != 4 {
            return Err(bad("score_moments"));
        }
        let key: Vec<u32> = match j.get("numpy_mt19937") {
            Some(PyJson::List(v)) => v
                .iter()
                .filter_map(|x| match x {
                    PyJson::Int(i) => u32::try_from(*i).ok(),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        let pos = match j.get("numpy_pos") {
            Some(PyJson::Int(i)) if *i >= 0 => *i as usize,
            _ => return Err(bad("numpy_pos")),
        };
        self.rng = LegacyRng::from_state(&key, pos).ok_or_else(|| bad("numpy_mt19937"))?;
        self.kl.value = kl;
        self.moments = RunningMoments {
            mean: m[0],
            std: m[1],
            var: m[2],
            count: m[3],
        };
        Ok(())
    }

    /// One PPO step on `exp` (exactly `batch_size` sequences) at learning-rate multiplier
    /// `lr_mult`: updates `model` (its trainable parameters and value head) in place.
    pub fn step(
        &mut self,
        model: &mut CausalLM,
        reference: &Reference,
        exp: &Experience,
        lr_mult: f64,
    ) -> Result<StepOutput> {
        let cfg = self.cfg.clone();
        let bs = cfg.batch_size;
        if exp.queries.len() != bs || exp.responses.len() != bs || exp.scores.len() != bs {
            return Err(Error::Msg(format!(
                "PPO step: expected {bs} queries, responses and scores, got {}, {} and {}",
                exp.queries.len(),
                exp.responses.len(),
                exp.scores.len()
            )));
        }
        if let Some(i) = exp.responses.iter().position(|r| r.is_empty()) {
            return Err(Error::Msg(format!("PPO step: response {i} is empty")));
        }
        let scores = if cfg.score_norm {
            self.moments.normalize(&exp.scores)
        } else {
            exp.scores.clone()
        };
        let all: Vec<usize> = (0..bs).collect();
        // The experience, with dropout on as in TRL (model.train() before step).
        set_training(true);
        let old = (|| -> Result<_> {
            let policy = no_grad(|| response_forward(model, exp, &all, true))?;
            let reference = reference
                .run(model, |m| response_forward(m, exp, &all, false))?
                .ok_or_else(|| Error::Msg("PPO needs a reference model".into()))?;
            Ok((policy, reference))
        })();
        set_training(false);
        let (policy, refr) = old?;
        let lengths: Vec<usize> = exp.responses.iter().map(Vec::len).collect();
        let logps = split(&policy.logps, &lengths)?;
        let values = split(policy.values.as_ref().expect("policy values"), &lengths)?;
        let ref_logps = split(&refr.logps, &lengths)?;

        let kl_coef = self.kl.value;
        let mut rewards = Vec::with_capacity(bs);
        let mut non_score = Vec::with_capacity(bs);
        let mut kls = Vec::with_capacity(bs);
        for i in 0..bs {
            let (r, ns, kl) = token_rewards(scores[i], &logps[i], &ref_logps[i], kl_coef);
            rewards.push(r);
            non_score.push(ns);
            kls.push(kl);
        }
        // TRL's padded width: the longest query + response of the batch.
        let lens: Vec<usize> = (0..bs)
            .map(|i| exp.queries[i].len() + exp.responses[i].len())
            .collect();
        let width = lens.iter().copied().max().unwrap_or(0);
        let pad_after: Vec<usize> = lens.iter().map(|l| width - l).collect();
        let (advantages, returns) = advantages_and_returns(
            &values,
            &rewards,
            cfg.gamma,
            cfg.lam,
            cfg.whiten_rewards,
            &pad_after,
        );

        let mut mb_stats: Vec<Vec<(&'static str, f64)>> = vec![];
        let mut permutations = vec![];
        let mut grads: HashMap<String, Vec<f32>> = HashMap::new();
        let mut accumulated = 0usize;
        for _ in 0..cfg.ppo_epochs {
            let perm = self.rng.permutation(bs);
            for mb in perm.chunks(cfg.mini_batch_size) {
                let batch = MiniBatch {
                    old_logps: gather(&logps, mb),
                    old_values: gather(&values, mb),
                    advantages: gather(&advantages, mb),
                    returns: gather(&returns, mb),
                };
                set_training(true);
                let out = self.minibatch(model, exp, mb, &batch, &mut grads);
                set_training(false);
                mb_stats.push(out?);
                accumulated += 1;
                if accumulated.is_multiple_of(cfg.gradient_accumulation_steps) {
                    self.optimizer_step(model, &mut grads, lr_mult)?;
                }
            }
            permutations.push(perm);
        }

        let mut stats: Vec<(String, f64)> = vec![];
        let n = bs as f64;
        let kl_sums: Vec<f64> = kls.iter().map(|k| k.iter().sum()).collect();
        let mean_kl = kl_sums.iter().sum::<f64>() / n;
        let mean_entropy = logps.iter().map(|l| -l.iter().sum::<f64>()).sum::<f64>() / n;
        let mean_score = scores.iter().sum::<f64>() / n;
        let std_score =
            (scores.iter().map(|s| (s - mean_score).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        stats.push(("objective/kl".into(), mean_kl));
        stats.push(("objective/kl_coef".into(), kl_coef));
        stats.push(("objective/entropy".into(), mean_entropy));
        stats.push(("ppo/mean_non_score_reward".into(), masked_mean(&non_score)));
        stats.push(("ppo/mean_scores".into(), mean_score));
        stats.push(("ppo/std_scores".into(), std_score));
        for key in mb_stats[0].iter().map(|(k, _)| *k) {
            let vals: Vec<f64> = mb_stats
                .iter()
                .filter_map(|s| s.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
                .collect();
            stats.push((
                format!("ppo/{key}"),
                vals.iter().sum::<f64>() / vals.len() as f64,
            ));
        }
        let error = stat(&stats, "ppo/val/error");
        let ret_var = stat(&stats, "ppo/returns/var");
        stats.push(("ppo/val/var_explained".into(), 1.0 - error / ret_var));
        stats.push((
            "ppo/learning_rate".into(),
            self.optimizer.groups.first().map_or(0.0, |g| g.lr) * lr_mult,
        ));
        self.kl.update(mean_kl, bs);
        Ok(StepOutput {
            stats,
            advantages,
            returns,
            permutations,
        })
    }

    /// Forward + backward of one mini-batch (sequences `idx` of `exp`); adds its gradients
    /// (divided by the accumulation steps) to `grads` and returns TRL's `loss()` stats.
    fn minibatch(
        &self,
        model: &CausalLM,
        exp: &Experience,
        idx: &[usize],
        b: &MiniBatch,
        grads: &mut HashMap<String, Vec<f32>>,
    ) -> Result<Vec<(&'static str, f64)>> {
        let cfg = &self.cfg;
        let fwd = response_forward(model, exp, idx, true)?;
        let logp = fwd.logps;
        let vpred = fwd.values.expect("policy values");
        let n = logp.elem_count();
        let c = |v: &[f64]| -> Result<Var> {
            let t: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Ok(Var::constant(Tensor::from_vec(t, &[n], model.device)?))
        };
        let (old_logp, old_v) = (c(&b.old_logps)?, c(&b.old_values)?);
        let (adv, ret) = (c(&b.advantages)?, c(&b.returns)?);
        let cv = cfg.cliprange_value;

        // Value loss: 0.5 · mean(max((v − R)², (clip(v, v_old ± cv) − R)²)).
        let lo = old_v.affine(1.0, -cv)?;
        let hi = old_v.affine(1.0, cv)?;
        let vclip = vpred.minimum(&hi)?.maximum(&lo)?;
        let vf1 = vpred.sub(&ret)?.sqr()?;
        let vf2 = vclip.sub(&ret)?.sqr()?;
        let vf_loss = vf1.maximum(&vf2)?.mean_all()?.scale(0.5)?;
        // Policy loss: mean(max(−A·ratio, −A·clip(ratio, 1 ± c))).
        let ratio = logp.sub(&old_logp)?.exp()?;
        let pg1 = adv.neg()?.mul(&ratio)?;
        let pg2 = adv
            .neg()?
            .mul(&ratio.clamp(1.0 - cfg.cliprange, 1.0 + cfg.cliprange)?)?;
        let pg_loss = pg1.maximum(&pg2)?.mean_all()?;
        let mut loss = pg_loss.add(&vf_loss.scale(cfg.vf_coef)?)?;

        let vals = |v: &Var| -> Result<Vec<f64>> { Ok(v.tensor().to_vec::<f64>()?) };
        let (r, lp, vp) = (vals(&ratio)?, vals(&logp)?, vals(&vpred)?);
        let (p1, p2, v1, v2) = (vals(&pg1)?, vals(&pg2)?, vals(&vf1)?, vals(&vf2)?);
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        let frac = |a: &[f64], b: &[f64]| {
            mean(
                &a.iter()
                    .zip(b)
                    .map(|(x, y)| f64::from(u8::from(y > x)))
                    .collect::<Vec<_>>(),
            )
        };
        let (mut pg, mut vf) = (scalar(&pg_loss)?, scalar(&vf_loss)?);
        if mean(&r) > cfg.ratio_threshold {
            eprintln!(
                "warning: the average ratio of the mini-batch ({:.2}) exceeds {:.2}: skipping it",
                mean(&r),
                cfg.ratio_threshold
            );
            loss = loss.scale(0.0)?;
            pg = 0.0;
            vf = 0.0;
        }
        let g = loss
            .scale(1.0 / cfg.gradient_accumulation_steps as f64)?
            .backward_releasing()?;
        accumulate_grads(model, &g, grads)?;
        let one = |x: &[f64]| vec![x.to_vec()];
        Ok(vec![
            ("loss/policy", pg),
            ("loss/value", vf),
            ("loss/total", pg + cfg.vf_coef * vf),
            (
                "policy/approxkl",
                0.5 * mean(
                    &lp.iter()
                        .zip(&b.old_logps)
                        .map(|(a, o)| (a - o).powi(2))
                        .collect::<Vec<_>>(),
                ),
            ),
            (
                "policy/policykl",
                mean(
                    &lp.iter()
                        .zip(&b.old_logps)
                        .map(|(a, o)| o - a)
                        .collect::<Vec<_>>(),
                ),
            ),
            ("policy/clipfrac", frac(&p1, &p2)),
            ("policy/advantages_mean", mean(&b.advantages)),
            ("policy/ratio_mean", mean(&r)),
            ("returns/mean", mean(&b.returns)),
            ("returns/var", masked_var(&one(&b.returns))),
            ("val/vpred", mean(&vp)),
            (
                "val/error",
                mean(
                    &vp.iter()
                        .zip(&b.returns)
                        .map(|(v, r)| (v - r).powi(2))
                        .collect::<Vec<_>>(),
                ),
            ),
            ("val/clipfrac", frac(&v1, &v2)),
            ("val/mean", mean(&b.old_values)),
            ("val/var", masked_var(&one(&b.old_values))),
        ])
    }

    /// Clips and applies the accumulated gradients, then clears them.
    fn optimizer_step(
        &mut self,
        model: &mut CausalLM,
        grads: &mut HashMap<String, Vec<f32>>,
        lr_mult: f64,
    ) -> Result<f32> {
        let norm = if self.cfg.max_grad_norm > 0.0 {
            clip_grad_norm(grads, self.cfg.max_grad_norm)
        } else {
            grad_norm(grads)
        };
        let mut params: HashMap<String, &mut Var> = model
            .named_parameters_mut()
            .into_iter()
            .filter(|(n, _)| grads.contains_key(n))
            .collect();
        self.optimizer.step(&mut params, grads, lr_mult)?;
        grads.clear();
        Ok(norm)
    }
}

/// One mini-batch's experience, token-aligned with its forward.
struct MiniBatch {
    old_logps: Vec<f64>,
    old_values: Vec<f64>,
    advantages: Vec<f64>,
    returns: Vec<f64>,
}

/// The concatenated per-token values of sequences `idx`.
fn gather(per_seq: &[Vec<f64>], idx: &[usize]) -> Vec<f64> {
    idx.iter()
        .flat_map(|&i| per_seq[i].iter().copied())
        .collect()
}

/// A `[tokens]` var cut into one vector per sequence of `lengths` tokens.
fn split(v: &Var, lengths: &[usize]) -> Result<Vec<Vec<f64>>> {
    let all = v.tensor().to_vec::<f64>()?;
    let mut out = Vec::with_capacity(lengths.len());
    let mut at = 0;
    for &n in lengths {
        out.push(all[at..at + n].to_vec());
        at += n;
    }
    Ok(out)
}

fn scalar(v: &Var) -> Result<f64> {
    Ok(v.tensor().to_scalar::<f64>()?)
}

fn stat(stats: &[(String, f64)], key: &str) -> f64 {
    stats
        .iter()
        .find(|(k, _)| k == key)
        .map_or(f64::NAN, |(_, v)| *v)
}

/// The log-probs (and, with `values`, the value-head outputs) of the response tokens of
/// sequences `idx` of `exp`, in that order: one packed forward of `query ++ response` each.
fn response_forward(
    model: &CausalLM,
    exp: &Experience,
    idx: &[usize],
    values: bool,
) -> Result<ResponseForward> {
    let seqs: Vec<Vec<u32>> = idx
        .iter()
        .map(|&i| [exp.queries[i].as_slice(), exp.responses[i].as_slice()].concat())
        .collect();
    let total: usize = seqs.iter().map(Vec::len).sum();
    let mut labels = vec![IGNORE_INDEX; total];
    let mut positions = Vec::new();
    let mut offset = 0;
    for (&i, seq) in idx.iter().zip(&seqs) {
        let q = exp.queries[i].len();
        if q == 0 {
            return Err(Error::Msg(format!("PPO step: query {i} is empty")));
        }
        for (k, &tok) in exp.responses[i].iter().enumerate() {
            let t = offset + q - 1 + k;
            labels[t] = tok as i64;
            positions.push(t);
        }
        offset += seq.len();
    }
    let device = model.device;
    let hidden = model.forward_hidden(&SeqBatch::from_seqs(&seqs), None)?;
    let labels = Tensor::from_vec(labels, &[total], device)?;
    let (hidden, head) = model.head_inputs(&hidden)?;
    let token_logps = linear_logprobs(&hidden, &head, &labels, &ce_options(model))?;
    let at: Vec<i64> = positions.iter().map(|&t| t as i64).collect();
    let at_t = Tensor::from_vec(at, &[positions.len()], device)?;
    let logps = token_logps.index_select(&at_t, 0)?.to_dtype(DType::F32)?;
    let values = if values {
        let head = model
            .value_head
            .as_ref()
            .ok_or_else(|| Error::Msg("PPO needs the policy's value head".into()))?;
        Some(head.scores(&hidden, &positions)?)
    } else {
        None
    };
    Ok(ResponseForward { logps, values })
}
