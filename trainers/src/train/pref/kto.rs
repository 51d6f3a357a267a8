//! `stage: kto` (LLaMA-Factory's `CustomKTOTrainer` on TRL's `kto_loss`): per micro-batch,
//! the policy's summed log-probs of each row (with gradient) and of its mismatched KL row
//! (without), the reference model's of both, then [`kto_losses`] split by each row's tag. The
//! batch loss is the mean over its rows, plus with `pref_ftx` γ > 0
//! `γ · mean(−chosen_logps / chosen_len) / n_desirable · n_rows` (LF's rescaling), divided by
//! the micro-batches of the optimizer step.
//!
//! Metrics, as LF logs them: each micro-batch stores sums and counts per side, and a log turns
//! them into `rewards/*`, `logps/*`, `logits/*` means over every stored row, plus
//! `rewards/margins` and `kl` (the sum of the micro-batches' KL estimates, as LF sums every
//! stored metric).

use lmf_autograd::{no_grad, Tensor, Var};
use lmf_models::CausalLM;

use super::dpo::values;
use super::reference::Reference;
use super::{evaluate_stored, seq_logps, BatchOut};
use crate::data::{Example, KtoExample};
use crate::template::pyjson::PyJson;
use crate::train::pref_loss::{kto_losses, KtoConfig};
use crate::train::stage::{MicroLoss, Stage};
use crate::{Error, Result};

/// The kto stage.
pub struct KtoStage {
    /// `pref_beta`, `kto_chosen_weight`, `kto_rejected_weight`.
    pub cfg: KtoConfig,
    /// `pref_ftx`.
    pub ftx: f64,
    /// The reference model (never [`Reference::None`]).
    pub reference: Reference,
}

/// `v[idx]` of a `[n]` variable.
fn select(v: &Var, idx: &[usize]) -> Result<Var> {
    let ids: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let ids = Tensor::from_vec(ids, &[idx.len()], v.tensor().device())?;
    Ok(v.index_select(&ids, 0)?)
}

impl KtoStage {
    /// A kto stage; KTO always compares with a reference model.
    pub fn new(cfg: KtoConfig, ftx: f64, reference: Reference) -> Result<KtoStage> {
        if !reference.is_some() {
            return Err(Error::Msg("stage kto needs a reference model".into()));
        }
        Ok(KtoStage {
            cfg,
            ftx,
            reference,
        })
    }

    fn batch(&self, model: &CausalLM, rows: &[&KtoExample], first_row: usize) -> Result<BatchOut> {
        let n = rows.len();
        let targets: Vec<&Example> = rows.iter().map(|r| &r.example).collect();
        let kl_rows: Vec<&Example> = rows.iter().map(|r| &r.kl).collect();
        let policy = seq_logps(model, &targets, first_row, true)?;
        let policy_kl = no_grad(|| seq_logps(model, &kl_rows, first_row, false))?;
        let missing = || Error::Msg("stage kto needs a reference model".into());
        let ref_t = self
            .reference
            .seq_logps(model, &targets, first_row)?
            .ok_or_else(missing)?;
        let ref_kl = self
            .reference
            .seq_logps(model, &kl_rows, first_row)?
            .ok_or_else(missing)?;
        let chosen_idx: Vec<usize> = (0..n).filter(|&i| rows[i].desirable).collect();
        let rejected_idx: Vec<usize> = (0..n).filter(|&i| !rows[i].desirable).collect();
        let side = |idx: &[usize]| -> Result<Option<(Var, Var)>> {
            if idx.is_empty() {
                return Ok(None);
            }
            Ok(Some((
                select(&policy.logps, idx)?,
                select(&ref_t.logps, idx)?,
            )))
        };
        let chosen = side(&chosen_idx)?;
        let rejected = side(&rejected_idx)?;
        let terms = kto_losses(
            &self.cfg,
            chosen.as_ref().map(|(p, r)| (p, r)),
            rejected.as_ref().map(|(p, r)| (p, r)),
            (&policy_kl.logps, &ref_kl.logps),
        )?;
        let mut loss = terms.losses.mean_all()?;
        if self.ftx > 1e-6 && !chosen_idx.is_empty() {
            let sft = select(&policy.averaged()?, &chosen_idx)?
                .neg()?
                .mean_all()?;
            let k = n as f64 / chosen_idx.len() as f64;
            loss = loss.add(&sft.scale(self.ftx * k)?)?;
        }
        let logps = policy.values()?;
        let mut metrics = vec![];
        for (split, idx, rewards) in [
            ("chosen", &chosen_idx, &terms.chosen_rewards),
            ("rejected", &rejected_idx, &terms.rejected_rewards),
        ] {
            let Some(rewards) = rewards else { continue };
            let sum_at = |xs: &[f64]| -> f64 { idx.iter().map(|&i| xs[i]).sum() };
            metrics.push((
                format!("rewards/{split}_sum"),
                values(rewards)?.iter().sum(),
            ));
            metrics.push((format!("logps/{split}_sum"), sum_at(&logps)));
            metrics.push((format!("logits/{split}_sum"), sum_at(&policy.logit_sums)));
            metrics.push((format!("count/{split}"), idx.len() as f64));
        }
        metrics.push(("kl".into(), terms.kl));
        Ok(BatchOut {
            loss,
            tokens: policy.tokens.iter().sum::<usize>() + policy_kl.tokens.iter().sum::<usize>(),
            metrics,
        })
    }
}

