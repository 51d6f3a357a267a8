//! LLaMA-Factory-compatible arguments: a first `.yaml`/`.yml`/`.json` config file, then
//! `key=value` overrides or `--key value` flags, read into LLaMA-Factory's argument groups with
//! its exact field names, types and defaults.
//!
//! Every field of every group is declared (see [`spec::Status`]): lmf either implements it, or
//! knows it and refuses a non-default value with a clear "not implemented yet" error, so later
//! work only flips statuses. Unknown keys fail with the closest known key.
//!
//! - [`raw`]: the untyped first pass (file + command line, later wins, origin of each key).
//! - [`model`], [`data`], [`finetuning`], [`generating`]: one file per LLaMA-Factory dataclass.
//! - [`infer`]: `get_infer_args`, what `lmf chat` / `lmf api` use.
//! - [`training`]: `TrainingArguments` (HF `Seq2SeqTrainingArguments` + LLaMA-Factory's
//!   extras); [`multi`] holds its list / union value shapes.
//! - [`ranges`]: the numeric range checks both make right after reading.
//! - [`train`]: `get_train_args`, what `lmf train` uses (reuses [`infer::check_unknown_keys`]).

pub mod closest;
pub mod data;
pub mod error;
pub mod evaluation;
pub mod finetuning;
pub mod generating;
pub mod infer;
pub mod model;
pub mod multi;
pub mod ranges;
pub mod raw;
pub mod spec;
pub mod train;
pub mod training;
pub mod value;

pub use data::DataArguments;
pub use error::{ArgsError, Origin, Result};
pub use evaluation::{parse_eval_args, EvalArgs, EvaluationArguments};
pub use finetuning::FinetuningArguments;
pub use generating::{GenerateConfig, GenerateRequest, GeneratingArguments};
pub use infer::{parse_infer_args, InferArgs};
pub use model::ModelArguments;
pub use raw::{parse_raw, RawArgs, RawValue};
pub use spec::{FieldSpec, Status};
pub use train::{parse_train_args, TrainArgs};
pub use training::{training_fields, TrainingArguments};
