//! lmf models: Hugging Face `config.json` + safetensors loading, the architectures (Llama,
//! Mistral, Qwen2/3, Gemma, GPT-OSS, ...) built on `lmf-autograd` with HF tensor names,
//! the tokenizer, adapters (LoRA, DoRA, PiSSA, freeze, LLaMA Pro), quantized linears and
//! generation (KV cache, sampling). Knows nothing of datasets or YAML.

pub mod error;
pub mod tokenizer;

pub use error::{Error, Result};
