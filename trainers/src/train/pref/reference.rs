//! The reference model of `stage: dpo` and `stage: kto`, chosen by LLaMA-Factory's rules
//! (`create_ref_model` and the workflows):
//!
//! - `ref_model` given: that model (+ every `ref_model_adapters` merged), frozen;
//! - otherwise, without training (eval only): the model itself;
//! - otherwise LoRA: the policy with its adapter switched off (PEFT's `disable_adapter()`);
//! - otherwise (full / freeze): a frozen copy of `model_name_or_path` as loaded from disk.
//!
//! dpo with `pref_loss` orpo or simpo uses none.

use std::path::Path;

use lmf_autograd::no_grad;
use lmf_models::adapter::without_adapters;
use lmf_models::CausalLM;

use super::{seq_logps, SeqLogps};
use crate::args::finetuning::FinetuningType;
use crate::args::train::TrainArgs;
use crate::data::Example;
use crate::{Error, Result};

/// Where the reference log-probs come from.
pub enum Reference {
    /// No reference model (orpo, simpo).
    None,
    /// The policy as it is (evaluation without training and without `ref_model`).
    Policy,
    /// The policy with its LoRA adapter switched off.
    Adapterless,
    /// A separate frozen model.
    Model(Box<CausalLM>),
}

impl Reference {
    /// Sets up the reference of a run whose policy was loaded from `model_dir` (with
    /// `model.dtype` on `model.device`); `needed` is false for orpo / simpo.
    pub fn for_run(
        args: &TrainArgs,
        policy: &CausalLM,
        model_dir: &Path,
        needed: bool,
    ) -> Result<Reference> {
        if !needed {
            return Ok(Reference::None);
        }
        let f = &args.finetuning;
        if let Some(name) = &f.ref_model {
            let dir = args.model.resolve_dir(name)?;
            let mut model = CausalLM::load(&dir, policy.dtype, policy.device)?;
            if let Some(list) = &f.ref_model_adapters {
                for a in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    model.load_adapter(&args.model.resolve_dir(a)?, false)?;
                    model.merge_adapter()?;
                }
            }
            model.set_trainable(|_| false);
            return Ok(Reference::Model(Box::new(model)));
        }
        if !args.training.do_train {
            return Ok(Reference::Policy);
        }
        match f.finetuning_type {
            FinetuningType::Lora => {
                if f.additional_target.is_some() {
                    return Err(Error::Msg(
                        "`additional_target` with stage dpo / kto needs a `ref_model`: the \
                         switched-off adapter cannot restore the fully trained modules"
                            .into(),
                    ));
                }
                Ok(Reference::Adapterless)
            }
            _ => {
                let mut model = CausalLM::load(model_dir, policy.dtype, policy.device)?;
                model.set_trainable(|_| false);
                Ok(Reference::Model(Box::new(model)))
            }
        }
    }

    /// Whether there is a reference at all.
    pub fn is_some(&self) -> bool {
        !matches!(self, Reference::None)
    }

    /// Whether the reference is the policy itself (LF then drops the `rewards` metrics of an
    /// evaluation: they are all zero).
    pub fn is_policy(&self) -> bool {
        matches!(self, Reference::Policy)
    }

    /// The reference's sequence log-probs of `rows` (no gradient), `None` without reference.
    pub fn seq_logps(
        &self,
        policy: &CausalLM,
        rows: &[&Example],
        first_row: usize,
    ) -> Result<Option<SeqLogps>> {
        self.run(policy, |m| seq_logps(m, rows, first_row, false))
    }

    /// Runs `f` on the reference model without recording (the policy inside
    /// `without_adapters` for a LoRA run); `None` without reference.
    pub fn run<T>(
        &self,
        policy: &CausalLM,
        f: impl FnOnce(&CausalLM) -> Result<T>,
    ) -> Result<Option<T>> {
        no_grad(|| match self {
            Reference::None => Ok(None),
            Reference::Policy => f(policy).map(Some),
            Reference::Adapterless => without_adapters(|| f(policy)).map(Some),
            Reference::Model(m) => f(m).map(Some),
        })
    }
}
