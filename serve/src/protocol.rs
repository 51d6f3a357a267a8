//! The JSON bodies of the OpenAI chat API as LLaMA-Factory's `api/protocol.py` declares them
//! (field names, defaults, which fields are optional), plus `seed`, which OpenAI has and
//! LLaMA-Factory does not.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A message's author.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The model.
    Assistant,
    /// The system prompt (first message only).
    System,
    /// A function call (LLaMA-Factory's own role).
    Function,
    /// A tool's result.
    Tool,
}

/// `{"name", "arguments"}` of a call.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Function {
    /// Function name.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
}

/// One tool call in a message.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct FunctionCall {
    /// `call_<hex>`.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The call.
    pub function: Function,
}

fn function_type() -> String {
    "function".into()
}

/// A part of a multi-part content list.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ContentPart {
    /// `text`, `image_url`, `video_url` or `audio_url`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// A message's content: text, or a list of parts.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts (only text parts are served: lmf has no multimodal models yet).
    Parts(Vec<ContentPart>),
}

/// A request message.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ChatMessage {
    /// Author.
    pub role: Role,
    /// Content (may be absent on an assistant message with tool calls).
    #[serde(default)]
    pub content: Option<Content>,
    /// The assistant's earlier tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<FunctionCall>>,
}

/// A function the model may call (all three fields required, as in LLaMA-Factory).
#[derive(Clone, Debug, Deserialize)]
pub struct FunctionDefinition {
    /// Name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON schema of its arguments, kept as sent (key order included).
    pub parameters: Box<RawValue>,
}

/// A tool the model may call: `{"type": "function", "function": {...}}`.
#[derive(Clone, Debug, Deserialize)]
pub struct Tool {
    /// `function` (or `code_interpreter`).
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function.
    #[serde(default)]
    pub function: Option<FunctionDefinition>,
}

/// `stop`: one string or several.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model name (must be the served one).
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    /// Sample or not (LLaMA-Factory's extension).
    #[serde(default)]
    pub do_sample: Option<bool>,
    /// Temperature (0: greedy).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Number of replies.
    #[serde(default = "one")]
    pub n: i64,
    /// Used as the repetition penalty (LLaMA-Factory's mapping).
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// Maximum new tokens.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Stream the reply as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Sampling seed (OpenAI's field; a fresh seed per request when absent).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn one() -> i64 {
    1
}

/// The reply message.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChatCompletionMessage {
    /// `assistant` (first stream chunk and whole replies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<FunctionCall>>,
}

/// Why a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` (or the context) reached.
    Length,
    /// The reply is tool calls.
    ToolCalls,
}

/// One reply.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Choice {
    /// Index among the `n` replies.
    pub index: usize,
    /// The message.
    pub message: ChatCompletionMessage,
    /// Why it ended.
    pub finish_reason: FinishReason,
}

/// Token counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens over all replies.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

/// The non-streamed response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatCompletionResponse {
    /// `chatcmpl-<hex>`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix time.
    pub created: u64,
    /// The model name of the request.
    pub model: String,
    /// Replies.
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: Usage,
}

/// One choice of a stream chunk.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamChoice {
    /// Index (always 0: streams have one reply).
    pub index: usize,
    /// The new part.
    pub delta: ChatCompletionMessage,
    /// Set on the last chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
}

/// A streamed chunk.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatCompletionChunk {
    /// Same id on every chunk of a reply.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix time.
    pub created: u64,
    /// The model name of the request.
    pub model: String,
    /// One choice.
    pub choices: Vec<StreamChoice>,
}

/// `GET /v1/models` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelCard {
    /// `API_MODEL_NAME`.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// Unix time.
    pub created: u64,
    /// `owner`.
    pub owned_by: &'static str,
}

/// `GET /v1/models`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelList {
    /// `list`.
    pub object: &'static str,
    /// The served model.
    pub data: Vec<ModelCard>,
}

/// `POST /v1/score/evaluation` (reward models).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ScoreEvaluationRequest {
    /// Model name (not checked: LLaMA-Factory's PPO sends `model`).
    pub model: String,
    /// Texts to score.
    pub messages: Vec<String>,
    /// Truncation length (default: the model's `max_position_embeddings`).
    #[serde(default)]
    pub max_length: Option<usize>,
}

/// Scores of the texts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreEvaluationResponse {
    /// `scoreval-<hex>`.
    pub id: String,
    /// `score.evaluation`.
    pub object: &'static str,
    /// The request's model name.
    pub model: String,
    /// One score per text.
    pub scores: Vec<f64>,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
