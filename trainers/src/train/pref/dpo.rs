//! `stage: dpo` (LLaMA-Factory's `CustomDPOTrainer`): one forward of the chosen rows then
//! the rejected rows of a micro-batch, sequence log-probs (summed, or averaged over the
//! response for ipo / orpo / simpo), the same for the reference model without gradient,
//! [`preference_losses`], then LF's extras:
//!
//! - `pref_bco_weight` w > 0: `(loss + w·bco) / (1 + w)` with TRL's BCO loss against the
//!   running mean δ of the batch rewards (`RunningMoments`, updated by every training and
//!   eval batch, not checkpointed — as in TRL);
//! - `pref_ftx` > 0: `+ pref_ftx · mean(−chosen_logps / chosen_len)`.
//!
//! The micro-batch loss is the batch mean divided by the micro-batches of the optimizer step
//! (HF's division when `model_accepts_loss_kwargs` is false). Metrics per micro-batch, averaged
//! at each log: `rewards/{chosen,rejected,accuracies,margins}`, `logps/{chosen,rejected}`,
//! `logits/{chosen,rejected}` (mean logit of the real tokens; LF's mean also covers the
//! padding of its padded batch), and for orpo `sft_loss`, `odds_ratio_loss`.

use std::cell::Cell;

use lmf_autograd::Var;
use lmf_models::CausalLM;

use super::reference::Reference;
use super::{evaluate_stored, mean, mean_f32, seq_logps, BatchOut, SeqLogps};
use crate::args::finetuning::PrefLoss;
use crate::data::{Example, PairExample};
use crate::template::pyjson::PyJson;
use crate::train::pref_loss::{length_normalized, log_sigmoid, preference_losses, PrefLossConfig};
use crate::train::stage::{MicroLoss, Stage};
use crate::{Error, Result};

/// The dpo stage.
pub struct DpoStage {
    /// `pref_loss`, `pref_beta`, `dpo_label_smoothing`, `simpo_gamma`.
    pub cfg: PrefLossConfig,
    /// `pref_ftx`.
    pub ftx: f64,
    /// `pref_bco_weight`.
    pub bco_weight: f64,
    /// The reference model.
    pub reference: Reference,
    /// TRL's `RunningMoments` mean and count (BCO's reward baseline).
    running: Cell<(f64, f64)>,
}

impl DpoStage {
    /// A dpo stage with `reference`; errors when the loss needs a reference and has none.
    pub fn new(
        cfg: PrefLossConfig,
        ftx: f64,
        bco_weight: f64,
        reference: Reference,
    ) -> Result<DpoStage> {
        if crate::train::pref_loss::uses_reference(cfg.loss) != reference.is_some() {
            return Err(Error::Msg(format!(
                "pref_loss `{}`: reference model set-up does not match the loss",
                cfg.loss.as_str()
            )));
        }
        if bco_weight > 1e-6 && cfg.loss == PrefLoss::KtoPair {
            return Err(Error::Msg(
                "`pref_bco_weight` does not combine with `pref_loss: kto_pair`".into(),
            ));
        }
        Ok(DpoStage {
            cfg,
            ftx,
            bco_weight,
            reference,
            running: Cell::new((0.0, 1e-24)),
        })
    }

    /// BCO's baseline: folds the batch's mean reward into the running mean and returns it.
    fn update_running(&self, batch_mean: f64) -> f64 {
        let (mean, count) = self.running.get();
        let total = count + 1.0;
        let delta = batch_mean as f32 - mean as f32;
        let mean = mean + (delta as f64 / total) as f32 as f64;
        self.running.set((mean, total));
        mean
    }