/// LF's `CustomKTOTrainer.log`: every stored metric summed (in float32) over the stored
/// micro-batches, then `{prefix}{rewards,logps,logits}/{split}` = sum / count per side,
/// `{prefix}rewards/margins` when both sides are present, and the other sums (`kl`) under
/// their own names.
fn reduce(stored: &[Vec<(String, f64)>], prefix: &str) -> Vec<(String, PyJson)> {
    let mut keys: Vec<String> = vec![];
    let mut sums: Vec<f32> = vec![];
    for m in stored {
        for (k, v) in m {
            match keys.iter().position(|x| x == k) {
                Some(i) => sums[i] += *v as f32,
                None => {
                    keys.push(k.clone());
                    sums.push(*v as f32);
                }
            }
        }
    }
    let get = |k: &str| keys.iter().position(|x| x == k).map(|i| sums[i] as f64);
    let mut out: Vec<(String, PyJson)> = vec![];
    let mut used: Vec<String> = vec![];
    let mut side_means = vec![];
    for split in ["chosen", "rejected"] {
        let Some(count) = get(&format!("count/{split}")) else {
            continue;
        };
        used.push(format!("count/{split}"));
        for key in ["rewards", "logps", "logits"] {
            let name = format!("{key}/{split}_sum");
            let v = get(&name).unwrap_or(f64::NAN) / count;
            used.push(name);
            if key == "rewards" {
                side_means.push(v);
            }
            out.push((format!("{prefix}{key}/{split}"), PyJson::Float(v)));
        }
    }
    if side_means.len() == 2 {
        out.push((
            format!("{prefix}rewards/margins"),
            PyJson::Float(side_means[0] - side_means[1]),
        ));
    }
    for (i, k) in keys.iter().enumerate() {
        if !used.contains(k) {
            out.push((k.clone(), PyJson::Float(sums[i] as f64)));
        }
    }
    out
}

impl Stage for KtoStage {
    type Row = KtoExample;

    fn count_items(&self, _rows: &[&KtoExample]) -> usize {
        1
    }

    fn dropout(&self) -> bool {
        false
    }

    fn micro_loss(
        &self,
        model: &CausalLM,
        rows: &[&KtoExample],
        num_items: f64,
        first_row: usize,
    ) -> Result<MicroLoss> {
        self.batch(model, rows, first_row)?.into_micro(num_items)
    }

    fn log_metrics(&self, stored: &[Vec<(String, f64)>]) -> Vec<(String, PyJson)> {
        reduce(stored, "")
    }

    fn evaluate(
        &self,
        model: &CausalLM,
        rows: &[KtoExample],
        batch_size: usize,
        prefix: &str,
    ) -> Result<Vec<(String, PyJson)>> {
        evaluate_stored(
            rows,
            batch_size,
            prefix,
            &self.reference,
            reduce,
            |refs, first| self.batch(model, refs, first),
        )
    }
}
