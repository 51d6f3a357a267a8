//! Datasets as LLaMA-Factory describes them: `dataset_info.json` entries and the encoded
//! [`Example`] rows the trainer consumes (loading, converting to messages, encoding and
//! packing come with `lmf train`).

pub mod dataset_info;
pub mod example;

pub use dataset_info::{get_dataset_list, DatasetAttr, Formatting, LoadFrom, DATA_CONFIG};
pub use example::{DatasetModule, Example, IGNORE_INDEX};
