//! Datasets as LLaMA-Factory reads and encodes them: `dataset_info.json` entries, loading local
//! files, converting alpaca / sharegpt / openai rows to the unified messages form, encoding
//! (supervised, unsupervised, pre-training, pairwise, feedback), packing, mixing, the validation
//! split, the `tokenized_path` cache, and the encoded rows the trainers consume ([`Example`];
//! [`PairExample`] for rm and dpo, [`KtoExample`] for kto). [`get_dataset`] (pt, sft) and
//! [`get_stage_dataset`] (every implemented stage) run the whole path.

pub mod cache;
pub mod convert;
pub mod dataset_info;
pub mod encode;
mod encoder;
pub mod example;
pub mod get;
pub mod load;
pub mod mix;
pub mod numpy_rng;
pub mod pack;
pub mod preference;
pub mod pretrain;
pub mod stream;

pub use convert::{convert_row, Converted};
pub use dataset_info::{get_dataset_list, DatasetAttr, Formatting, LoadFrom, DATA_CONFIG};
pub use encode::{encode_supervised, encode_unsupervised, infer_seqlen, SupervisedOptions};
pub use example::{
    DatasetModule, EncodedRow, EpochRows, Example, KtoExample, PairExample, IGNORE_INDEX,
};
pub use get::{get_dataset, get_stage_dataset, DataOptions, StageDataset};
pub use load::{load_dataset, LoadedDataset, RowOrigin};
pub use pack::{greedy_knapsack, pack_supervised};
pub use preference::{encode_feedback, encode_pairwise, is_preference};
