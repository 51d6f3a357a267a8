//! The stage's processor over converted rows (LF's `_get_dataset_processor` and the batched
//! `dataset.map`): each set is encoded in batches of `preprocessing_batch_size` rows, by the
//! pre-training, supervised (packed or not), unsupervised (`predict_with_generate` eval sets),
//! pairwise (rm, dpo) or feedback (kto) processor, as the kind of row asked for decides.
//! Invalid rows are dropped with a warning naming dataset, file and row, as LF drops them.

use lmf_models::Tokenizer;

use super::convert::Converted;
use super::encode::{encode_supervised, encode_unsupervised, is_supervised, SupervisedOptions};
use super::example::{EncodedRow, Example, KtoExample, PairExample};
use super::get::{Row, Sources};
use super::pack::pack_supervised;
use super::preference::{encode_feedback, encode_pairwise, feedback_response, is_preference};
use super::pretrain::{encode_pretrain, eos_text, PretrainOptions};
use crate::args::finetuning::Stage;
use crate::args::DataArguments;
use crate::template::Template;
use crate::{Error, Result};

/// A kind of row with the stages that train on it and its processor.
pub(crate) trait StageRows: EncodedRow {
    /// Does `stage` train on this kind of row?
    fn takes(stage: Stage) -> bool;

    /// One preprocessing batch through the processor (`generate`: an eval set with
    /// `predict_with_generate`).
    fn encode_batch(enc: &Encoder, rows: &[Row], generate: bool) -> Result<Vec<Self>>;
}

impl StageRows for Example {
    fn takes(stage: Stage) -> bool {
        matches!(stage, Stage::Pt | Stage::Sft | Stage::Ppo)
    }

    fn encode_batch(enc: &Encoder, rows: &[Row], generate: bool) -> Result<Vec<Self>> {
        enc.encode_plain(rows, generate)
    }
}

impl StageRows for PairExample {
    fn takes(stage: Stage) -> bool {
        matches!(stage, Stage::Rm | Stage::Dpo)
    }

    /// LF uses the pairwise processor for eval sets too, `predict_with_generate` or not.
    fn encode_batch(enc: &Encoder, rows: &[Row], _generate: bool) -> Result<Vec<Self>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if !is_preference(&r.row) {
                warn_dropped(&enc.sources.locate(r));
                continue;
            }
            out.push(
                encode_pairwise(enc.template, enc.tok, &r.row, enc.data_args.cutoff_len)
                    .map_err(|e| enc.at(r, e))?,
            );
        }
        Ok(out)
    }
}

impl StageRows for KtoExample {
    fn takes(stage: Stage) -> bool {
        stage == Stage::Kto
    }

    /// Row i's KL partner is the response of row i − 1 of the same batch, the first row's the
    /// last row's, counted before invalid rows are dropped (LF rotates the batch's
    /// `_response` column by one).
    fn encode_batch(enc: &Encoder, rows: &[Row], _generate: bool) -> Result<Vec<Self>> {
        let mut out = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            if !is_preference(&r.row) {
                warn_dropped(&enc.sources.locate(r));
                continue;
            }
            let prev = &rows[(i + rows.len() - 1) % rows.len()];
            let kl = feedback_response(&prev.row.response).ok_or_else(|| {
                Error::Msg(format!(
                    "{}: its kto KL pair takes the response of the previous row of the \
                     preprocessing batch ({}), which has none",
                    enc.sources.locate(r),
                    enc.sources.locate(prev)
                ))
            })?;
            out.push(
                encode_feedback(enc.template, enc.tok, &r.row, kl, enc.data_args.cutoff_len)
                    .map_err(|e| enc.at(r, e))?,
            );
        }
        let desirable = out.iter().filter(|k| k.desirable).count();
        if desirable == 0 || desirable == out.len() {
            eprintln!("[WARNING] Your dataset only has one preference type.");
        }
        Ok(out)
    }
}

