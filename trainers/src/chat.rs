//! LLaMA-Factory's `ChatModel` with its Hugging Face engine, on lmf: the model and tokenizer
//! from `model_name_or_path` (a folder or a hub id), the template fixed onto the tokenizer,
//! and one reply per call — the prompt is the conversation plus an empty assistant turn
//! encoded by the template, decoding stops at the template's stop tokens, and the
//! settings follow LLaMA-Factory's `_process_args` (a fresh generation config built from the
//! generating arguments, not the model's `generation_config.json`).

use crate::args::model::InferDtype;
use crate::args::{
    DataArguments, FinetuningArguments, GenerateRequest, GeneratingArguments, InferArgs,
    ModelArguments,
};
use crate::template::{Message, Role, Template};
use crate::tuner::setup_lora;
use crate::{Error, Result};
use lmf_models::{generate, CausalLM, GenerationConfig, TextStreamer, Tokenizer};
use lmf_runtime::{DType, Device};

/// Why a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was generated.
    Stop,
    /// The token limit was reached.
    Length,
}

/// One reply (LLaMA-Factory's `Response`).
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// Decoded reply.
    pub response_text: String,
    /// Generated tokens, the stop token included.
    pub token_ids: Vec<u32>,
    /// Number of generated tokens.
    pub response_length: usize,
    /// Number of prompt tokens.
    pub prompt_length: usize,
    /// Why generation ended.
    pub finish_reason: FinishReason,
}

/// How one request decodes: the settings of each sequence, how replies are decoded to text,
/// and how many replies (`num_return_sequences`, the API's `n`) to make.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeSettings {
    /// Decoding settings of each reply (the same for all `n`).
    pub cfg: GenerationConfig,
    /// Drop special tokens from the text.
    pub skip_special_tokens: bool,
    /// Number of replies.
    pub n: usize,
}

/// A loaded model ready to chat.
pub struct ChatModel {
    /// The causal LM.
    pub model: CausalLM,
    /// Its tokenizer, fixed for the template.
    pub tokenizer: Tokenizer,
    /// The chat template.
    pub template: Template,
    /// Decoding settings.
    pub generating: GeneratingArguments,
}

impl ChatModel {
    /// Loads what `args` names (LLaMA-Factory's `ChatModel(args)`).
    pub fn from_args(args: &InferArgs) -> Result<ChatModel> {
        let (model, tokenizer, template) =
            load_for_inference(&args.model, &args.data, &args.finetuning)?;
        Ok(ChatModel {
            model,
            tokenizer,
            template,
            generating: args.generating.clone(),
        })
    }

    /// Prompt ids of a conversation that ends with a user (or observation) turn.
    pub fn encode_prompt(
        &self,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
    ) -> Result<Vec<u32>> {
        let mut paired = messages.to_vec();
        paired.push(Message::new(Role::Assistant, ""));
        let (prompt, _) = self
            .template
            .encode_oneturn(&self.tokenizer, &paired, system, tools)?;
        Ok(prompt)
    }

    /// The decoding settings of one request, LLaMA-Factory's way (`n` replies sample:
    /// LLaMA-Factory turns sampling on when `num_return_sequences` > 1).
    pub fn decode_settings(
        &self,
        request: &GenerateRequest,
        prompt_len: usize,
    ) -> Result<DecodeSettings> {
        let g = self.generating.to_generate_config(request);
        if g.num_return_sequences < 1 {
            return Err(Error::Msg(format!(
                "num_return_sequences must be at least 1, got {}",
                g.num_return_sequences
            )));
        }
        let max_new = match (g.max_new_tokens, g.max_length) {
            (Some(n), _) => n.max(0) as usize,
            (None, Some(total)) => (total.max(0) as usize).saturating_sub(prompt_len),
            // HF's GenerationConfig default max_length is 20 tokens in total
            (None, None) => 20usize.saturating_sub(prompt_len),
        };
        let cfg = GenerationConfig {
            max_new_tokens: max_new,
            do_sample: g.do_sample,
            temperature: g.temperature.unwrap_or(1.0),
            top_p: g.top_p.unwrap_or(1.0),
            top_k: g.top_k.max(0) as usize,
            repetition_penalty: g.repetition_penalty,
            eos_token_ids: self.template.stop_token_ids(&self.tokenizer),
            seed: request.seed.unwrap_or_else(rand_seed),
        };
        Ok(DecodeSettings {
            cfg,
            skip_special_tokens: g.skip_special_tokens,
            n: g.num_return_sequences as usize,
        })
    }

