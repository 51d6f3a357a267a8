//! `stage: rm` (LLaMA-Factory's `PairwiseTrainer`): the value head ([`lmf_models::ValueHead`],
//! on the model as `v_head.summary`) scores the last token of each chosen and rejected
//! sequence; the loss is `mean(−logσ(s_chosen − s_rejected))` over the micro-batch, divided by
//! the micro-batches of the optimizer step. Evaluation adds `accuracy` (the share of pairs with
//! `s_chosen > s_rejected`); prediction writes the scores (see [`predict_scores`]).

use std::path::Path;
use std::time::Instant;

use lmf_autograd::{no_grad, Var};
use lmf_models::CausalLM;

use super::dpo::values;
use crate::data::{Example, PairExample};
use crate::template::pyjson::PyJson;
use crate::train::batch::make_batch;
use crate::train::io::{py_round, write_atomic};
use crate::train::pref_loss::log_sigmoid;
use crate::train::stage::{MicroLoss, Stage};
use crate::train::trainer::eval_metrics;
use crate::{Error, Result};

/// The rm stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct RmStage;

/// Scores of one micro-batch: the loss on the tape and the chosen / rejected scores.
struct Scored {
    loss: Var,
    chosen: Vec<f64>,
    rejected: Vec<f64>,
    tokens: usize,
}

fn score(model: &CausalLM, rows: &[&PairExample], first_row: usize) -> Result<Scored> {
    let head = model.value_head.as_ref().ok_or_else(|| {
        Error::Msg("stage rm: the model has no value head (v_head.summary)".into())
    })?;
    let b = rows.len();
    let seqs: Vec<&Example> = rows
        .iter()
        .map(|p| &p.chosen)
        .chain(rows.iter().map(|p| &p.rejected))
        .collect();
    let batch = make_batch(&seqs, first_row)?;
    let hidden = model.forward_hidden(&batch.seq, None)?; // [tokens, hidden]
                                                          // The last token of each sequence (LF gathers at attention_mask.sum() − 1).
    let mut last = Vec::with_capacity(2 * b);
    let mut end = 0usize;
    for s in &seqs {
        end += s.input_ids.len();
        last.push(end - 1);
    }
    let scores = head.scores(&hidden, &last)?; // [2b]
    let (c, r) = (scores.narrow(0, 0, b)?, scores.narrow(0, b, b)?);
    let loss = log_sigmoid(&c.sub(&r)?)?.neg()?.mean_all()?;
    Ok(Scored {
        loss,
        chosen: values(&c)?,
        rejected: values(&r)?,
        tokens: batch.num_tokens(),
    })
}

/// Scores of every row of `rows` in batches, with the per-batch losses.
type AllScores = (Vec<(f64, usize)>, Vec<f64>, Vec<f64>);

fn score_all(model: &CausalLM, rows: &[PairExample], batch_size: usize) -> Result<AllScores> {
    let bs = batch_size.max(1);
    let (mut batches, mut chosen, mut rejected) = (vec![], vec![], vec![]);
    no_grad(|| -> Result<()> {
        for (i, chunk) in rows.chunks(bs).enumerate() {
            let refs: Vec<&PairExample> = chunk.iter().collect();
            let s = score(model, &refs, i * bs)?;
            batches.push((s.loss.tensor().to_scalar::<f64>()?, chunk.len()));
            chosen.extend(s.chosen);
            rejected.extend(s.rejected);
        }
        Ok(())
    })?;
    Ok((batches, chosen, rejected))
}

/// LF's `ComputeAccuracy`: the share of pairs whose chosen score is the higher.
fn accuracy(chosen: &[f64], rejected: &[f64]) -> f64 {
    if chosen.is_empty() {
        return f64::NAN;
    }
    let wins = chosen.iter().zip(rejected).filter(|(c, r)| c > r).count();
    wins as f64 / chosen.len() as f64
}

impl Stage for RmStage {
    type Row = PairExample;

    fn count_items(&self, _rows: &[&PairExample]) -> usize {
        1
    }

    fn micro_loss(
        &self,
        model: &CausalLM,
        rows: &[&PairExample],
        num_items: f64,
        first_row: usize,
    ) -> Result<MicroLoss> {
        let s = score(model, rows, first_row)?;
        Ok(MicroLoss {
            loss: s.loss.scale(1.0 / num_items.max(1.0))?,
            tokens: s.tokens,
            metrics: vec![],
        })
    }

    fn evaluate(
        &self,
        model: &CausalLM,
        rows: &[PairExample],
        batch_size: usize,
        prefix: &str,
    ) -> Result<Vec<(String, PyJson)>> {
        let start = Instant::now();
        let (batches, chosen, rejected) = score_all(model, rows, batch_size)?;
        let acc = (
            format!("{prefix}_accuracy"),
            PyJson::Float(accuracy(&chosen, &rejected)),
        );
        Ok(eval_metrics(
            prefix,
            &batches,
            rows.len(),
            batch_size,
            start,
            vec![acc],
        ))
    }
}

/// `do_predict` of stage rm: the `predict_*` metrics, and `generated_predictions.jsonl` in
/// `output_dir` with one `{"chosen": s_c, "rejected": s_r}` line per row (scores rounded to 2
/// decimals, lines joined by newlines, as LF's `save_predictions` writes them).
pub fn predict_scores(
    model: &CausalLM,
    rows: &[PairExample],
    batch_size: usize,
    output_dir: &Path,
) -> Result<Vec<(String, PyJson)>> {
    let start = Instant::now();
    let (batches, chosen, rejected) = score_all(model, rows, batch_size)?;
    let lines: Vec<String> = chosen
        .iter()
        .zip(&rejected)
        .map(|(&c, &r)| {
            PyJson::Dict(vec![
                ("chosen".into(), PyJson::Float(py_round(c as f32 as f64, 2))),
                (
                    "rejected".into(),
                    PyJson::Float(py_round(r as f32 as f64, 2)),
                ),
            ])
            .dumps()
        })
        .collect();
    std::fs::create_dir_all(output_dir)
        .map_err(|e| Error::Msg(format!("{}: {e}", output_dir.display())))?;
    write_atomic(
        &output_dir.join("generated_predictions.jsonl"),
        lines.join("\n").as_bytes(),
    )?;
    let acc = (
        "predict_accuracy".to_string(),
        PyJson::Float(accuracy(&chosen, &rejected)),
    );
    Ok(eval_metrics(
        "predict",
        &batches,
        rows.len(),
        batch_size,
        start,
        vec![acc],
    ))
}
