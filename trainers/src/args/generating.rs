//! `GeneratingArguments` (LLaMA-Factory `hparams/generating_args.py`) and the generation
//! settings LLaMA-Factory's in-process engine (`chat/hf_engine.py`, `_process_args`) derives
//! from them and from a request's own overrides.

use serde::Serialize;

use super::spec::lf_args;

const NOTE_BEAMS: &str = "it only matters for beam search, and lmf generates with num_beams = 1";

lf_args! {
    /// Decoding settings of `lmf chat` / `lmf api` (LLaMA-Factory `GeneratingArguments`).
    pub struct GeneratingArguments {
        /// Sample; greedy decoding otherwise.
        do_sample: bool = true => Implemented,
        /// Softmax temperature (0 = greedy).
        temperature: f64 = 0.95 => Implemented,
        /// Nucleus sampling mass.
        top_p: f64 = 0.7 => Implemented,
        /// Keep the k most probable tokens.
        top_k: i64 = 50 => Implemented,
        /// Beam-search width (1 = no beam search).
        num_beams: i64 = 1 => NotImplemented,
        /// Maximum prompt + response tokens; `max_new_tokens` > 0 wins over it.
        max_length: i64 = 1024 => Implemented,
        /// Maximum response tokens.
        max_new_tokens: i64 = 1024 => Implemented,
        /// Repetition penalty (1.0 = none).
        repetition_penalty: f64 = 1.0 => Implemented,
        /// Length penalty of beam search.
        length_penalty: f64 = 1.0 => Ignored(NOTE_BEAMS),
        /// Drop special tokens when decoding.
        skip_special_tokens: bool = true => Implemented,
    }
}

/// Per-request overrides of the decoding settings (an API request's fields); `None` = use the
/// configured value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerateRequest {
    /// Sample or not.
    pub do_sample: Option<bool>,
    /// Temperature.
    pub temperature: Option<f64>,
    /// Nucleus mass.
    pub top_p: Option<f64>,
    /// Top-k.
    pub top_k: Option<i64>,
    /// Number of completions (sampling is forced on when above 1).
    pub num_return_sequences: Option<i64>,
    /// Repetition penalty.
    pub repetition_penalty: Option<f64>,
    /// Length penalty.
    pub length_penalty: Option<f64>,
    /// Drop special tokens when decoding.
    pub skip_special_tokens: Option<bool>,
    /// Maximum prompt + response tokens (0 = not given).
    pub max_length: Option<i64>,
    /// Maximum response tokens (0 = not given).
    pub max_new_tokens: Option<i64>,
    /// Sampling seed (`None`: a fresh seed per call, like torch's default generator).
    pub seed: Option<u64>,
}

/// The settings one generation runs with, as LLaMA-Factory hands them to `GenerationConfig`.
/// `None` means LLaMA-Factory leaves the setting unset (the model's `generation_config.json`,
/// then the library default, decides; with `do_sample` false, temperature and top-p do not
/// matter).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerateConfig {
    /// Sample, or decode greedily.
    pub do_sample: bool,
    /// Temperature (unset when greedy).
    pub temperature: Option<f64>,
    /// Nucleus mass (unset when greedy).
    pub top_p: Option<f64>,
    /// Top-k.
    pub top_k: i64,
    /// Beam-search width (always 1 in lmf).
    pub num_beams: i64,
    /// Maximum prompt + response tokens, when it is the limit in force.
    pub max_length: Option<i64>,
    /// Maximum response tokens, when it is the limit in force.
    pub max_new_tokens: Option<i64>,
    /// Repetition penalty.
    pub repetition_penalty: f64,
    /// Length penalty.
    pub length_penalty: f64,
    /// Number of completions.
    pub num_return_sequences: i64,
    /// Drop special tokens when decoding.
    pub skip_special_tokens: bool,
}

impl GeneratingArguments {
    /// The generation settings for one request, by LLaMA-Factory's rules: `max_new_tokens` > 0
    /// wins over `max_length` (and a request's own limit over both); temperature 0 means greedy;
    /// greedy drops temperature and top-p; several completions force sampling (temperature 0
    /// becomes 1).
    pub fn to_generate_config(&self, request: &GenerateRequest) -> GenerateConfig {
        // GeneratingArguments.to_dict(): keep only one of the two length limits.
        let (mut max_length, mut max_new_tokens) = if self.max_new_tokens > 0 {
            (None, Some(self.max_new_tokens))
        } else {
            (Some(self.max_length), None)
        };
        let num_return_sequences = request.num_return_sequences.unwrap_or(1);
        let mut do_sample = request.do_sample.unwrap_or(self.do_sample);
        let mut temperature = request.temperature.unwrap_or(self.temperature);
        if num_return_sequences > 1 {
            do_sample = true;
            if temperature == 0.0 {
                temperature = 1.0;
            }
        }
        if temperature == 0.0 {
            do_sample = false;
        }
        let top_p = request.top_p.unwrap_or(self.top_p);
        let (temperature, top_p) = if do_sample {
            (Some(temperature), Some(top_p))
        } else {
            (None, None)
        };
        // A request's limits count only when non-zero (Python truthiness); max_new_tokens last.
        if let Some(n) = request.max_length.filter(|&n| n != 0) {
            max_new_tokens = None;
            max_length = Some(n);
        }
        if let Some(n) = request.max_new_tokens.filter(|&n| n != 0) {
            max_length = None;
            max_new_tokens = Some(n);
        }
        GenerateConfig {
            do_sample,
            temperature,
            top_p,
            top_k: request.top_k.unwrap_or(self.top_k),
            num_beams: self.num_beams,
            max_length,
            max_new_tokens,
            repetition_penalty: request
                .repetition_penalty
                .unwrap_or(self.repetition_penalty),
            length_penalty: request.length_penalty.unwrap_or(self.length_penalty),
            num_return_sequences,
            skip_special_tokens: request
                .skip_special_tokens
                .unwrap_or(self.skip_special_tokens),
        }
    }
}
