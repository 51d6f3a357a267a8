//! The text of one reply as its tokens arrive: the streamer's printable pieces (transformers'
//! `TextStreamer` rule, what LLaMA-Factory streams), cut at the first stop string. While stop
//! strings are set, text that could be the start of one is held back until it is not.

use lmf_models::{TextStreamer, Tokenizer};

/// One reply's text.
pub struct ReplyText<'a> {
    tokenizer: &'a Tokenizer,
    skip_special: bool,
    streamer: TextStreamer<'a>,
    stops: Vec<String>,
    /// Generated ids so far.
    ids: Vec<u32>,
    /// Text released so far.
    shown: String,
    /// Streamed text not released yet (it may begin a stop string).
    pending: String,
    /// The reply cut before its first stop string, once one appeared.
    stopped: Option<String>,
}

impl<'a> ReplyText<'a> {
    /// An empty reply; `stops` are the request's stop strings (empty ones ignored).
    pub fn new(tokenizer: &'a Tokenizer, skip_special: bool, stops: &[String]) -> Self {
        ReplyText {
            tokenizer,
            skip_special,
            streamer: TextStreamer::new(tokenizer, skip_special),
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ids: vec![],
            shown: String::new(),
            pending: String::new(),
            stopped: None,
        }
    }

    /// Adds a token; returns the text this releases (possibly empty).
    pub fn push(&mut self, token: u32) -> anyhow::Result<String> {
        self.ids.push(token);
        if self.stopped.is_some() {
            return Ok(String::new());
        }
        self.pending += &self.streamer.put(token)?;
        if !self.stops.is_empty() {
            // the whole decoded reply, so a stop string inside an unfinished word counts now
            let full = self.tokenizer.decode(&self.ids, self.skip_special)?;
            if let Some(p) = self
                .stops
                .iter()
                .filter_map(|s| full.find(s.as_str()))
                .min()
            {
                let cut = full[..p].to_string();
                let out = cut.strip_prefix(&self.shown).unwrap_or("").to_string();
                self.shown = cut.clone();
                self.stopped = Some(cut);
                return Ok(out);
            }
        }
        let keep = self.held_back();
        let out = self.pending[..self.pending.len() - keep].to_string();
        self.pending.drain(..self.pending.len() - keep);
        self.shown += &out;
        Ok(out)
    }

    /// Bytes at the end of `pending` that begin some stop string.
    fn held_back(&self) -> usize {
        let p = &self.pending;
        (1..=p.len())
            .rev()
            .filter(|&n| p.is_char_boundary(p.len() - n))
            .find(|&n| self.stops.iter().any(|s| s.starts_with(&p[p.len() - n..])))
            .unwrap_or(0)
    }

    /// Generation ended: returns the text not released yet.
    pub fn finish(&mut self) -> anyhow::Result<String> {
        if self.stopped.is_some() {
            return Ok(String::new());
        }
        self.pending += &self.streamer.finish()?;
        let out = std::mem::take(&mut self.pending);
        self.shown += &out;
        Ok(out)
    }

    /// Whether a stop string ended the reply.
    pub fn stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// Tokens generated.
    pub fn num_tokens(&self) -> usize {
        self.ids.len()
    }

    /// The whole reply: the decoded tokens (LLaMA-Factory's `batch_decode`), or the text
    /// before the stop string.
    pub fn full_text(&self) -> anyhow::Result<String> {
        match &self.stopped {
            Some(t) => Ok(t.clone()),
            None => Ok(self.tokenizer.decode(&self.ids, self.skip_special)?),
        }
    }
}
