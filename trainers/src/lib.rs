//! lmf trainers: LLaMA-Factory arguments (YAML + overrides), data (dataset_info, alpaca /
//! sharegpt, templates, encoding, packing), optimizers, schedulers, the shared training loop,
//! stage losses (pt, sft, rm, dpo, kto, ppo), callbacks, checkpoints and monitors. Filled in by
//! the train issue.

pub mod args;
pub mod template;
