//! The encoded form every stage trains on: one row of token ids with its labels, attention
//! segments and RoPE positions, as LLaMA-Factory's dataset processors (after packing) and
//! collators hand it to the model. The trainer turns a list of these into a varlen
//! [`lmf_models::SeqBatch`] (no padding is ever materialised). Preference stages pair them:
//! [`PairExample`] (rm, dpo: LF's pairwise processor) and [`KtoExample`] (kto: LF's feedback
//! processor).

use crate::Result;
use std::sync::Arc;

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

/// One pairwise row (stages rm and dpo; LF's `chosen_*` and `rejected_*` columns): the same
/// prompt (cut to the same length) followed by the chosen and by the rejected response.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairExample {
    /// Prompt + chosen response (`chosen_input_ids`, `chosen_labels`).
    pub chosen: Example,
    /// Prompt + rejected response (`rejected_input_ids`, `rejected_labels`).
    pub rejected: Example,
}

/// One feedback row (stage kto; LF's `input_ids`/`labels`, `kl_input_ids`/`kl_labels`,
/// `kto_tags`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KtoExample {
    /// Prompt + the row's own response.
    pub example: Example,
    /// The mismatched pair for the KL estimate: this row's prompt with the response of the
    /// previous row of its preprocessing batch (the batch's last row for its first row).
    pub kl: Example,
    /// The kto tag: true for a desirable response, false for an undesirable one.
    pub desirable: bool,
}

/// A kind of encoded row a stage trains on; [`DatasetModule`] holds rows of one kind.
pub trait EncodedRow:
    Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned
{
    /// The kind's name (recorded in a `tokenized_path` folder, named in errors).
    const KIND: &'static str;

    /// Checks the shape of a row read back from disk; says what is wrong.
    fn check(&self) -> std::result::Result<(), String>;
}

impl Example {
    fn check_shape(&self) -> std::result::Result<(), String> {
        let total: usize = self.segments.iter().sum();
        if self.position_ids.len() != self.input_ids.len() || total != self.input_ids.len() {
            return Err("segments / position_ids do not match input_ids".into());
        }
        Ok(())
    }
}

impl EncodedRow for Example {
    const KIND: &'static str = "example";

    fn check(&self) -> std::result::Result<(), String> {
        self.check_shape()
    }
}

impl EncodedRow for PairExample {
    const KIND: &'static str = "pairwise";

    fn check(&self) -> std::result::Result<(), String> {
        self.chosen
            .check_shape()
            .map_err(|e| format!("chosen: {e}"))?;
        self.rejected
            .check_shape()
            .map_err(|e| format!("rejected: {e}"))
    }
}

impl EncodedRow for KtoExample {
    const KIND: &'static str = "feedback";

    fn check(&self) -> std::result::Result<(), String> {
        self.example.check_shape()?;
        self.kl.check_shape().map_err(|e| format!("kl: {e}"))
    }
}

/// The datasets of one run (LLaMA-Factory `DatasetModule`), with rows of kind `R`: [`Example`]
/// for pt and sft, [`PairExample`] for rm and dpo, [`KtoExample`] for kto.
#[derive(Clone, Debug)]
pub struct DatasetModule<R = Example> {
    /// Training rows (empty unless `do_train`).
    pub train: Vec<R>,
    /// Evaluation sets: one unnamed `("", rows)` set (`eval_dataset` merged, or the `val_size`
    /// split), or one per `eval_dataset` name with `eval_on_each_dataset` (HF reports
    /// `eval_{name}_loss` then).
    pub eval: Vec<(String, Vec<R>)>,
    /// With `streaming: true`, each epoch's training rows (`train` then holds epoch 0's).
    pub stream: Option<EpochRows<R>>,
}

/// The training rows of each epoch of a streaming run, as a function of the epoch.
pub struct EpochRows<R>(Arc<EpochFn<R>>);

type EpochFn<R> = dyn Fn(u64) -> Result<Vec<R>> + Send + Sync;

impl<R> EpochRows<R> {
    /// Rows from `f(epoch)`.
    pub fn new(f: impl Fn(u64) -> Result<Vec<R>> + Send + Sync + 'static) -> EpochRows<R> {
        EpochRows(Arc::new(f))
    }

    /// The rows of `epoch`, in the order they are trained on.
    pub fn rows(&self, epoch: u64) -> Result<Vec<R>> {
        (self.0)(epoch)
    }
}

impl<R> Clone for EpochRows<R> {
    fn clone(&self) -> Self {
        EpochRows(Arc::clone(&self.0))
    }
}

impl<R> std::fmt::Debug for EpochRows<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EpochRows")
    }
}

impl<R> Default for DatasetModule<R> {
    fn default() -> Self {
        DatasetModule {
            train: Vec::new(),
            stream: None,
            eval: Vec::new(),
        }
    }
}
