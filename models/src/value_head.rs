//! The scalar value head of reward models (`stage: rm`, PPO's critic): TRL's `ValueHead`
//! (`v_head.summary`: `Linear(hidden, 1)` with bias, after a dropout whose probability is the
//! model config's `summary_dropout_prob`, 0.1 when absent), as LLaMA-Factory wraps every
//! causal LM for those stages. Saved as LLaMA-Factory saves it: `value_head.safetensors` with
//! `v_head.summary.weight` `[1, hidden]` and `v_head.summary.bias` `[1]`, next to the adapter or
//! the model.
//!
//! A reward model's score of a sequence is the value at its last token (LF's pairwise trainer
//! gathers `values` at `attention_mask.sum() − 1` of right-padded rows): [`ValueHead::scores`]
//! evaluates the head only at those tokens.

use std::path::Path;

use lmf_autograd::{Tensor, Var};
use lmf_runtime::{DType, Device};

use crate::adapter::io::write_safetensors;
use crate::model::linear::is_training;
use crate::{Error, Result, Weights};

/// LLaMA-Factory's `V_HEAD_SAFE_WEIGHTS_NAME`.
pub const VALUE_HEAD_FILE: &str = "value_head.safetensors";
/// Parameter name of the head's weight (`[1, hidden]`).
pub const WEIGHT: &str = "v_head.summary.weight";
/// Parameter name of the head's bias (`[1]`).
pub const BIAS: &str = "v_head.summary.bias";

/// Whether `name` is a value-head parameter (kept out of the model's own weight files).
pub fn is_value_head_param(name: &str) -> bool {
    name.starts_with("v_head.")
}

/// TRL's dropout default when the config has no `summary_dropout_prob`.
pub const DEFAULT_SUMMARY_DROPOUT: f64 = 0.1;

/// TRL's dropout of the value head for the model in `dir`: `summary_dropout_prob` of its
/// `config.json` when set, else [`DEFAULT_SUMMARY_DROPOUT`].
pub fn summary_dropout(dir: &Path) -> Result<f64> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Msg(format!("{}: invalid JSON: {e}", path.display())))?;
    match v.get("summary_dropout_prob") {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_SUMMARY_DROPOUT),
        Some(p) => match p.as_f64() {
            Some(p) if (0.0..1.0).contains(&p) => Ok(p),
            _ => Err(Error::Msg(format!(
                "{}: `summary_dropout_prob` must be a number in [0, 1) (got {p})",
                path.display()
            ))),
        },
    }
}

/// `v_head.summary` and its dropout.
#[derive(Clone)]
pub struct ValueHead {
    /// `[1, hidden]`.
    pub weight: Var,
    /// `[1]`.
    pub bias: Var,
    /// Dropout probability on the hidden state, applied while training.
    pub dropout: f64,
}

impl ValueHead {
    /// A fresh head as `nn.Linear(hidden, 1)` initialises one: weight and bias uniform in
    /// `±1/√hidden`, drawn from Philox `(seed, 0..)` (torch's own draw cannot be reproduced;
    /// the distribution is the same).
    pub fn new(hidden: usize, dropout: f64, seed: u64, device: Device) -> Result<ValueHead> {
        let bound = 1.0 / (hidden.max(1) as f64).sqrt();
        let uniform = |offset: u64, shape: &[usize]| -> Result<Var> {
            let u = Tensor::rand(seed, offset, shape, DType::F32, device)?;
            Ok(Var::param(u.affine(2.0 * bound, -bound)?))
        };
        Ok(ValueHead {
            weight: uniform(0, &[1, hidden])?,
            bias: uniform(hidden as u64, &[1])?,
            dropout,
        })
    }

    /// The head saved in `dir/value_head.safetensors`, if that file exists; its hidden size
    /// must be `hidden`.
    pub fn load(
        dir: &Path,
        hidden: usize,
        dropout: f64,
        device: Device,
    ) -> Result<Option<ValueHead>> {
        let zeros = |shape: &[usize]| -> Result<Var> {
            Ok(Var::param(Tensor::zeros(shape, DType::F32, device)?))
        };
        let mut head = ValueHead {
            weight: zeros(&[1, hidden])?,
            bias: zeros(&[1])?,
            dropout,
        };
        Ok(head.read_from(dir)?.then_some(head))
    }

    /// Overwrites this head's values with `dir/value_head.safetensors` (resuming), keeping
    /// its variables and their `requires_grad`; false when the file does not exist.
    pub fn read_from(&mut self, dir: &Path) -> Result<bool> {
        let path = dir.join(VALUE_HEAD_FILE);
        if !path.is_file() {
            return Ok(false);
        }
        let w = Weights::from_files(std::slice::from_ref(&path))?;
        for (name, var) in [(WEIGHT, &mut self.weight), (BIAS, &mut self.bias)] {
            let t = w.load(name, var.shape(), var.dtype(), var.device())?;
            *var.tensor_mut() = t;
        }
        Ok(true)
    }

    /// Writes `dir/value_head.safetensors` (through a temporary name).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_safetensors(
            &dir.join(VALUE_HEAD_FILE),
            &[
                (
                    WEIGHT.to_string(),
                    self.weight.tensor().to_dtype(DType::F32)?,
                ),
                (BIAS.to_string(), self.bias.tensor().to_dtype(DType::F32)?),
            ],
        )
    }

    /// The values at the tokens `at` of `hidden: [tokens, hidden]` (the last token of each
    /// sequence): `[at.len()]`, f32. Dropout applies while training (`set_training(true)`).
    pub fn scores(&self, hidden: &Var, at: &[usize]) -> Result<Var> {
        let tokens = hidden.shape()[0];
        if let Some(&bad) = at.iter().find(|&&t| t >= tokens) {
            return Err(Error::Msg(format!(
                "value head: token {bad} is outside the {tokens} tokens of the batch"
            )));
        }
        let ids: Vec<i64> = at.iter().map(|&t| t as i64).collect();
        let ids = Tensor::from_vec(ids, &[at.len()], hidden.tensor().device())?;
        let mut h = hidden.index_select(&ids, 0)?.to_dtype(DType::F32)?; // [n, hidden]
        if is_training() && self.dropout > 0.0 {
            h = h.dropout(self.dropout)?;
        }
        // [n, hidden]·[hidden, 1] + bias → [n]
        let v = h
            .matmul(&self.weight.t()?)?
            .add(&self.bias.broadcast_as(&[at.len(), 1])?)?;
        Ok(v.reshape(&[at.len()])?)
    }
}
