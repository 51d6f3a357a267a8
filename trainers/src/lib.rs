//! lmf trainers: LLaMA-Factory arguments (YAML + overrides), data (dataset_info, alpaca /
//! sharegpt, templates, encoding, packing), optimizers, schedulers, the shared training loop,
//! stage losses (pt, sft, rm, dpo, kto, ppo), callbacks, checkpoints and monitors, and the
//! chat engine that `lmf chat` / `lmf api` drive.

pub mod args;
pub mod chat;
pub mod clock;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod export_gptq;
pub mod llama_pro;
pub mod optim;
pub mod template;
pub mod train;
pub mod tuner;

pub use error::{Error, Result};
