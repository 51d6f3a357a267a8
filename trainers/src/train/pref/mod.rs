//! The preference stages on the one training loop ([`super::Trainer`]): each is a
//! [`super::Stage`] in its own module.
//!
//! - [`rm::RmStage`] (`stage: rm`): the value head's score at the last token of each chosen
//!   and rejected sequence, loss `mean(−logσ(s_c − s_r))`, `eval_accuracy`.
//! - [`dpo::DpoStage`] (`stage: dpo`): every `pref_loss` of [`super::pref_loss`] on sequence
//!   log-probs of the policy and of the [`reference::Reference`] model, `pref_ftx`,
//!   `pref_bco_weight`, and LF's `rewards/*`, `logps/*`, `logits/*` metrics.
//! - [`kto::KtoStage`] (`stage: kto`): TRL's KTO loss with the mismatched KL rows.
//!
//! [`workflow::run_pref`] is LLaMA-Factory's `run_rm` / `run_dpo` / `run_kto`. Sequence
//! log-probs ([`seq_logps`]) come from the fused linear → label log-prob kernel, so the
//! `[tokens, vocab]` logits never exist.

pub mod dpo;
pub mod kto;
pub mod reference;
pub mod rm;
pub mod workflow;

use lmf_autograd::ops::fused::linear_logprobs;
use lmf_autograd::{no_grad, DType, Tensor, Var};
use lmf_models::CausalLM;

use crate::data::{Example, IGNORE_INDEX};
use crate::template::pyjson::PyJson;
use crate::train::batch::make_batch;
use crate::train::stage::{ce_options, MicroLoss};
use crate::train::trainer::eval_metrics;
use crate::Result;
use reference::Reference;
use std::time::Instant;

/// The sequence log-probs of a micro-batch of rows.
pub struct SeqLogps {
    /// `[rows]`: the sum over each row's label tokens of `log p(label)` (on the tape when the
    /// forward records one).
    pub logps: Var,
    /// Label tokens of each row (LF's `valid_length`).
    pub lengths: Vec<f64>,
    /// Sum over each row's tokens of all `vocab` logits (the `logits/*` metrics), when asked.
    pub logit_sums: Vec<f64>,
    /// Tokens of each row.
    pub tokens: Vec<usize>,
}

impl SeqLogps {
    /// `logps / lengths` (LF's length-averaged log-probs of ipo / orpo / simpo), `[rows]`.
    pub fn averaged(&self) -> Result<Var> {
        let inv: Vec<f32> = self
            .lengths
            .iter()
            .map(|&l| (1.0 / l.max(1.0)) as f32)
            .collect();
        let n = inv.len();
        let inv = Tensor::from_vec(inv, &[n], self.logps.tensor().device())?
            .to_dtype(self.logps.dtype())?;
        Ok(self.logps.mul(&Var::constant(inv))?)
    }

    /// The f64 values of [`SeqLogps::logps`].
    pub fn values(&self) -> Result<Vec<f64>> {
        Ok(self.logps.tensor().to_vec::<f64>()?)
    }
}

/// LF's `get_batch_logps` for `rows` (each one unpacked sequence): one forward of the
/// micro-batch, per-token log-probs of the shifted labels through the fused kernel, summed per
/// row. `logits`: also sum every logit of every token (`hidden · Σ_v W_v`, the pre-softcap
/// logits), for LF's `logits/*` metrics.
pub fn seq_logps(
    model: &CausalLM,
    rows: &[&Example],
    first_row: usize,
    logits: bool,
) -> Result<SeqLogps> {
    let batch = make_batch(rows, first_row)?;
    let n = batch.labels.len();
    let device = model.device;
    let labels = Tensor::from_vec(batch.labels.clone(), &[n], device)?;
    let hidden = model.forward_hidden(&batch.seq, None)?; // [n, hidden]
    let (h, w) = model.head_inputs(&hidden)?; // [n, hidden (+ r)], [vocab, hidden (+ r)]
    let token_logps = linear_logprobs(&h, &w, &labels, &ce_options(model))?; // [n]
                                                                             // [rows, n] 0/1 membership · [n, 1] → per-row sums [rows].
    let r = rows.len();
    let mut member = vec![0f32; r * n];
    let mut lengths = vec![0f64; r];
    let mut tokens = Vec::with_capacity(r);
    let mut start = 0usize;
    for (i, ex) in rows.iter().enumerate() {
        let len = ex.input_ids.len();
        for t in start..start + len {
            if batch.labels[t] != IGNORE_INDEX {
                member[i * n + t] = 1.0;
                lengths[i] += 1.0;
            }
        }
        tokens.push(len);
        start += len;
    }
    let member = Tensor::from_vec(member, &[r, n], device)?.to_dtype(token_logps.dtype())?;
    let logps = Var::constant(member)
        .matmul(&token_logps.reshape(&[n, 1])?)?
        .reshape(&[r])?;
    let logit_sums = if logits {
        no_grad(|| row_logit_sums(model, &hidden, &tokens))?
    } else {
        vec![]
    };
    Ok(SeqLogps {
        logps,
        lengths,
        logit_sums,
        tokens,
    })
}

