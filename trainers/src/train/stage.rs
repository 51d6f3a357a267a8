//! What a training stage supplies to the one training loop ([`super::Trainer`]): its row type,
//! the loss of one micro-batch on the tape (normalised as the stage's reference trainer does
//! under gradient accumulation), and the metrics of an eval set. Checkpointing, accumulation,
//! clipping, the optimizer, scheduling, logging and resume stay in the trainer.
//!
//! `pt` and `sft` are [`LmStage`]: HF's causal-LM loss through the fused linear
//! cross-entropy, divided by `num_items_in_batch`. The preference stages plug in here with
//! their own rows (`PairExample`, `KtoExample`), losses and metrics.

use lmf_autograd::ops::fused::{linear_cross_entropy, CeOptions, CeReduction};
use lmf_autograd::{no_grad, Tensor, Var};
use lmf_models::CausalLM;

use crate::data::Example;
use crate::template::pyjson::PyJson;
use crate::train::batch::{count_items, make_batch};
use crate::Result;

/// The loss of one micro-batch.
pub struct MicroLoss {
    /// The scalar loss on the tape, already scaled for accumulation (its gradients are summed
    /// over the micro-batches of an optimizer step).
    pub loss: Var,
    /// Tokens the forward processed (throughput and `total_flos`).
    pub tokens: usize,
    /// The micro-batch's metrics (TRL's `store_metrics`), reduced at each log by
    /// [`Stage::log_metrics`]; empty for pt / sft.
    pub metrics: Vec<(String, f64)>,
}

/// One training stage: rows, loss and evaluation.
pub trait Stage {
    /// One encoded row of the stage's dataset.
    type Row: Sync;

    /// What `rows` add to the accumulated step's `num_items_in_batch` (the divisor of the
    /// summed loss, as HF counts it); the trainer sums it over the step's micro-batches and
    /// passes the total to [`Stage::micro_loss`].
    fn count_items(&self, rows: &[&Self::Row]) -> usize;

    /// The loss of the micro-batch `rows` (the `first_row`-th row onward of the epoch order,
    /// for error messages), with `num_items` of the whole accumulated step.
    fn micro_loss(
        &self,
        model: &CausalLM,
        rows: &[&Self::Row],
        num_items: f64,
        first_row: usize,
    ) -> Result<MicroLoss>;

    /// The length the reference's collator pads the micro-batch `rows` to (NEFTune's noise
    /// scale), or `None` when lmf does not apply NEFTune in this stage.
    fn padded_len(&self, _rows: &[&Self::Row]) -> Option<usize> {
        None
    }

    /// Whether dropout (adapter dropout, the value head's) is on in training forwards; the
    /// DPO-family trainers switch every dropout off (TRL's `disable_dropout_in_model`).
    fn dropout(&self) -> bool {
        true
    }

    /// The logged metrics of the micro-batches since the last log (each one's
    /// [`MicroLoss::metrics`]), added after `loss`, `grad_norm` and `learning_rate`.
    fn log_metrics(&self, _stored: &[Vec<(String, f64)>]) -> Vec<(String, PyJson)> {
        vec![]
    }

    /// The `{prefix}_*` metrics of one eval set, in batches of `batch_size` rows.
    fn evaluate(
        &self,
        model: &CausalLM,
        rows: &[Self::Row],
        batch_size: usize,
        prefix: &str,
    ) -> Result<Vec<(String, PyJson)>>;
}

/// `pt` and `sft`: the causal-LM loss (HF `ForCausalLMLoss`) through the fused linear
/// cross-entropy, so `[tokens, vocab]` logits never exist.
#[derive(Clone, Copy, Debug, Default)]
pub struct LmStage {
    /// `label_smoothing_factor`: HF's `LabelSmoother` (`(1−ε)·nll + ε·mean_v(−log p_v)`)
    /// instead of the model's own loss. It averages over each micro-batch's label tokens and
    /// transformers 5 does not divide it by the accumulation steps (the model takes loss
    /// kwargs), so accumulated micro-batches add up, in the gradient and in the logged loss.
    pub label_smoothing: f64,
    /// What LF's collator pads a batch's length to a multiple of: 8 for sft training
    /// (`pad_to_multiple_of=8`), 1 for pt.
    pub pad_to_multiple_of: usize,
    /// Weigh a short last eval batch like a full one (sft; see `trainer::evaluate_lm`).
    pub eval_full_last_batch: bool,
}

/// The fused lm-head options of `model` (its final-logit softcap).
pub(crate) fn ce_options(model: &CausalLM) -> CeOptions {
    CeOptions {
        softcap: model.config.final_softcap,
        ..CeOptions::default()
    }
}

