//! The arguments of `lmf eval`, read as LLaMA-Factory 0.9.3's `get_eval_args` reads them: the
//! model, data and finetuning groups plus `EvaluationArguments` (`hparams/evaluation_args.py`),
//! then its checks (`save_dir` must not exist yet).

use super::data::DataArguments;
use super::error::{ArgsError, Result};
use super::finetuning::FinetuningArguments;
use super::infer::{check_unknown_keys, env_enabled, verify_model_args};
use super::model::{EngineName, ModelArguments};
use super::raw::{parse_raw, RawArgs};
use super::spec::{lf_args, FieldSpec, Resolver};
use super::value::lf_choice;

lf_choice! {
    /// Language of the evaluation prompts (`lang`).
    pub enum EvalLang {
        /// English (MMLU).
        En = "en",
        /// Chinese (CMMLU, C-Eval).
        Zh = "zh",
    }
}

const NOTE_DOWNLOAD: &str = "lmf reads task folders from `task_dir` and never downloads them";

lf_args! {
    /// LLaMA-Factory's `EvaluationArguments`.
    pub struct EvaluationArguments {
        /// The task and split, `<task>_<split>` (e.g. `mmlu_test`); required.
        task: Option<String> = None => Implemented,
        /// The folder holding the task folders.
        task_dir: String = "evaluation".to_string() => Implemented,
        /// Prompts per forward.
        batch_size: i64 = 4 => Implemented,
        /// Seed of the few-shot draws.
        seed: i64 = 42 => Implemented,
        /// Prompt language.
        lang: EvalLang = EvalLang::En => Implemented,
        /// Few-shot examples per question.
        n_shot: i64 = 5 => Implemented,
        /// Where `results.json` and `results.log` go (must not exist).
        save_dir: Option<String> = None => Implemented,
        /// The `datasets` download mode.
        download_mode: String = "reuse_dataset_if_exists".to_string() => Ignored(NOTE_DOWNLOAD),
    }
}

/// Everything `lmf eval` is configured by (LLaMA-Factory's `_EVAL_ARGS`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalArgs {
    /// Model, adapters.
    pub model: ModelArguments,
    /// Template.
    pub data: DataArguments,
    /// The evaluation settings.
    pub eval: EvaluationArguments,
    /// Fine-tuning method (decides how adapters apply).
    pub finetuning: FinetuningArguments,
    /// Things to tell the user that are not errors.
    pub notes: Vec<String>,
}

/// The field tables of the four evaluation groups, in LLaMA-Factory's order.
pub fn eval_fields() -> Vec<FieldSpec> {
    let mut fields = ModelArguments::fields();
    fields.extend(DataArguments::fields());
    fields.extend(EvaluationArguments::fields());
    fields.extend(FinetuningArguments::fields());
    fields
}

/// Reads `lmf eval` arguments (a YAML/JSON file and `key=value` overrides).
pub fn parse_eval_args(argv: &[String]) -> Result<EvalArgs> {
    EvalArgs::from_raw(&parse_raw(argv)?, env_enabled("ALLOW_EXTRA_ARGS"))
}

impl EvalArgs {
    /// Types and checks raw arguments as `get_eval_args` does.
    pub fn from_raw(raw: &RawArgs, allow_extra_keys: bool) -> Result<Self> {
        let mut notes = Vec::new();
        check_unknown_keys(raw, &eval_fields(), allow_extra_keys, &mut notes)?;
        let mut resolver = Resolver::new(raw);
        let mut model = ModelArguments::from_resolver(&mut resolver)?;
        let mut data = DataArguments::from_resolver(&mut resolver)?;
        let eval = EvaluationArguments::from_resolver(&mut resolver)?;
        let mut finetuning = FinetuningArguments::from_resolver(&mut resolver)?;
        notes.extend(resolver.notes);
        model.post_init()?;
        data.post_init()?;
        finetuning.post_init()?;
        let task = eval.task.as_deref().unwrap_or("");
        if task.is_empty() {
            return Err(ArgsError::Invalid(
                "`task` is required (e.g. `task: mmlu_test`: the task folder `mmlu` in `task_dir` and its `test` split)"
                    .into(),
            ));
        }
        if !task.contains('_') {
            return Err(ArgsError::Invalid(format!(
                "`task: {task}` must be `<task>_<split>` (e.g. `mmlu_test`, `ceval_validation`)"
            )));
        }
        if eval.batch_size < 1 || eval.n_shot < 0 {
            return Err(ArgsError::Invalid(
                "`batch_size` must be at least 1 and `n_shot` at least 0".into(),
            ));
        }
        if let Some(dir) = &eval.save_dir {
            if std::path::Path::new(dir).exists() {
                return Err(ArgsError::Invalid(format!(
                    "`save_dir` already exists, use another one ({dir})."
                )));
            }
        }
        if model.infer_backend != EngineName::Huggingface {
            return Err(ArgsError::Invalid(
                "vLLM/SGLang backend is only available for API, CLI and Web.".into(),
            ));
        }
        verify_model_args(&model, &finetuning)?;
        Ok(EvalArgs {
            model,
            data,
            eval,
            finetuning,
            notes,
        })
    }

    /// The task folder name and the split (`mmlu_test` → `mmlu`, `test`: LF splits at the
    /// first `_`, so task names hold none).
    pub fn task_and_split(&self) -> (&str, &str) {
        let task = self.eval.task.as_deref().unwrap_or("");
        let mut parts = task.split('_');
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }
}
