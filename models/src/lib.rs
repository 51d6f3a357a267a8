//! lmf models: Hugging Face `config.json` + safetensors loading, the architectures (Llama,
//! Mistral, Qwen2/3, Gemma, GPT-OSS, ...) built on `lmf-autograd` with HF tensor names,
//! the tokenizer, adapters (LoRA, DoRA, PiSSA, freeze, LLaMA Pro), quantized linears and
//! generation (KV cache, sampling). Knows nothing of datasets or YAML.

pub mod adapter;
pub mod batch;
pub mod config;
pub mod decode;
pub mod error;
pub mod generate;
pub mod gptq;
pub mod hub;
pub mod model;
pub mod quantize;
pub mod streamer;
pub mod tokenizer;
pub mod value_head;
pub mod weights;

pub use adapter::{LoraConfig, LoraInit};
pub use batch::SeqBatch;
pub use config::{Arch, ModelConfig};
pub use decode::{DecodeBatch, Emitted, Finish};
pub use error::{Error, Result};
pub use generate::{generate, sampling_distribution, GenerationConfig};
pub use model::{CausalLM, KvCache};
pub use quantize::QuantSpec;
pub use streamer::TextStreamer;
pub use tokenizer::Tokenizer;
pub use value_head::ValueHead;
pub use weights::Weights;
