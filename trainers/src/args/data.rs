//! `DataArguments` (LLaMA-Factory `hparams/data_args.py`): template, datasets, cutoff, packing
//! and the chat-template options used at inference (`default_system`, `enable_thinking`,
//! `tool_format`).

use super::error::{ArgsError, Result};
use super::spec::lf_args;
use super::value::lf_choice;

lf_choice! {
    /// How several datasets are mixed (`mix_strategy`).
    pub enum MixStrategy {
        /// One after another.
        Concat = "concat",
        /// Interleaved, stopping at the shortest (undersampling).
        InterleaveUnder = "interleave_under",
        /// Interleaved, until the longest is used up (oversampling).
        InterleaveOver = "interleave_over",
        /// Interleaved, sampling without replacement.
        InterleaveOnce = "interleave_once",
    }
}

lf_args! {
    /// What data and which chat template to use (LLaMA-Factory `DataArguments`).
    pub struct DataArguments {
        /// Chat template name (built in, or from `template_file`); none = the tokenizer's own
        /// chat template.
        template: Option<String> = None => Implemented,
        /// A YAML/JSON file of chat templates written with register_template's fields;
        /// `template` may name them, and they replace built-in templates of the same name.
        template_file: Option<String> = None => LmfOnly,
        /// Training datasets, comma-separated names from dataset_info.json.
        dataset: Option<Vec<String>> = None => Implemented,
        /// Evaluation datasets, comma-separated.
        eval_dataset: Option<Vec<String>> = None => Implemented,
        /// Folder holding the datasets and dataset_info.json.
        dataset_dir: String = "data".to_string() => Implemented,
        /// Folder of images, videos and audios (default: `dataset_dir`).
        media_dir: Option<String> = None => NotImplemented,
        /// Maximum tokens of an encoded example.
        cutoff_len: i64 = 2048 => Implemented,
        /// Train on the prompt tokens too.
        train_on_prompt: bool = false => Implemented,
        /// Train on the last turn only.
        mask_history: bool = false => Implemented,
        /// Stream the datasets.
        streaming: bool = false => Implemented,
        /// Shuffle buffer size when streaming.
        buffer_size: i64 = 16384 => Implemented,
        /// How several datasets are mixed.
        mix_strategy: MixStrategy = MixStrategy::Concat => Implemented,
        /// Sampling probabilities of interleaved datasets, comma-separated.
        interleave_probs: Option<Vec<f64>> = None => Implemented,
        /// Rebuild cached preprocessed datasets.
        overwrite_cache: bool = false => Ignored("lmf keeps no preprocessing cache besides tokenized_path"),
        /// Examples per preprocessing batch.
        preprocessing_batch_size: i64 = 1000 => Implemented,
        /// Preprocessing worker processes.
        preprocessing_num_workers: Option<i64> = None => Ignored("lmf encodes in one process"),
        /// Keep only the first N examples of each dataset.
        max_samples: Option<i64> = None => Implemented,
        /// Beams used for evaluation generation.
        eval_num_beams: Option<i64> = None => NotImplemented,
        /// Mask pad tokens out of the loss.
        ignore_pad_token_for_loss: bool = true => NotImplemented,
        /// Validation split: a fraction in [0, 1) or a count.
        val_size: f64 = 0.0 => Implemented,
        /// Evaluate each dataset separately.
        eval_on_each_dataset: bool = false => Implemented,
        /// Pack sequences (default: on for pre-training only).
        packing: Option<bool> = None => Implemented,
        /// Pack without attention across sequences.
        neat_packing: bool = false => Implemented,
        /// Tool-call format overriding the template's.
        tool_format: Option<String> = None => Implemented,
        /// System message overriding the template's default.
        default_system: Option<String> = None => Implemented,
        /// Thinking mode of reasoning templates.
        enable_thinking: Option<bool> = Some(true) => Implemented,
        /// Keep thinking content in earlier turns.
        preserve_thinking: bool = false => Implemented,
        /// Where to save or load tokenized datasets.
        tokenized_path: Option<String> = None => Implemented,
        /// Datasets live on a shared file system.
        data_shared_file_system: bool = false => Ignored("lmf loads datasets in one process"),
    }
}

impl DataArguments {
    /// The chat-template options these arguments set (`tool_format`, `default_system`,
    /// `enable_thinking`, `preserve_thinking`, `template_file`).
    pub fn template_options(&self) -> crate::template::TemplateOptions {
        crate::template::TemplateOptions {
            tool_format: self.tool_format.clone(),
            default_system: self.default_system.clone(),
            enable_thinking: self.enable_thinking,
            preserve_thinking: self.preserve_thinking,
            template_file: self.template_file.as_ref().map(std::path::PathBuf::from),
        }
    }

    /// LLaMA-Factory's `__post_init__`: its checks, `media_dir` defaulting to `dataset_dir`, and
    /// its packing adjustments (`neat_packing` turns `packing` on; packing takes one token off
    /// `cutoff_len`, which LLaMA-Factory does to leave room for padding to a multiple).
    pub fn post_init(&mut self) -> Result<()> {
        if self.media_dir.is_none() {
            self.media_dir = Some(self.dataset_dir.clone());
        }
        if self.dataset.is_none() && self.val_size > 1e-6 {
            return Err(invalid("cannot specify `val_size` if `dataset` is None"));
        }
        if self.eval_dataset.is_some() && self.val_size > 1e-6 {
            return Err(invalid(
                "cannot specify `val_size` if `eval_dataset` is not None",
            ));
        }
        if let Some(probs) = &self.interleave_probs {
            if self.mix_strategy == MixStrategy::Concat {
                return Err(invalid(
                    "`interleave_probs` is only valid for interleaved mixing",
                ));
            }
            if self
                .dataset
                .as_ref()
                .is_some_and(|d| d.len() != probs.len())
            {
                return Err(invalid(
                    "`dataset` and `interleave_probs` must have the same length",
                ));
            }
            if self
                .eval_dataset
                .as_ref()
                .is_some_and(|d| d.len() != probs.len())
            {
                return Err(invalid(
                    "`eval_dataset` and `interleave_probs` must have the same length",
                ));
            }
        }
        if self.streaming && self.val_size > 1e-6 && self.val_size < 1.0 {
            return Err(invalid("Streaming mode should have an integer val size."));
        }
        if self.streaming && self.max_samples.is_some() {
            return Err(invalid("`max_samples` is incompatible with `streaming`."));
        }
        if self.streaming && self.buffer_size < 1 {
            return Err(invalid(&format!(
                "buffer_size must be at least 1 in streaming mode, got {}",
                self.buffer_size
            )));
        }
        if self.mask_history && self.train_on_prompt {
            return Err(invalid(
                "`mask_history` is incompatible with `train_on_prompt`",
            ));
        }
        if self.neat_packing {
            self.packing = Some(true);
        }
        if self.packing == Some(true) {
            self.cutoff_len -= 1;
        }
        Ok(())
    }
}

fn invalid(msg: &str) -> ArgsError {
    ArgsError::Invalid(msg.to_string())
}