/// Encodes sets of rows with the stage's processor.
pub(crate) struct Encoder<'a> {
    pub template: &'a Template,
    pub tok: &'a Tokenizer,
    pub data_args: &'a DataArguments,
    pub stage: Stage,
    pub sources: &'a Sources,
    pub add_bos_token: bool,
}

impl Encoder<'_> {
    fn at(&self, r: &Row, e: Error) -> Error {
        Error::Msg(format!("{}: {e}", self.sources.locate(r)))
    }

    fn cutoff(&self) -> Result<usize> {
        usize::try_from(self.data_args.cutoff_len)
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| {
                Error::Msg(format!(
                    "cutoff_len must be positive, got {}",
                    self.data_args.cutoff_len
                ))
            })
    }

    /// One set, batch by batch; an empty result from rows is LF's "Cannot find ..." error.
    pub fn encode_set<R: StageRows>(&self, rows: &[Row], generate: bool) -> Result<Vec<R>> {
        let batch = usize::try_from(self.data_args.preprocessing_batch_size)
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| {
                Error::Msg(format!(
                    "preprocessing_batch_size must be positive, got {}",
                    self.data_args.preprocessing_batch_size
                ))
            })?;
        let mut out = Vec::new();
        for chunk in rows.chunks(batch) {
            out.extend(R::encode_batch(self, chunk, generate)?);
        }
        if out.is_empty() && !rows.is_empty() {
            return Err(Error::Msg(if self.stage == Stage::Pt {
                "Cannot find sufficient samples, consider increasing dataset size.".into()
            } else {
                "Cannot find valid samples, check `data/README.md` for the data format.".into()
            }));
        }
        Ok(out)
    }

    /// The pt, supervised and unsupervised processors.
    fn encode_plain(&self, rows: &[Row], generate: bool) -> Result<Vec<Example>> {
        let da = self.data_args;
        if self.stage == Stage::Pt {
            let opts = PretrainOptions {
                cutoff_len: self.cutoff()?,
                packing: da.packing.unwrap_or(true),
                eos_text: eos_text(da.template.as_deref(), self.tok)?,
                add_bos_token: self.add_bos_token,
            };
            let converted: Vec<&Converted> = rows.iter().map(|r| &r.row).collect();
            return encode_pretrain(self.tok, &converted, &opts);
        }
        if generate {
            let mut out = Vec::new();
            for r in rows {
                if r.row.prompt.len() % 2 != 1 {
                    warn_dropped(&self.sources.locate(r));
                    continue;
                }
                let (ids, labels) =
                    encode_unsupervised(self.template, self.tok, &r.row, da.cutoff_len)
                        .map_err(|e| self.at(r, e))?;
                let n = ids.len();
                out.push(Example {
                    input_ids: ids,
                    labels: labels.into_iter().map(i64::from).collect(),
                    segments: vec![n],
                    position_ids: (0..n as u32).collect(),
                });
            }
            return Ok(out);
        }
        let opts = SupervisedOptions {
            cutoff_len: da.cutoff_len,
            train_on_prompt: da.train_on_prompt,
            mask_history: da.mask_history,
        };
        let mut encoded = Vec::with_capacity(rows.len());
        for r in rows {
            if !is_supervised(&r.row) {
                warn_dropped(&self.sources.locate(r));
                continue;
            }
            encoded.push(
                encode_supervised(self.template, self.tok, &r.row, &opts)
                    .map_err(|e| self.at(r, e))?,
            );
        }
        if da.packing.unwrap_or(false) {
            let pad = self.tok.pad_token_id().ok_or_else(|| {
                Error::Msg("packing needs a pad token and the tokenizer has none".into())
            })?;
            return Ok(pack_supervised(
                encoded,
                self.cutoff()?,
                pad,
                da.neat_packing,
            ));
        }
        Ok(encoded
            .into_iter()
            .map(|(ids, labels)| Example::single(ids, labels))
            .collect())
    }
}

fn warn_dropped(at: &str) {
    eprintln!("[WARNING] Dropped invalid example ({at}).");
}
