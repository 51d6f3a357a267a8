//! Reasoning templates (LLaMA-Factory's `ReasoningTemplate`): answers carry a thought between the
//! template's thought words. An answer without one gets an empty thought — trained on when
//! `enable_thinking` is true, otherwise put at the end of the prompt — and thoughts of earlier
//! answers are dropped where LLaMA-Factory drops them.

use lmf_models::tokenizer::Tokenizer;

use super::formatter::find_between;
use super::message::Message;
use super::template::{Pair, Template, TemplateKind};
use super::{Error, Result};

impl Template {
    /// The empty thought (`add_thought()`): both thought words, or only the closing one for
    /// GLM-4.7.
    fn empty_thought(&self) -> String {
        match self.kind {
            TemplateKind::Glm47Reasoning => self.thought_words.1.clone(),
            _ => format!("{}{}", self.thought_words.0, self.thought_words.1),
        }
    }

    /// `remove_thought`: every `open(.*?)close` is cut out, then leading newlines.
    pub fn remove_thought(&self, content: &str) -> String {
        let (open, close) = (&self.thought_words.0, &self.thought_words.1);
        let mut out = String::with_capacity(content.len());
        let mut rest = content;
        while let Some((s, e, _, _)) = find_between(rest, open, close) {
            out.push_str(&rest[..s]);
            if e == 0 {
                // Empty thought words would match nothing forever: stop.
                break;
            }
            rest = &rest[e..];
        }
        out.push_str(rest);
        out.trim_start_matches('\n').to_string()
    }

    /// Whether `content` has neither thought word (each stripped of whitespace, as
    /// LLaMA-Factory checks).
    fn lacks_thought(&self, content: &str) -> bool {
        !content.contains(py_strip(&self.thought_words.0))
            && !content.contains(py_strip(&self.thought_words.1))
    }

    fn thought_ids(&self, tok: &Tokenizer) -> Result<Vec<u32>> {
        Ok(tok.encode(&self.empty_thought(), false)?)
    }

    pub(crate) fn reasoning_oneturn(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
    ) -> Result<Pair> {
        let mut messages = messages.to_vec();
        let n = messages.len();
        if !self.preserve_thinking {
            for i in (1..n.saturating_sub(2)).step_by(2) {
                messages[i].content = self.remove_thought(&messages[i].content);
            }
        }
        let Some(last) = messages.last_mut() else {
            return Err(Error::Message("cannot encode an empty conversation".into()));
        };
        if self.enable_thinking == Some(false) {
            last.content = self.remove_thought(&last.content);
        }
        let lacks = self.lacks_thought(&last.content);
        let (mut prompt, mut response) = self.plain_oneturn(tok, &messages, system, tools)?;
        if lacks {
            let ids = self.thought_ids(tok)?;
            if self.enable_thinking != Some(true) {
                prompt.extend(ids);
            } else {
                response = [ids, response].concat();
            }
        }
        Ok((prompt, response))
    }

    pub(crate) fn reasoning_multiturn(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
        discarding_history_cot: bool,
    ) -> Result<Vec<Pair>> {
        let mut messages = messages.to_vec();
        let n = messages.len();
        if !n.is_multiple_of(2) {
            return Err(Error::Message(format!(
                "a conversation needs prompt/response pairs, got {n} messages"
            )));
        }
        if self.enable_thinking == Some(false) {
            for i in (1..n).step_by(2) {
                messages[i].content = self.remove_thought(&messages[i].content);
            }
        }
        if discarding_history_cot {
            for i in (1..n.saturating_sub(2)).step_by(2) {
                messages[i].content = self.remove_thought(&messages[i].content);
            }
        }
        let mut encoded = self.encode_messages(tok, &messages, system, tools)?;
        let turns: Vec<usize> = if discarding_history_cot {
            if n < 2 {
                return Err(Error::Message("cannot encode an empty conversation".into()));
            }
            vec![n - 2]
        } else {
            (0..n).step_by(2).collect()
        };
        for i in turns {
            if self.lacks_thought(&messages[i + 1].content) {
                let ids = self.thought_ids(tok)?;
                if self.enable_thinking != Some(true) {
                    encoded[i].extend(ids);
                } else {
                    encoded[i + 1] = [ids, std::mem::take(&mut encoded[i + 1])].concat();
                }
            }
        }
        let mut out = Vec::with_capacity(n / 2);
        let mut it = encoded.into_iter();
        while let (Some(p), Some(r)) = (it.next(), it.next()) {
            out.push((p, r));
        }
        Ok(out)
    }
}

/// Python's `str.strip()` (whitespace as Python counts it, close enough to Unicode's).
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}
