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

use lmf_autograd::ops::fused::{linear_logprobs, CeOptions};
use lmf_autograd::{no_grad, DType, Tensor, Var};
use lmf_models::CausalLM;

use crate::data::{Example, IGNORE_INDEX};
use crate::train::batch::make_batch;
use crate::Result;

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
    let opts = CeOptions {
        softcap: model.config.final_softcap,
        ..CeOptions::default()
    };
    let token_logps = linear_logprobs(&hidden, model.head_weight(), &labels, &opts)?; // [n]
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
    let w = model.head_weight(); // [vocab, hidden]
    let wsum = w.to_dtype(DType::F32)?.sum(&[0], true)?.t()?; // [hidden, 1]
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

/// Runs `batch` (→ the batch's mean loss and its stored metrics) without gradient over `rows`
/// in batches of `batch_size`; returns each batch's `(loss, rows)` and metrics.
pub(crate) fn eval_batches<R>(
    rows: &[R],
    batch_size: usize,
    mut batch: impl FnMut(&[&R], usize) -> Result<(Var, Metrics)>,
) -> Result<EvalBatches> {
    let bs = batch_size.max(1);
    let (mut losses, mut stored) = (vec![], vec![]);
    no_grad(|| -> Result<()> {
        for (i, chunk) in rows.chunks(bs).enumerate() {
            let refs: Vec<&R> = chunk.iter().collect();
            let (loss, metrics) = batch(&refs, i * bs)?;
            losses.push((loss.tensor().to_scalar::<f64>()?, chunk.len()));
            stored.push(metrics);
        }
        Ok(())
    })?;
    Ok(EvalBatches { losses, stored })
}

/// What [`eval_batches`] gives back.
pub(crate) struct EvalBatches {
    /// Each batch's mean loss and row count.
    pub losses: Vec<(f64, usize)>,
    /// Each batch's metrics.
    pub stored: Vec<Metrics>,
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
