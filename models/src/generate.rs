//! Text generation with a KV cache: prefill every prompt at once, then one token per
//! unfinished sequence per step. Logits go through HF's processors in HF's order —
//! repetition penalty, then temperature, top-k, top-p — and are either arg-maxed (greedy;
//! ties go to the lowest id, like `torch.argmax`) or sampled with the counter-based Philox
//! RNG keyed by (seed, step, sequence), so a seed gives the same text on every run.

use crate::decode::DecodeBatch;
use crate::model::CausalLM;
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// Decoding parameters (names and defaults of HF's `GenerationConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    /// Tokens to generate at most per sequence.
    pub max_new_tokens: usize,
    /// Sample (true) or take the arg-max (false).
    pub do_sample: bool,
    /// Softmax temperature (sampling only).
    pub temperature: f64,
    /// Nucleus mass (sampling only; 1 = off).
    pub top_p: f64,
    /// Keep the k most likely tokens (sampling only; 0 = off).
    pub top_k: usize,
    /// CTRL-style penalty on tokens already present (1 = off).
    pub repetition_penalty: f64,
    /// Tokens that end a sequence (kept in the output, like HF).
    pub eos_token_ids: Vec<u32>,
    /// Seed of the sampling RNG.
    pub seed: u64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 20,
            do_sample: false,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 50,
            repetition_penalty: 1.0,
            eos_token_ids: vec![],
            seed: 42,
        }
    }
}

impl GenerationConfig {
    /// Reads a model folder's `generation_config.json` over the defaults (absent file →
    /// defaults; `eos_token_id` may be one id or a list).
    pub fn from_dir(dir: &Path) -> Result<GenerationConfig> {
        let path = dir.join("generation_config.json");
        let mut g = GenerationConfig::default();
        if !path.is_file() {
            return Ok(g);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::file(&path, format!("invalid JSON: {e}")))?;
        let bad = |k: &str| Error::file(&path, format!("bad value for `{k}`: {}", v[k]));
        let num = |k: &str| -> Result<Option<f64>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x.as_f64().map(Some).ok_or_else(|| bad(k)),
            }
        };
        if let Some(x) = num("max_new_tokens")? {
            g.max_new_tokens = x as usize;
        }
        if let Some(x) = v.get("do_sample").filter(|x| !x.is_null()) {
            g.do_sample = x.as_bool().ok_or_else(|| bad("do_sample"))?;
        }
        if let Some(x) = num("temperature")? {
            g.temperature = x;
        }
        if let Some(x) = num("top_p")? {
            g.top_p = x;
        }
        if let Some(x) = num("top_k")? {
            g.top_k = x as usize;
        }
        if let Some(x) = num("repetition_penalty")? {
            g.repetition_penalty = x;
        }
        g.eos_token_ids = match v.get("eos_token_id") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_u64().map(|x| x as u32))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("eos_token_id"))?,
            Some(x) => vec![x.as_u64().ok_or_else(|| bad("eos_token_id"))? as u32],
        };
        Ok(g)
    }

    /// Checks the values make sense before a long run.
    pub fn validate(&self) -> Result<()> {
        if self.do_sample && (self.temperature.is_nan() || self.temperature <= 0.0) {
            return Err(Error::msg(format!(
                "temperature must be > 0 when sampling, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::msg(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if self.repetition_penalty.is_nan() || self.repetition_penalty <= 0.0 {
            return Err(Error::msg(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            )));
        }
        Ok(())
    }
}

/// HF's `RepetitionPenaltyLogitsProcessor`: every token id present in `seen` has its logit
/// divided by `penalty` when positive, multiplied when negative.
pub fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f64) {
    if penalty == 1.0 {
        return;
    }
    let mut done = vec![false; logits.len()];
    for &t in seen {
        let t = t as usize;
        if t < logits.len() && !done[t] {
            done[t] = true;
            let x = logits[t];
            logits[t] = if x < 0.0 {
                x * penalty as f32
            } else {
                x / penalty as f32
            };
        }
    }
}