/// Per row, the sum of all logits of its tokens: `Σ_t h_t · (Σ_v W_v)`.
fn row_logit_sums(model: &CausalLM, hidden: &Var, tokens: &[usize]) -> Result<Vec<f64>> {
    let (hidden, w) = model.head_inputs(hidden)?; // [n, hidden (+ r)], [vocab, hidden (+ r)]
    let wsum = w.to_dtype(DType::F32)?.sum(&[0], true)?.t()?; // [hidden (+ r), 1]
    let per_token = hidden
        .to_dtype(DType::F32)?
        .matmul(&wsum)?
        .tensor()
        .to_vec::<f64>()?; // [n]
    let mut out = Vec::with_capacity(tokens.len());
    let mut start = 0;
    for &len in tokens {
        out.push(per_token[start..start + len].iter().sum());
        start += len;
    }
    Ok(out)
}

/// One batch's stored metrics.
pub(crate) type Metrics = Vec<(String, f64)>;

/// How a stage turns stored metrics into logged keys (with a key prefix).
pub(crate) type Reduce = fn(&[Metrics], &str) -> Vec<(String, PyJson)>;

/// One micro-batch of dpo or kto: the batch-mean loss on the tape, the tokens forwarded and
/// the metrics the trainer stores.
pub(crate) struct BatchOut {
    pub loss: Var,
    pub tokens: usize,
    pub metrics: Metrics,
}

impl BatchOut {
    /// The trainer's micro-batch loss: the batch mean over the optimizer step's micro-batch
    /// count (HF's division when `model_accepts_loss_kwargs` is false).
    pub(crate) fn into_micro(self, num_items: f64) -> Result<MicroLoss> {
        Ok(MicroLoss {
            loss: self.loss.scale(1.0 / num_items.max(1.0))?,
            tokens: self.tokens,
            metrics: self.metrics,
        })
    }
}

/// The evaluation of dpo and kto: `batch` without gradient over `rows` in batches of
/// `batch_size`, `{prefix}_loss` and the speed metrics, then the stored metrics as `reduce`
/// turns them into `eval_*` keys (without the rewards when the reference is the policy
/// itself: LF drops them, they are all zero).
pub(crate) fn evaluate_stored<R>(
    rows: &[R],
    batch_size: usize,
    prefix: &str,
    reference: &Reference,
    reduce: Reduce,
    mut batch: impl FnMut(&[&R], usize) -> Result<BatchOut>,
) -> Result<Vec<(String, PyJson)>> {
    let start = Instant::now();
    let bs = batch_size.max(1);
    let (mut losses, mut stored) = (vec![], vec![]);
    no_grad(|| -> Result<()> {
        for (i, chunk) in rows.chunks(bs).enumerate() {
            let refs: Vec<&R> = chunk.iter().collect();
            let out = batch(&refs, i * bs)?;
            losses.push((out.loss.tensor().to_scalar::<f64>()?, chunk.len()));
            stored.push(out.metrics);
        }
        Ok(())
    })?;
    let mut extra = reduce(&stored, "eval_");
    if reference.is_policy() {
        extra.retain(|(k, _)| !k.contains("rewards"));
    }
    let mut out = eval_metrics(prefix, &losses, rows.len(), bs, start, vec![]);
    out.extend(extra);
    Ok(out)
}

/// Mean of `xs` (NaN when empty).
pub(crate) fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The float32 mean torch / numpy report for a list of Python floats (`torch.tensor(xs,
/// dtype=float).mean().item()`).
pub(crate) fn mean_f32(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let sum: f32 = xs.iter().map(|&x| x as f32).sum();
    (sum / xs.len() as f32) as f64
}
