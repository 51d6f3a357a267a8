//! Datasets as LLaMA-Factory describes them: `dataset_info.json` entries (more of the data
//! path — loading, converting to messages, encoding, packing — comes with `lmf train`).

pub mod dataset_info;

pub use dataset_info::{get_dataset_list, DatasetAttr, Formatting, LoadFrom, DATA_CONFIG};
