//! Streaming detokenisation with the rule of transformers' `TextStreamer` (which
//! LLaMA-Factory's CLI chat prints through): decode the tokens since the last line break,
//! print up to the last space (whole words only), everything at a line break or after a
//! CJK character, and the rest when generation ends. The printed pieces concatenate to the
//! full decoded reply whenever the decoding of a prefix never changes, and match HF's
//! pieces exactly in every case.

use crate::tokenizer::Tokenizer;
use crate::Result;

/// Incremental decoder: feed tokens, get printable text.
pub struct TextStreamer<'a> {
    tokenizer: &'a Tokenizer,
    skip_special_tokens: bool,
    /// Tokens since the last flushed line break.
    cache: Vec<u32>,
    /// Characters of `decode(cache)` already returned.
    printed: usize,
}

impl<'a> TextStreamer<'a> {
    /// A streamer over `tokenizer`.
    pub fn new(tokenizer: &'a Tokenizer, skip_special_tokens: bool) -> Self {
        TextStreamer {
            tokenizer,
            skip_special_tokens,
            cache: vec![],
            printed: 0,
        }
    }

    /// Adds one token; returns the text that became printable (may be empty).
    pub fn put(&mut self, token: u32) -> Result<String> {
        self.cache.push(token);
        let text: Vec<char> = self
            .tokenizer
            .decode(&self.cache, self.skip_special_tokens)?
            .chars()
            .collect();
        // Python slicing: `text[a:b]` is empty when a >= b or a >= len
        let slice = |a: usize, b: usize| -> String {
            text[a.min(b).min(text.len())..b.min(text.len())]
                .iter()
                .collect()
        };
        if text.last() == Some(&'\n') {
            let out = slice(self.printed, text.len());
            self.cache.clear();
            self.printed = 0;
            return Ok(out);
        }
        let end = if text.last().is_some_and(|&c| is_cjk(c)) {
            text.len()
        } else {
            // up to and including the last space; nothing when there is none
            text.iter().rposition(|&c| c == ' ').map_or(0, |i| i + 1)
        };
        let out = if end > self.printed {
            slice(self.printed, end)
        } else {
            String::new()
        };
        self.printed += out.chars().count();
        Ok(out)
    }

    /// Ends the stream; returns what was still held back.
    pub fn finish(&mut self) -> Result<String> {
        let text: Vec<char> = self
            .tokenizer
            .decode(&self.cache, self.skip_special_tokens)?
            .chars()
            .collect();
        let start = self.printed.min(text.len());
        let out = text[start..].iter().collect();
        self.cache.clear();
        self.printed = 0;
        Ok(out)
    }
}

/// The CJK code-point blocks of transformers' `_is_chinese_char`.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}
