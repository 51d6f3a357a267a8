//! PPO's reward model (`reward_model_type`), scoring `query ++ response`:
//!
//! - `api`: LLaMA-Factory's reward server protocol — POST `{"model": "model", "messages":
//!   [texts]}` (each text the decoded query + response, special tokens kept) to
//!   `reward_model`, read `{"scores": [...]}`. `lmf api` serves it at `/v1/score/evaluation`.
//! - `full`: a separate model folder with its value head (`value_head.safetensors` in its last
//!   adapter folder or the model folder; `reward_model_adapters` merged), frozen; the score is
//!   the value at each sequence's last token.
//! - `lora`: the reward adapter (a `stage: rm` LoRA output folder: adapter + value head) on
//!   the policy's own base weights ([`CausalLM::base_copy`] shares them: no second copy of the
//!   base in memory), scored like `full`. LLaMA-Factory swaps adapters on one PEFT model.

use std::path::Path;

use lmf_autograd::no_grad;
use lmf_models::value_head::{summary_dropout, ValueHead};
use lmf_models::{CausalLM, SeqBatch, Tokenizer};

use crate::args::finetuning::RewardModelType;
use crate::args::train::TrainArgs;
use crate::{Error, Result};

/// Where scores come from.
pub enum RewardModel {
    /// An HTTP endpoint.
    Api(String),
    /// A frozen model with a value head (`full`, or the policy's base + the reward adapter).
    Model(Box<CausalLM>),
}

impl RewardModel {
    /// The reward model `args` describe; the policy's tokenizer must be the reward model's
    /// (LLaMA-Factory only warns; lmf checks the vocabulary size and the special tokens).
    pub fn for_run(
        args: &TrainArgs,
        policy: &CausalLM,
        tokenizer: &Tokenizer,
    ) -> Result<RewardModel> {
        let f = &args.finetuning;
        let name = f
            .reward_model
            .as_deref()
            .ok_or_else(|| Error::Msg("`reward_model` is necessary for PPO training".into()))?;
        match f.reward_model_type {
            RewardModelType::Api => {
                if !name.starts_with("http://") {
                    return Err(Error::Msg(format!(
                        "reward_model `{name}`: with reward_model_type api it must be a full \
                         http:// URL (lmf's client speaks plain HTTP; put a TLS proxy in front \
                         of an https server)"
                    )));
                }
                Ok(RewardModel::Api(name.to_string()))
            }
            RewardModelType::Full => {
                let dir = args.model.resolve_dir(name)?;
                check_tokenizer(&dir, tokenizer)?;
                let mut model = CausalLM::load(&dir, policy.dtype, policy.device)?;
                let mut head_dir = dir.clone();
                if let Some(list) = &f.reward_model_adapters {
                    for a in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                        let adir = args.model.resolve_dir(a)?;
                        model.load_adapter(&adir, false)?;
                        model.merge_adapter()?;
                        head_dir = adir;
                    }
                }
                attach_value_head(&mut model, &head_dir, &dir)?;
                model.set_trainable(|_| false);
                Ok(RewardModel::Model(Box::new(model)))
            }
            RewardModelType::Lora => {
                let dir = args.model.resolve_dir(name)?;
                let mut model = policy.base_copy();
                model
                    .load_adapter(&dir, false)
                    .map_err(|e| Error::Msg(format!("reward model {}: {e}", dir.display())))?;
                let hidden = model.config.hidden_size;
                let head = ValueHead::load(&dir, hidden, 0.0, model.device)?.ok_or_else(|| {
                    Error::Msg(format!(
                        "reward model {}: no value_head.safetensors (train it with `stage: rm`)",
                        dir.display()
                    ))
                })?;
                model.value_head = Some(head);
                Ok(RewardModel::Model(Box::new(model)))
            }
        }
    }

    /// The score of each `queries[i] ++ responses[i]`.
    pub fn scores(
        &self,
        tokenizer: &Tokenizer,
        queries: &[Vec<u32>],
        responses: &[Vec<u32>],
    ) -> Result<Vec<f64>> {
        let seqs: Vec<Vec<u32>> = queries
            .iter()
            .zip(responses)
            .map(|(q, r)| [q.as_slice(), r.as_slice()].concat())
            .collect();
        match self {
            RewardModel::Api(url) => {
                let texts = seqs
                    .iter()
                    .map(|s| tokenizer.decode(s, false))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                api_scores(url, &texts)
            }
            RewardModel::Model(model) => last_token_scores(model, &seqs),
        }
    }
}

