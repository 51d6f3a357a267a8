//! Preference rows → token ids, as LLaMA-Factory's pairwise processor (stages rm and dpo:
//! `PairwiseDatasetProcessor`) and feedback processor (stage kto: `FeedbackDatasetProcessor`)
//! make them.
//!
//! Pairwise: prompt + chosen and prompt + rejected, each by `encode_oneturn`; the prompt is cut
//! to the same length in both, against the LONGER of the two responses (`infer_seqlen`), and
//! both responses to the same length. Feedback: prompt + the row's own response, and the KL
//! pair: the same prompt with the response of the previous row of the preprocessing batch
//! (rotated: the batch's first row takes its last row's response), each cut by its own
//! `infer_seqlen`. In both, the prompt's labels are `IGNORE_INDEX` and `efficient_eos` adds an
//! eos to every response.

use lmf_models::Tokenizer;

use super::convert::Converted;
use super::encode::{eos_id, infer_seqlen, opt};
use super::example::{Example, KtoExample, PairExample, IGNORE_INDEX};
use crate::template::{Message, Template};
use crate::{Error, Result};

/// Is the row a valid preference row (odd prompt, at least two responses)? LF's pairwise and
/// feedback processors drop the others with a warning.
pub fn is_preference(row: &Converted) -> bool {
    row.prompt.len() % 2 == 1 && row.response.len() >= 2
}

/// `(prompt ids, response ids)` of `row`'s prompt followed by `response`, with LF's eos after
/// the response for `efficient_eos` templates.
fn oneturn(
    template: &Template,
    tok: &Tokenizer,
    row: &Converted,
    response: &Message,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut messages = row.prompt.clone();
    messages.push(response.clone());
    let (prompt, mut answer) =
        template.encode_oneturn(tok, &messages, opt(&row.system), opt(&row.tools))?;
    if template.efficient_eos() {
        answer.push(eos_id(tok)?);
    }
    Ok((prompt, answer))
}

/// Prompt (labels masked) then response (labels = ids), as one unpacked row.
fn join(prompt: &[u32], response: &[u32]) -> Example {
    let mut ids = prompt.to_vec();
    ids.extend_from_slice(response);
    let mut labels = vec![IGNORE_INDEX; prompt.len()];
    labels.extend(response.iter().map(|&t| i64::from(t)));
    Example::single(ids, labels)
}

/// LF's pairwise `_encode_data_example` for a valid row (see [`is_preference`]): responses 0
/// (chosen) and 1 (rejected).
pub fn encode_pairwise(
    template: &Template,
    tok: &Tokenizer,
    row: &Converted,
    cutoff_len: i64,
) -> Result<PairExample> {
    let [chosen, rejected, ..] = row.response.as_slice() else {
        return Err(Error::Msg(
            "a pairwise row needs a chosen and a rejected response".into(),
        ));
    };
    let (prompt, chosen) = oneturn(template, tok, row, chosen)?;
    let (_, rejected) = oneturn(template, tok, row, rejected)?;
    let longer = chosen.len().max(rejected.len());
    let (source_len, target_len) = infer_seqlen(prompt.len() as i64, longer as i64, cutoff_len);
    let prompt = &prompt[..source_len as usize];
    let cut = |r: &[u32]| r[..r.len().min(target_len as usize)].to_vec();
    Ok(PairExample {
        chosen: join(prompt, &cut(&chosen)),
        rejected: join(prompt, &cut(&rejected)),
    })
}

/// The message LF's feedback processor takes from a row's `_response` (kto rows hold
/// `[answer, ""]` when desirable, `["", answer]` when not): the first when it is not empty, else
/// the second; `None` where LF fails (an empty first and no second).
pub fn feedback_response(response: &[Message]) -> Option<&Message> {
    match response {
        [first, ..] if !first.content.is_empty() => Some(first),
        [_, second, ..] => Some(second),
        _ => None,
    }
}

/// LF's feedback `_encode_data_example` for a valid row (see [`is_preference`]) whose KL partner
/// is `kl_response` (the previous row's `_response` in the batch).
pub fn encode_feedback(
    template: &Template,
    tok: &Tokenizer,
    row: &Converted,
    kl_response: &Message,
    cutoff_len: i64,
) -> Result<KtoExample> {
    let desirable = row
        .response
        .first()
        .is_some_and(|first| !first.content.is_empty());
    let response = feedback_response(&row.response)
        .ok_or_else(|| Error::Msg("a kto row needs a response".into()))?;
    let encode = |response: &Message| -> Result<Example> {
        let (prompt, answer) = oneturn(template, tok, row, response)?;
        let (source_len, target_len) =
            infer_seqlen(prompt.len() as i64, answer.len() as i64, cutoff_len);
        Ok(join(
            &prompt[..source_len as usize],
            &answer[..target_len as usize],
        ))
    };
    Ok(KtoExample {
        example: encode(response)?,
        kl: encode(kl_response)?,
        desirable,
    })
}
