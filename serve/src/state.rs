//! What the server holds: the served model name, the API key, and either a generating model
//! (with its engine) or a reward model (`stage: rm`: scores only, as in LLaMA-Factory).

use crate::engine::Engine;
use crate::error::ApiError;
use axum::http::{header::AUTHORIZATION, HeaderMap, StatusCode};
use lmf_models::{CausalLM, Tokenizer};
use lmf_trainers::chat::ChatModel;
use lmf_trainers::train::ppo::reward::last_token_scores;
use std::sync::{Arc, Mutex};

/// Shared server state.
pub struct State {
    /// `API_MODEL_NAME`.
    pub model_name: String,
    /// `API_KEY`, when set.
    pub api_key: Option<String>,
    /// `MAX_CONCURRENT`: sequences decoding together.
    pub max_concurrent: usize,
    /// The model.
    pub served: Served,
}

/// The kind of model served.
pub enum Served {
    /// A generating model: chat completions.
    Chat(Box<ChatServe>),
    /// A reward model: score evaluation.
    Score(Arc<ScoreServe>),
}

/// A generating model.
pub struct ChatServe {
    /// Tokenizer, template, decoding defaults (its model is shared with the engine).
    pub chat: ChatModel,
    /// The batching engine.
    pub engine: Engine,
    /// Prompt + reply tokens at most (`max_position_embeddings`).
    pub max_context: usize,
}

/// A reward model with its value head.
pub struct ScoreServe {
    /// The model (one scoring forward at a time).
    pub model: Mutex<CausalLM>,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Default truncation length (`max_position_embeddings`).
    pub max_context: usize,
}

impl State {
    /// LLaMA-Factory's `verify_api_key`: with `API_KEY` set, `Authorization: Bearer <key>` is
    /// required.
    pub fn check_key(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.api_key else {
            return Ok(());
        };
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given == Some(key.as_str()) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "Invalid API key.")
                .with_code("invalid_api_key"))
        }
    }
}

impl ScoreServe {
    /// LLaMA-Factory's `_get_scores`: each text tokenized without special tokens, truncated to
    /// `max_length` tokens, scored by the value head at its last token.
    pub fn scores(
        &self,
        texts: &[String],
        max_length: Option<usize>,
    ) -> Result<Vec<f64>, ApiError> {
        let limit = max_length.unwrap_or(self.max_context).max(1);
        let mut seqs = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let mut ids = self
                .tokenizer
                .encode(t, false)
                .map_err(|e| ApiError::bad_request(format!("messages[{i}]: {e}")))?;
            if ids.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}] is empty: nothing to score"
                )));
            }
            ids.truncate(limit);
            seqs.push(ids);
        }
        let model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        last_token_scores(&model, &seqs)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }
}
