//! Pre-training examples (LLaMA-Factory's `PretrainDatasetProcessor` + the pt collator): each
//! row's text plus the eos token (`<|end_of_text|>` for the llama3 template), tokenized without
//! special tokens; with packing the texts of one preprocessing batch are concatenated and cut
//! into `cutoff_len` blocks (the tail that does not fill a block is dropped), else each text is
//! truncated to `cutoff_len`. With `add_bos_token` a bos is put first (packing: the first token
//! of every block becomes bos). Labels are the ids with every pad id masked, as
//! `DataCollatorForLanguageModeling(mlm=False)` does — it also masks eos when pad = eos.

use lmf_models::Tokenizer;

use super::convert::Converted;
use super::example::{Example, IGNORE_INDEX};
use crate::{Error, Result};

/// What the pt processor reads besides the rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PretrainOptions {
    /// `cutoff_len`.
    pub cutoff_len: usize,
    /// `packing` (default on for pt).
    pub packing: bool,
    /// The text appended to every row: `<|end_of_text|>` for template llama3, else the eos token.
    pub eos_text: String,
    /// The tokenizer's `add_bos_token` (false under transformers 5.6 with a `tokenizer.json`).
    pub add_bos_token: bool,
}

/// The eos text LF appends for template `template_name`.
pub fn eos_text(template_name: Option<&str>, tok: &Tokenizer) -> Result<String> {
    if template_name == Some("llama3") {
        return Ok("<|end_of_text|>".into());
    }
    tok.eos_token()
        .map(str::to_string)
        .ok_or_else(|| Error::Msg("the tokenizer has no eos token".into()))
}

/// The pt examples of one preprocessing batch.
pub fn encode_pretrain(
    tok: &Tokenizer,
    rows: &[&Converted],
    opts: &PretrainOptions,
) -> Result<Vec<Example>> {
    let mut texts = Vec::with_capacity(rows.len());
    for row in rows {
        let first = row
            .prompt
            .first()
            .ok_or_else(|| Error::Msg("a pre-training row has no text (empty prompt)".into()))?;
        texts.push(format!("{}{}", first.content, opts.eos_text));
    }
    let bos = || -> Result<(String, u32)> {
        match (tok.bos_token(), tok.bos_token_id()) {
            (Some(t), Some(id)) => Ok((t.to_string(), id)),
            _ => Err(Error::Msg(
                "add_bos_token is set but the tokenizer has no bos token".into(),
            )),
        }
    };
    let pad = tok.pad_token_id();
    let labels_of = |ids: &[u32]| -> Vec<i64> {
        ids.iter()
            .map(|&t| {
                if Some(t) == pad {
                    IGNORE_INDEX
                } else {
                    t as i64
                }
            })
            .collect()
    };
    let mut out = Vec::new();
    if !opts.packing {
        let prefix = if opts.add_bos_token {
            bos()?.0
        } else {
            String::new()
        };
        for text in texts {
            let mut ids = tok.encode(&format!("{prefix}{text}"), false)?;
            ids.truncate(opts.cutoff_len);
            let labels = labels_of(&ids);
            out.push(Example::single(ids, labels));
        }
        return Ok(out);
    }
    let mut all = Vec::new();
    for text in texts {
        all.extend(tok.encode(&text, false)?);
    }
    let block = opts.cutoff_len;
    if block == 0 {
        return Err(Error::Msg("cutoff_len must be positive for packing".into()));
    }
    let bos_id = if opts.add_bos_token {
        Some(bos()?.1)
    } else {
        None
    };
    for chunk in all.chunks_exact(block) {
        let mut ids = chunk.to_vec();
        if let Some(b) = bos_id {
            ids[0] = b;
        }
        let labels = labels_of(&ids);
        out.push(Example::single(ids, labels));
    }
    Ok(out)
}