    /// Generates a reply, calling `on_text` with each printable piece as it is decoded (the
    /// pieces LLaMA-Factory's streamer yields).
    pub fn stream_chat(
        &self,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
        request: &GenerateRequest,
        mut on_text: impl FnMut(&str),
    ) -> Result<Response> {
        let prompt = self.encode_prompt(messages, system, tools)?;
        let settings = self.decode_settings(request, prompt.len())?;
        if settings.n != 1 {
            return Err(Error::Msg(
                "num_return_sequences > 1 is served by `lmf api` (n), not by chat".into(),
            ));
        }
        let (cfg, skip_special) = (settings.cfg, settings.skip_special_tokens);
        let mut streamer = TextStreamer::new(&self.tokenizer, skip_special);
        let mut stream_err = None;
        let out = generate(
            &self.model,
            std::slice::from_ref(&prompt),
            &cfg,
            |_, tok| {
                if stream_err.is_none() {
                    match streamer.put(tok) {
                        Ok(piece) if !piece.is_empty() => on_text(&piece),
                        Ok(_) => {}
                        Err(e) => stream_err = Some(e),
                    }
                }
            },
        )?;
        if let Some(e) = stream_err {
            return Err(e.into());
        }
        let rest = streamer.finish()?;
        if !rest.is_empty() {
            on_text(&rest);
        }
        let ids = out.into_iter().next().unwrap_or_default();
        let finish_reason = match ids.last() {
            Some(t) if cfg.eos_token_ids.contains(t) => FinishReason::Stop,
            _ => FinishReason::Length,
        };
        Ok(Response {
            response_text: self.tokenizer.decode(&ids, skip_special)?,
            response_length: ids.len(),
            prompt_length: prompt.len(),
            token_ids: ids,
            finish_reason,
        })
    }

    /// Generates a reply without streaming.
    pub fn chat(
        &self,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
    ) -> Result<Response> {
        self.stream_chat(messages, system, tools, &GenerateRequest::default(), |_| {})
    }
}

/// The model, tokenizer and template an inference command loads (LLaMA-Factory's
/// `load_tokenizer` + `get_template_and_fix_tokenizer` + `load_model` without training):
/// every adapter is merged into the weights (`_setup_lora_tuning`). On the CPU (where
/// LLaMA-Factory's `auto` is float32) `infer_dtype: bfloat16` keeps the linear weights and the
/// head in bf16 ([`CausalLM::keep_weights_bf16`]: half the bytes per decoded token, bf16
/// products with f32 sums, as a bf16 torch model there); anything else computes in f32.
pub fn load_for_inference(
    m: &ModelArguments,
    d: &DataArguments,
    finetuning: &FinetuningArguments,
) -> Result<(CausalLM, Tokenizer, Template)> {
    let name = m
        .model_name_or_path
        .as_deref()
        .ok_or_else(|| Error::Msg("`model_name_or_path` is required".into()))?;
    let dir = m.resolve_dir(name)?;
    let mut tokenizer = Tokenizer::from_dir(&dir)?;
    let options = d.template_options();
    let template = Template::for_tokenizer(d.template.as_deref(), &mut tokenizer, &options)?;
    let quant = m.quant_spec()?;
    let mut model = CausalLM::load_quantized(&dir, DType::F32, Device::Cpu, quant.as_ref())?;
    setup_lora(&mut model, m, finetuning, false, 0)?;
    match m.infer_dtype {
        InferDtype::Bfloat16 => {
            model.keep_weights_bf16()?;
        }
        InferDtype::Float16 => eprintln!(
            "note: `infer_dtype: float16` computes in float32 on the CPU (lmf has no fp16 CPU \
             kernels; `bfloat16` keeps the weights in bf16)"
        ),
        InferDtype::Auto | InferDtype::Float32 => {}
    }
    Ok((model, tokenizer, template))
}

/// A sampling seed that differs between runs (like torch's default generator state).
fn rand_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ std::process::id() as u64
}
