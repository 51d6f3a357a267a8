//! A batch of sequences decoding together, which sequences may join and leave between steps
//! (continuous batching). Each sequence brings its own prompt and decoding settings; a step
//! runs every unfinished sequence one token further (a new sequence: its whole prompt) and
//! chooses each next token with that sequence's settings — repetition penalty, then greedy
//! arg-max or a draw from the warped softmax with the Philox number keyed by (seed, the
//! sequence's own step, its stream id), so a seeded sequence gives the same tokens whatever
//! else is in the batch.
//!
//! Two ways to run a step:
//! - *together* ([`generate`](crate::generate) of a fixed set of prompts): one forward over
//!   the new prompts and the running sequences' last tokens, as `generate` always did;
//! - *batch-invariant* (serving): each new prompt is prefilled in a forward of its own (the
//!   exact forward a lone request runs), and the running sequences' tokens go through one
//!   forward whose weight products are row-independent ([`batch_invariant`]). Attention,
//!   norms and activations work per sequence or per token, so every sequence gets, bit for
//!   bit, the logits it would get alone: greedy outputs equal the solo run's.

use crate::batch::SeqBatch;
use crate::generate::{apply_repetition_penalty, argmax, sample, GenerationConfig};
use crate::model::{batch_invariant, CausalLM, KvCache};
use crate::{Error, Result};
use lmf_autograd::no_grad;
use lmf_kernels::cpu::philox;

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// It produced one of its stop tokens (kept as its last token).
    Stop,
    /// It reached its `max_new_tokens`.
    Length,
}

/// One token chosen in a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emitted {
    /// The caller's key of the sequence.
    pub key: u64,
    /// The new token.
    pub token: u32,
    /// Set when this token ends the sequence (it has then left the batch).
    pub finish: Option<Finish>,
}

/// A sequence in the batch.
struct Seq {
    key: u64,
    prompt: Vec<u32>,
    out: Vec<u32>,
    cfg: GenerationConfig,
    /// Philox stream of its draws (the prompt's index in `generate`).
    stream: u64,
}

/// Sequences decoding together over one KV cache.
pub struct DecodeBatch<'m> {
    model: &'m CausalLM,
    /// Prefill alone and decode row-independently (see the module docs).
    invariant: bool,
    /// Sequences with tokens in `cache`, in the cache's order.
    running: Vec<Seq>,
    /// Admitted sequences whose prompt has not run yet.
    waiting: Vec<Seq>,
    cache: KvCache,
}

impl<'m> DecodeBatch<'m> {
    /// An empty batch; `invariant` selects the batch-invariant step (serving).
    pub fn new(model: &'m CausalLM, invariant: bool) -> DecodeBatch<'m> {
        DecodeBatch {
            model,
            invariant,
            running: vec![],
            waiting: vec![],
            cache: model.new_cache(0),
        }
    }

    /// Adds a sequence; its prompt runs at the next step. `stream` keys its random draws.
    pub fn admit(
        &mut self,
        key: u64,
        prompt: Vec<u32>,
        cfg: GenerationConfig,
        stream: u64,
    ) -> Result<()> {
        cfg.validate()?;
        if prompt.is_empty() {
            return Err(Error::msg("the prompt is empty"));
        }
        if cfg.max_new_tokens == 0 {
            return Err(Error::msg("max_new_tokens must be at least 1"));
        }
        self.waiting.push(Seq {
            key,
            prompt,
            out: vec![],
            cfg,
            stream,
        });
        Ok(())
    }

    /// Number of sequences in the batch (running or waiting).
    pub fn len(&self) -> usize {
        self.running.len() + self.waiting.len()
    }

    /// Whether no sequence is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes the sequences with key `key` (a cancelled request); true when one was there.
    pub fn cancel(&mut self, key: u64) -> bool {
        let before = self.len();
        self.waiting.retain(|s| s.key != key);
        let keep: Vec<bool> = self.running.iter().map(|s| s.key != key).collect();
        if keep.iter().any(|k| !k) {
            self.cache.retain(&keep);
            self.running.retain(|s| s.key != key);
        }
        self.len() != before
    }

    /// Runs every sequence one token further; finished sequences leave the batch.
    pub fn step(&mut self) -> Result<Vec<Emitted>> {
        no_grad(|| {
            let new: Vec<Seq> = std::mem::take(&mut self.waiting);
            // logits rows [seqs, vocab], for `running` followed by `new`
            let mut rows: Vec<f32> = vec![];
            let mut cache = std::mem::replace(&mut self.cache, self.model.new_cache(0));
            if self.invariant {
                if !self.running.is_empty() {
                    let feed: Vec<Vec<u32>> = self.running.iter().map(last_token).collect();
                    let batch = SeqBatch::with_offsets(&feed, cache.lens());
                    let logits = batch_invariant(|| self.model.forward_last(&batch, &mut cache))?;
                    rows.extend(logits.tensor().to_vec::<f32>()?);
                }
                for s in &new {
                    let mut own = self.model.new_cache(1);
                    let batch = SeqBatch::from_seqs(std::slice::from_ref(&s.prompt));
                    let logits = self.model.forward_last(&batch, &mut own)?;
                    rows.extend(logits.tensor().to_vec::<f32>()?);
                    cache.extend(own);
                }
            } else {
                cache.extend(self.model.new_cache(new.len()));
                let feed: Vec<Vec<u32>> = self
                    .running
                    .iter()
                    .map(last_token)
                    .chain(new.iter().map(|s| s.prompt.clone()))
                    .collect();
                let batch = SeqBatch::with_offsets(&feed, cache.lens());
                let logits = self.model.forward_last(&batch, &mut cache)?;
                rows.extend(logits.tensor().to_vec::<f32>()?);
            }
            self.cache = cache;
            self.running.extend(new);
            let n = self.running.len();
            let vocab = rows.len() / n.max(1);
            let mut emitted = Vec::with_capacity(n);
            let mut keep = vec![true; n];
            for (j, s) in self.running.iter_mut().enumerate() {
                let token = choose(s, &rows[j * vocab..(j + 1) * vocab]);
                s.out.push(token);
                let finish = if s.cfg.eos_token_ids.contains(&token) {
                    Some(Finish::Stop)
                } else if s.out.len() >= s.cfg.max_new_tokens {
                    Some(Finish::Length)
                } else {
                    None
                };
                keep[j] = finish.is_none();
                emitted.push(Emitted {
                    key: s.key,
                    token,
                    finish,
                });
            }
            if keep.iter().any(|k| !k) {
                self.cache.retain(&keep);
                let mut it = keep.iter();
                self.running.retain(|_| *it.next().unwrap_or(&false));
            }
            Ok(emitted)
        })
    }
}

/// The token a running sequence feeds next: its last generated one.
fn last_token(s: &Seq) -> Vec<u32> {
    vec![*s.out.last().unwrap_or(&0)]
}

/// The next token of `s` from its logits row, with its own settings.
fn choose(s: &Seq, row: &[f32]) -> u32 {
    let cfg = &s.cfg;
    let mut row = row.to_vec();
    if cfg.repetition_penalty != 1.0 {
        let seen: Vec<u32> = s.prompt.iter().chain(&s.out).copied().collect();
        apply_repetition_penalty(&mut row, &seen, cfg.repetition_penalty);
    }
    if cfg.do_sample {
        let step = s.out.len() as u64;
        let u = philox::uniform(cfg.seed, (step << 32) | s.stream) as f64;
        sample(&row, cfg, u)
    } else {
        argmax(&row)
    }
}