/// Loads the value head saved in `head_dir` (the last adapter folder, or the model folder)
/// onto `model`, with the dropout of `model_dir`'s config (TRL's `summary_dropout_prob`).
pub fn attach_value_head(model: &mut CausalLM, head_dir: &Path, model_dir: &Path) -> Result<()> {
    let hidden = model.config.hidden_size;
    let head = ValueHead::load(head_dir, hidden, summary_dropout(model_dir)?, model.device)?
        .ok_or_else(|| {
            Error::Msg(format!(
                "reward model {}: no value_head.safetensors (train it with `stage: rm`)",
                head_dir.display()
            ))
        })?;
    model.value_head = Some(head);
    Ok(())
}

/// The value-head score of each sequence at its last token (LLaMA-Factory's `_get_scores`
/// and PPO's reward), one packed forward without a tape.
pub fn last_token_scores(model: &CausalLM, seqs: &[Vec<u32>]) -> Result<Vec<f64>> {
    let head = model
        .value_head
        .as_ref()
        .ok_or_else(|| Error::Msg("the reward model has no value head".into()))?;
    let batch = SeqBatch::from_seqs(seqs);
    let last = batch.last_token_rows();
    let v = no_grad(|| -> Result<_> {
        let hidden = model.forward_hidden(&batch, None)?;
        Ok(head.scores(&hidden, &last)?)
    })?;
    Ok(v.tensor().to_vec::<f64>()?)
}

/// LLaMA-Factory's `get_rewards_from_server`.
fn api_scores(url: &str, texts: &[String]) -> Result<Vec<f64>> {
    let body = serde_json::json!({"model": "model", "messages": texts});
    let fail = |what: String| Error::Msg(format!("reward server {url}: {what}"));
    let mut resp = ureq::post(url)
        .header("Content-Type", "application/json")
        .send_json(&body)
        .map_err(|e| fail(e.to_string()))?;
    let value: serde_json::Value = resp
        .body_mut()
        .read_json()
        .map_err(|e| fail(format!("the reply is not JSON: {e}")))?;
    let scores = value
        .get("scores")
        .and_then(|s| s.as_array())
        .ok_or_else(|| fail(format!("the reply has no `scores` list: {value}")))?;
    let scores = scores
        .iter()
        .map(|s| {
            s.as_f64()
                .ok_or_else(|| fail(format!("score {s} is not a number")))
        })
        .collect::<Result<Vec<f64>>>()?;
    if scores.len() != texts.len() {
        return Err(fail(format!(
            "{} scores for {} texts",
            scores.len(),
            texts.len()
        )));
    }
    Ok(scores)
}

/// The reward model's tokenizer must be the policy's: same vocabulary size and special tokens.
fn check_tokenizer(dir: &Path, policy: &Tokenizer) -> Result<()> {
    let theirs = Tokenizer::from_dir(dir)?;
    let same = theirs.vocab_size() == policy.vocab_size()
        && theirs.bos_token_id() == policy.bos_token_id()
        && theirs.pad_token_id() == policy.pad_token_id()
        && theirs.unk_token_id() == policy.unk_token_id();
    if !same {
        return Err(Error::Msg(format!(
            "reward model {}: its tokenizer differs from the policy's (vocabulary {} vs {}); PPO \
             scores the policy's token ids, so both must share one tokenizer",
            dir.display(),
            theirs.vocab_size(),
            policy.vocab_size()
        )));
    }
    Ok(())
}