/// Index of the largest logit (the first one on ties, like `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] || (logits[best].is_nan() && !x.is_nan()) {
            best = i;
        }
    }
    best as u32
}

/// The distribution sampling draws from, after HF's warpers in HF's order — temperature,
/// top-k (ties with the k-th logit kept), top-p (a token stays while the mass ranked above it
/// is below `top_p`) — as `(token, probability)`, most likely first (ties by id).
pub fn sampling_distribution(logits: &[f32], cfg: &GenerationConfig) -> Vec<(u32, f64)> {
    let t = cfg.temperature;
    // (logit / T, id), sorted by descending logit, ties by id
    let mut cand: Vec<(f64, u32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 / t, i as u32))
        .filter(|c| c.0 > f64::NEG_INFINITY)
        .collect();
    cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    if cfg.top_k > 0 && cfg.top_k < cand.len() {
        let kth = cand[cfg.top_k - 1].0;
        cand.retain(|c| c.0 >= kth);
    }
    let Some(&(m, _)) = cand.first() else {
        return vec![];
    };
    let mut probs: Vec<f64> = cand.iter().map(|c| (c.0 - m).exp()).collect();
    let z: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= z);
    if cfg.top_p < 1.0 {
        let mut above = 0.0;
        let keep = probs
            .iter()
            .position(|&p| {
                let drop = above >= cfg.top_p;
                above += p;
                drop
            })
            .unwrap_or(probs.len())
            .max(1);
        probs.truncate(keep);
        let z: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= z);
    }
    cand.iter().zip(probs).map(|(c, p)| (c.1, p)).collect()
}

/// Samples one token from [`sampling_distribution`] with the uniform number `u` in (0, 1].
pub fn sample(logits: &[f32], cfg: &GenerationConfig, u: f64) -> u32 {
    let dist = sampling_distribution(logits, cfg);
    let mut acc = 0.0;
    for &(tok, p) in &dist {
        acc += p;
        if u <= acc {
            return tok;
        }
    }
    dist.last().map_or_else(|| argmax(logits), |d| d.0)
}

/// Generates continuations of `prompts` (token ids, no padding needed). `on_token(seq,
/// token)` is called for each new token as it is chosen (for streaming). Returns the new
/// tokens of each prompt, ending with the eos token when one was produced. All prompts run
/// through one forward per step ([`DecodeBatch`] without batch invariance); prompt `i` draws
/// from Philox stream `i`.
pub fn generate(
    model: &CausalLM,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    mut on_token: impl FnMut(usize, u32),
) -> Result<Vec<Vec<u32>>> {
    cfg.validate()?;
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(Error::msg(format!("prompt {i} is empty")));
    }
    let mut out: Vec<Vec<u32>> = vec![vec![]; prompts.len()];
    if cfg.max_new_tokens == 0 {
        return Ok(out);
    }
    let mut batch = DecodeBatch::new(model, false);
    for (i, p) in prompts.iter().enumerate() {
        batch.admit(i as u64, p.clone(), cfg.clone(), i as u64)?;
    }
    while !batch.is_empty() {
        for e in batch.step()? {
            out[e.key as usize].push(e.token);
            on_token(e.key as usize, e.token);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative() {
        let mut l = vec![2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1], 2.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        let mut cfg = GenerationConfig {
            do_sample: true,
            top_k: 1,
            ..Default::default()
        };
        for u in [0.01, 0.5, 1.0] {
            assert_eq!(sample(&logits, &cfg, u), 1);
        }
        cfg.top_k = 0;
        cfg.top_p = 0.01;
        assert_eq!(sample(&logits, &cfg, 0.99), 1);
    }

    #[test]
    fn sampling_follows_the_softmax() {
        // p = softmax([0, ln 3]) = [0.25, 0.75], walked from the most likely token:
        // u <= 0.75 picks 1, else 0
        let logits = [0.0, 3f32.ln()];
        let cfg = GenerationConfig {
            do_sample: true,
            top_k: 0,
            ..Default::default()
        };
        assert_eq!(sample(&logits, &cfg, 0.7), 1);
        assert_eq!(sample(&logits, &cfg, 0.8), 0);
    }
}
