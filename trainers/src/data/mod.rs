//! Datasets as LLaMA-Factory reads and encodes them: `dataset_info.json` entries, loading local
//! files, converting alpaca / sharegpt / openai rows to the unified messages form, encoding
//! (supervised, unsupervised, pre-training), packing, mixing, the validation split, the
//! `tokenized_path` cache, and the encoded [`Example`] rows the trainer consumes.
//! [`get_dataset`] runs the whole path.

pub mod cache;
pub mod convert;
pub mod dataset_info;
pub mod encode;
pub mod example;
pub mod get;
pub mod load;
pub mod mix;
pub mod numpy_rng;
pub mod pack;
pub mod pretrain;

pub use convert::{convert_row, Converted};
pub use dataset_info::{get_dataset_list, DatasetAttr, Formatting, LoadFrom, DATA_CONFIG};
pub use encode::{encode_supervised, encode_unsupervised, infer_seqlen, SupervisedOptions};
pub use example::{DatasetModule, Example, IGNORE_INDEX};
pub use get::{get_dataset, DataOptions};
pub use load::{load_dataset, LoadedDataset, RowOrigin};
pub use pack::{greedy_knapsack, pack_supervised};
