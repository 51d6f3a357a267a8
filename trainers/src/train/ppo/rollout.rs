//! The experience of one PPO step: responses generated for a batch of prompts with the KV-cache
//! engine (LLaMA-Factory's `get_inputs`), trimmed as LLaMA-Factory trims them, and scored by
//! the reward model ([`super::reward`]).

use lmf_models::{generate, CausalLM, GenerationConfig};

use crate::Result;

/// How responses are generated and cut.
#[derive(Clone, Debug)]
pub struct RolloutConfig {
    /// Decoding settings (LLaMA-Factory's generating arguments; `eos_token_ids` = the
    /// template's stop tokens).
    pub generation: GenerationConfig,
    /// `max_length` when `max_new_tokens` is not set (prompt + response, HF's rule: counted
    /// from the longest prompt of the mini-batch).
    pub max_length: Option<usize>,
    /// The tokenizer's pad id (generation pads finished sequences with it).
    pub pad_token_id: u32,
    /// The tokenizer's eos id.
    pub eos_token_id: u32,
}

/// Responses to `prompts` (one generation batch), cut as LLaMA-Factory's `get_inputs` cuts
/// HF's padded output: up to the last non-pad token (one more when eos is the pad token);
/// a response of only padding keeps its first token. `seed` keys the sampling.
pub fn generate_responses(
    model: &CausalLM,
    prompts: &[Vec<u32>],
    cfg: &RolloutConfig,
    seed: u64,
) -> Result<Vec<Vec<u32>>> {
    let mut gen = cfg.generation.clone();
    gen.seed = seed;
    if let Some(total) = cfg.max_length {
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        gen.max_new_tokens = total.saturating_sub(longest);
    }
    let out = generate(model, prompts, &gen, |_, _| {})?;
    // HF's output: every row as wide as the longest, finished rows padded with pad.
    let width = out.iter().map(Vec::len).max().unwrap_or(0);
    Ok(out
        .iter()
        .map(|g| trim_response(g, width, cfg.pad_token_id, cfg.eos_token_id))
        .collect())
}

/// LF's cut of one generated row `g` padded to `width` with `pad`.
pub fn trim_response(g: &[u32], width: usize, pad: u32, eos: u32) -> Vec<u32> {
    let mut row = g.to_vec();
    row.resize(width.max(g.len()), pad);
    let len = match row.iter().rposition(|&t| t != pad) {
        None => 1,
        Some(last) if eos == pad => last + 2,
        Some(last) => last + 1,
    };
    row.truncate(len.min(row.len()).max(1));
    if row.is_empty() {
        row.push(pad);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::trim_response;

    #[test]
    fn responses_are_cut_like_llamafactory() {
        // eos 9 ≠ pad 5: up to the last non-pad token (the eos itself)
        assert_eq!(trim_response(&[3, 4, 9], 5, 5, 9), vec![3, 4, 9]);
        // a pad token the model wrote inside the response stays; trailing ones go
        assert_eq!(trim_response(&[3, 5, 4, 5], 4, 5, 9), vec![3, 5, 4]);
        // only padding: one token kept
        assert_eq!(trim_response(&[5, 5], 3, 5, 9), vec![5]);
        // eos == pad: the eos after the last non-pad token is kept
        assert_eq!(trim_response(&[3, 4, 5], 6, 5, 5), vec![3, 4, 5]);
        // ... also when the row is the widest and ends without eos
        assert_eq!(trim_response(&[3, 4], 2, 5, 5), vec![3, 4]);
    }
}
