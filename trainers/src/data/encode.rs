//! One converted row → token ids and labels, as LLaMA-Factory's dataset processors do it:
//! supervised (`SupervisedDatasetProcessor._encode_data_example`: per-turn truncation with
//! `infer_seqlen`, `train_on_prompt`, `mask_history` in reverse order, `efficient_eos`) and
//! unsupervised (`UnsupervisedDatasetProcessor`, used for `predict_with_generate`: prompt ids
//! and the reference answer's ids).

use lmf_models::Tokenizer;

use super::convert::Converted;
use super::example::IGNORE_INDEX;
use crate::template::Template;
use crate::{Error, Result};

/// The data arguments the supervised encoder reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupervisedOptions {
    /// `cutoff_len` (after `DataArguments::post_init`).
    pub cutoff_len: i64,
    /// `train_on_prompt`.
    pub train_on_prompt: bool,
    /// `mask_history`.
    pub mask_history: bool,
}

/// LF's `infer_seqlen`: how much of a (source, target) pair fits in `cutoff_len`: targets keep
/// priority when short, sources when short, else both shrink in proportion.
pub fn infer_seqlen(source_len: i64, target_len: i64, cutoff_len: i64) -> (i64, i64) {
    let max_target_len = if target_len * 2 < cutoff_len {
        cutoff_len
    } else if source_len * 2 < cutoff_len {
        cutoff_len - source_len
    } else {
        // Python's int(float): truncation of the same f64 product
        (cutoff_len as f64 * (target_len as f64 / (source_len + target_len) as f64)) as i64
    };
    let new_target_len = max_target_len.min(target_len);
    let max_source_len = (cutoff_len - new_target_len).max(0);
    let new_source_len = max_source_len.min(source_len);
    (new_source_len, new_target_len)
}

/// The tokenizer's eos id, or an error saying it has none.
pub(crate) fn eos_id(tok: &Tokenizer) -> Result<u32> {
    tok.eos_token_id()
        .ok_or_else(|| Error::Msg("the tokenizer has no eos token".into()))
}

/// `None` for an empty system prompt or tools text (the template's default applies).
pub(crate) fn opt(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Is the row a valid supervised example (odd prompt, one response)? LF drops the others.
pub fn is_supervised(row: &Converted) -> bool {
    row.prompt.len() % 2 == 1 && row.response.len() == 1
}

/// LF's supervised `_encode_data_example`: `(input_ids, labels)` of a valid row.
pub fn encode_supervised(
    template: &Template,
    tok: &Tokenizer,
    row: &Converted,
    opts: &SupervisedOptions,
) -> Result<(Vec<u32>, Vec<i64>)> {
    let mut messages = row.prompt.clone();
    messages.extend(row.response.iter().cloned());
    let discarding_history_cot = opts.mask_history && !template.preserve_thinking();
    let mut pairs = template.encode_multiturn_with(
        tok,
        &messages,
        opts_text(&row.system),
        opt(&row.tools),
        discarding_history_cot,
    )?;
    let efficient_eos = template.efficient_eos();
    let mut total_length: i64 = if efficient_eos { 1 } else { 0 };
    if opts.mask_history {
        pairs.reverse(); // the last turns have priority
    }
    // built turn by turn; with mask_history the turns come last-first and are put in front
    let mut chunks: Vec<(Vec<u32>, Vec<i64>)> = Vec::with_capacity(pairs.len());
    for (turn_idx, (source, target)) in pairs.into_iter().enumerate() {
        if total_length >= opts.cutoff_len {
            break;
        }
        let (source_len, target_len) = infer_seqlen(
            source.len() as i64,
            target.len() as i64,
            opts.cutoff_len - total_length,
        );
        let source = &source[..source_len as usize];
        let target = &target[..target_len as usize];
        total_length += source_len + target_len;

        let mut labels: Vec<i64> = if opts.train_on_prompt {
            source.iter().map(|&t| t as i64).collect()
        } else if efficient_eos && turn_idx != 0 {
            let mut l = vec![IGNORE_INDEX; source.len()];
            if let Some(first) = l.first_mut() {
                *first = eos_id(tok)? as i64;
            }
            l
        } else {
            vec![IGNORE_INDEX; source.len()]
        };
        if opts.mask_history && turn_idx != 0 {
            labels.extend(std::iter::repeat_n(IGNORE_INDEX, target.len()));
        } else {
            labels.extend(target.iter().map(|&t| t as i64));
        }
        let mut ids = source.to_vec();
        ids.extend_from_slice(target);
        chunks.push((ids, labels));
    }
    if opts.mask_history {
        chunks.reverse();
    }
    let (mut input_ids, mut labels): (Vec<u32>, Vec<i64>) = (Vec::new(), Vec::new());
    for (ids, l) in chunks {
        input_ids.extend(ids);
        labels.extend(l);
    }
    if efficient_eos {
        let eos = eos_id(tok)?;
        input_ids.push(eos);
        labels.push(eos as i64);
    }
    Ok((input_ids, labels))
}

/// The system prompt as the template takes it ("" = the template's default).
fn opts_text(system: &str) -> Option<&str> {
    opt(system)
}

/// LF's `UnsupervisedDatasetProcessor`: the prompt ids (with the generation prompt) and the
/// reference answer's ids (eos added with `efficient_eos`), truncated by `infer_seqlen`.
/// Rows must have an odd prompt (LF drops the others).
pub fn encode_unsupervised(
    template: &Template,
    tok: &Tokenizer,
    row: &Converted,
    cutoff_len: i64,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut messages = row.prompt.clone();
    if row.response.len() == 1 {
        messages.extend(row.response.iter().cloned());
    } else {
        messages.push(crate::template::Message::new(
            crate::template::Role::Assistant,
            "",
        ));
    }
    let (mut input_ids, mut labels) =
        template.encode_oneturn(tok, &messages, opts_text(&row.system), opt(&row.tools))?;
    if template.efficient_eos() {
        labels.push(eos_id(tok)?);
    }
    let (source_len, target_len) =
        infer_seqlen(input_ids.len() as i64, labels.len() as i64, cutoff_len);
    input_ids.truncate(source_len as usize);
    labels.truncate(target_len as usize);
    Ok((input_ids, labels))
}