    fn batch(&self, model: &CausalLM, rows: &[&PairExample], first_row: usize) -> Result<BatchOut> {
        let b = rows.len();
        let seqs: Vec<&Example> = rows
            .iter()
            .map(|p| &p.chosen)
            .chain(rows.iter().map(|p| &p.rejected))
            .collect();
        let norm = length_normalized(self.cfg.loss);
        let pick = |s: &SeqLogps| -> Result<(Var, Var)> {
            let all = if norm { s.averaged()? } else { s.logps.clone() };
            Ok((all.narrow(0, 0, b)?, all.narrow(0, b, b)?))
        };
        let policy = seq_logps(model, &seqs, first_row, true)?;
        let (chosen, rejected) = pick(&policy)?;
        let reference = match self.reference.seq_logps(model, &seqs, first_row)? {
            Some(r) => Some(pick(&r)?),
            None => None,
        };
        let refs = reference.as_ref().map(|(c, r)| (c, r));
        let terms = preference_losses(&self.cfg, &chosen, &rejected, refs)?;
        let mut losses = terms.losses;
        if self.bco_weight > 1e-6 {
            if let Some((ref_c, ref_r)) = refs {
                let beta = self.cfg.beta;
                let rc = chosen.sub(ref_c)?.scale(beta)?; // β·(π_c − ref_c)
                let rr = rejected.sub(ref_r)?.scale(beta)?;
                let batch_mean = mean(&[values(&rc.detach())?, values(&rr.detach())?].concat());
                let delta = self.update_running(batch_mean);
                let bco = log_sigmoid(&rc.affine(1.0, -delta)?)?
                    .add(&log_sigmoid(&rr.affine(-1.0, delta)?)?)?
                    .neg()?;
                let w = self.bco_weight;
                losses = losses.add(&bco.scale(w)?)?.scale(1.0 / (1.0 + w))?;
            }
        }
        // −chosen log-probs averaged over the response (already averaged for norm losses).
        let sft = if norm {
            chosen.neg()?
        } else {
            policy.averaged()?.narrow(0, 0, b)?.neg()?
        };
        let mut loss = losses.mean_all()?;
        if self.ftx > 1e-6 {
            loss = loss.add(&sft.mean_all()?.scale(self.ftx)?)?;
        }

        let cr = values(&terms.chosen_rewards)?;
        let rr = values(&terms.rejected_rewards)?;
        let vocab = model.head_weight().shape()[0] as f64;
        let logits = |range: std::ops::Range<usize>| -> f64 {
            let sum: f64 = policy.logit_sums[range.clone()].iter().sum();
            let toks: usize = policy.tokens[range].iter().sum();
            sum / (toks as f64 * vocab).max(1.0)
        };
        let mut metrics = vec![
            ("rewards/chosen".to_string(), mean(&cr)),
            ("rewards/rejected".into(), mean(&rr)),
            (
                "rewards/accuracies".into(),
                mean(
                    &cr.iter()
                        .zip(&rr)
                        .map(|(c, r)| f64::from(u8::from(c > r)))
                        .collect::<Vec<_>>(),
                ),
            ),
            (
                "rewards/margins".into(),
                mean(&cr.iter().zip(&rr).map(|(c, r)| c - r).collect::<Vec<_>>()),
            ),
            ("logps/chosen".into(), mean(&values(&chosen)?)),
            ("logps/rejected".into(), mean(&values(&rejected)?)),
            ("logits/chosen".into(), logits(0..b)),
            ("logits/rejected".into(), logits(b..2 * b)),
        ];
        if self.cfg.loss == PrefLoss::Orpo {
            let sft_mean = mean(&values(&sft)?);
            let losses_mean = mean(&values(&losses)?);
            let with_ftx = losses_mean
                + if self.ftx > 1e-6 {
                    self.ftx * sft_mean
                } else {
                    0.0
                };
            metrics.push(("sft_loss".into(), sft_mean));
            metrics.push((
                "odds_ratio_loss".into(),
                (with_ftx - sft_mean) / self.cfg.beta,
            ));
        }
        Ok(BatchOut {
            loss,
            tokens: policy.tokens.iter().sum(),
            metrics,
        })
    }
}

/// The f64 values of a `[n]` variable.
pub(crate) fn values(v: &Var) -> Result<Vec<f64>> {
    Ok(v.tensor().to_vec::<f64>()?)
}

/// LF's `log` of the stored metrics: per key, the float32 mean over the stored micro-batches,
/// keys in first-stored order, each prefixed with `prefix`.
pub(crate) fn averaged(stored: &[Vec<(String, f64)>], prefix: &str) -> Vec<(String, PyJson)> {
    let mut keys: Vec<&str> = vec![];
    for m in stored {
        for (k, _) in m {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    keys.into_iter()
        .map(|k| {
            let xs: Vec<f64> = stored
                .iter()
                .flat_map(|m| m.iter().filter(|(key, _)| key == k).map(|(_, v)| *v))
                .collect();
            (format!("{prefix}{k}"), PyJson::Float(mean_f32(&xs)))
        })
        .collect()
}

impl Stage for DpoStage {
    type Row = PairExample;

    fn count_items(&self, _rows: &[&PairExample]) -> usize {
        1
    }

    fn dropout(&self) -> bool {
        false
    }

    fn micro_loss(
        &self,
        model: &CausalLM,
        rows: &[&PairExample],
        num_items: f64,
        first_row: usize,
    ) -> Result<MicroLoss> {
        self.batch(model, rows, first_row)?.into_micro(num_items)
    }

    fn log_metrics(&self, stored: &[Vec<(String, f64)>]) -> Vec<(String, PyJson)> {
        averaged(stored, "")
    }

    fn evaluate(
        &self,
        model: &CausalLM,
        rows: &[PairExample],
        batch_size: usize,
        prefix: &str,
    ) -> Result<Vec<(String, PyJson)>> {
        evaluate_stored(
            rows,
            batch_size,
            prefix,
            &self.reference,
            averaged,
            |refs, first| self.batch(model, refs, first),
        )
    }
}
