//! The encoded form every stage trains on: one row of token ids with its labels, attention
//! segments and RoPE positions, as LLaMA-Factory's dataset processors (after packing) and
//! collators hand it to the model. The trainer turns a list of these into a varlen
//! [`lmf_models::SeqBatch`] (no padding is ever materialised).

/// Label of a token that carries no loss (HF/LLaMA-Factory `IGNORE_INDEX`).
pub const IGNORE_INDEX: i64 = -100;

/// One encoded row.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// One label per token, NOT shifted (the loss shifts, as HF does); [`IGNORE_INDEX`] where
    /// no loss. For `do_predict` rows (LLaMA-Factory's unsupervised processor) these are the
    /// reference answer's ids instead, and may differ in length from `input_ids`.
    pub labels: Vec<i64>,
    /// Attention segments: lengths summing to `input_ids.len()`; a token attends only to
    /// earlier tokens of its own segment. One segment for an unpacked row.
    pub segments: Vec<usize>,
    /// RoPE position of each token.
    pub position_ids: Vec<u32>,
}

impl Example {
    /// An unpacked row: one segment, positions `0..len`.
    pub fn single(input_ids: Vec<u32>, labels: Vec<i64>) -> Example {
        let n = input_ids.len();
        Example {
            input_ids,
            labels,
            segments: vec![n],
            position_ids: (0..n as u32).collect(),
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// True when the row has no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// The datasets of one run (LLaMA-Factory `DatasetModule`).
#[derive(Clone, Debug, Default)]
pub struct DatasetModule {
    /// Training rows (empty unless `do_train`).
    pub train: Vec<Example>,
    /// Evaluation sets: one unnamed `("", rows)` set (`eval_dataset` merged, or the `val_size`
    /// split), or one per `eval_dataset` name with `eval_on_each_dataset` (HF reports
    /// `eval_{name}_loss` then).
    pub eval: Vec<(String, Vec<Example>)>,
}