impl LmStage {
    /// The pt / sft stage of a run (`pad_to_multiple_of` 8 for sft, as LF's collator).
    pub fn for_config(cfg: &super::config::TrainConfig) -> LmStage {
        LmStage {
            label_smoothing: cfg.label_smoothing,
            pad_to_multiple_of: if cfg.stage_pt { 1 } else { 8 },
            eval_full_last_batch: !cfg.stage_pt,
        }
    }
}

impl Stage for LmStage {
    type Row = Example;

    fn count_items(&self, rows: &[&Example]) -> usize {
        count_items(rows)
    }

    fn padded_len(&self, rows: &[&Example]) -> Option<usize> {
        let longest = rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
        Some(longest.next_multiple_of(self.pad_to_multiple_of.max(1)))
    }

    fn micro_loss(
        &self,
        model: &CausalLM,
        rows: &[&Example],
        num_items: f64,
        first_row: usize,
    ) -> Result<MicroLoss> {
        let batch = make_batch(rows, first_row)?;
        let n = batch.labels.len();
        let labels = Tensor::from_vec(batch.labels.clone(), &[n], model.device)?;
        let (hidden, aux) = model.forward_hidden_aux(&batch.seq)?;
        let (options, reduction) = if self.label_smoothing > 0.0 {
            (
                CeOptions {
                    label_smoothing: self.label_smoothing,
                    ..ce_options(model)
                },
                CeReduction::Mean,
            )
        } else {
            (ce_options(model), CeReduction::Divide(num_items.max(1.0)))
        };
        let (hidden, head) = model.head_inputs(&hidden)?;
        let mut loss = linear_cross_entropy(&hidden, &head, &labels, &options, reduction)?;
        // transformers adds the weighted load-balancing loss to each micro-batch's loss
        // (not divided by the accumulation steps: the model takes loss kwargs)
        if let Some(aux) = aux {
            loss = loss.add(&aux)?;
        }
        Ok(MicroLoss {
            loss,
            tokens: batch.num_tokens(),
            metrics: vec![],
        })
    }

    fn evaluate(
        &self,
        model: &CausalLM,
        rows: &[Example],
        batch_size: usize,
        prefix: &str,
    ) -> Result<Vec<(String, PyJson)>> {
        super::trainer::evaluate_lm(
            model,
            rows,
            batch_size,
            prefix,
            self.label_smoothing,
            self.eval_full_last_batch,
        )
    }
}

/// The causal-LM loss of each batch of `rows` (what HF's `evaluation_loop` averages): the
/// summed token losses over the batch's label count before the shift (transformers 5.6), or
/// the label-smoothed mean with `label_smoothing` > 0; `NaN` for a batch without labels.
pub(crate) fn lm_batch_losses(
    model: &CausalLM,
    rows: &[Example],
    batch_size: usize,
    label_smoothing: f64,
) -> Result<Vec<(f32, usize)>> {
    let options = CeOptions {
        label_smoothing,
        ..ce_options(model)
    };
    let bs = batch_size.max(1);
    let mut losses: Vec<(f32, usize)> = Vec::new();
    no_grad(|| -> Result<()> {
        for (i, chunk) in rows.chunks(bs).enumerate() {
            let refs: Vec<&Example> = chunk.iter().collect();
            let batch = make_batch(&refs, i * bs)?;
            let (hidden, aux) = model.forward_hidden_aux(&batch.seq)?;
            let (hidden, head) = model.head_inputs(&hidden)?;
            let labels =
                Tensor::from_vec(batch.labels.clone(), &[batch.labels.len()], model.device)?;
            // transformers 5.6's `prediction_step` passes the batch's `num_items_in_batch`
            // (labels counted before the shift) to the loss, which divides the summed token
            // losses by it; label smoothing goes through the LabelSmoother's mean instead.
            let items = count_items(&refs);
            let reduction = if label_smoothing > 0.0 {
                CeReduction::Mean
            } else {
                CeReduction::Divide(items as f64)
            };
            let loss = if items == 0 {
                f32::NAN
            } else if batch.num_label_tokens() == 0 {
                0.0
            } else {
                linear_cross_entropy(&hidden, &head, &labels, &options, reduction)?
                    .tensor()
                    .to_scalar::<f32>()?
            };
            let loss = match aux {
                Some(a) => loss + a.tensor().to_scalar::<f32>()?,
                None => loss,
            };
            losses.push((loss, chunk.len()));
        }
        Ok(())
    })?;
    Ok(losses)
}
