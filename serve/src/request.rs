//! A chat request made into what the model runs, with LLaMA-Factory's rules
//! (`api/chat.py::_process_request`): an optional leading system message, then an odd number
//! of turns alternating user-or-tool / assistant-or-function; an assistant message with
//! `tool_calls` becomes a function turn holding `[{"name", "arguments"}]`; `tool` messages
//! are observations; `tools` go to the template as the JSON list of their `function`s;
//! `presence_penalty` is used as the repetition penalty; `n` > 1 samples.

use crate::error::ApiError;
use crate::protocol::{ChatCompletionRequest, ChatMessage, Content, Role, Stop};
use lmf_trainers::args::GenerateRequest;
use lmf_trainers::template::{Message, Role as TRole};
use serde_json::json;

/// The conversation as the template takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// Turns after the system message.
    pub messages: Vec<Message>,
    /// The system message's text.
    pub system: Option<String>,
    /// The tools, as a JSON list of function descriptions.
    pub tools: Option<String>,
}

/// Reads the conversation of `req`.
pub fn conversation(req: &ChatCompletionRequest) -> Result<Conversation, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("Invalid length: `messages` is empty"));
    }
    let mut turns: &[ChatMessage] = &req.messages;
    let mut system = None;
    if turns[0].role == Role::System {
        system = Some(match &turns[0].content {
            None => String::new(),
            Some(c) => text_of(c, 0)?,
        });
        turns = &turns[1..];
    }
    if turns.len().is_multiple_of(2) {
        return Err(ApiError::bad_request(
            "Only supports u/a/u/a/u...: after the system message, `messages` must alternate \
             user (or tool) and assistant turns and end with a user (or tool) turn",
        ));
    }
    let offset = req.messages.len() - turns.len();
    let mut messages = Vec::with_capacity(turns.len());
    for (i, m) in turns.iter().enumerate() {
        let at = i + offset;
        let allowed: &[Role] = if i % 2 == 0 {
            &[Role::User, Role::Tool]
        } else {
            &[Role::Assistant, Role::Function]
        };
        if !allowed.contains(&m.role) {
            return Err(ApiError::bad_request(format!(
                "Invalid role `{}` at messages[{at}]: expected {}",
                role_name(m.role),
                if i % 2 == 0 {
                    "user or tool"
                } else {
                    "assistant or function"
                }
            )));
        }
        let calls = m.tool_calls.as_deref().filter(|c| !c.is_empty());
        let message = match (m.role, calls) {
            (Role::Assistant, Some(calls)) => {
                let list: Vec<_> = calls
                    .iter()
                    .map(|c| json!({"name": c.function.name, "arguments": c.function.arguments}))
                    .collect();
                Message::new(
                    TRole::Function,
                    serde_json::to_string(&list).unwrap_or_default(),
                )
            }
            (role, _) => {
                let text = match &m.content {
                    None => String::new(),
                    Some(c) => text_of(c, at)?,
                };
                Message::new(template_role(role), text)
            }
        };
        messages.push(message);
    }
    Ok(Conversation {
        messages,
        system,
        tools: tools_json(req)?,
    })
}

/// The text of a message's content (text parts joined; other parts refused: lmf serves
/// text-only models).
fn text_of(c: &Content, at: usize) -> Result<String, ApiError> {
    match c {
        Content::Text(t) => Ok(t.clone()),
        Content::Parts(parts) => {
            let mut text = String::new();
            for p in parts {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => text += t,
                    ("text", None) => {
                        return Err(ApiError::bad_request(format!(
                            "messages[{at}]: a `text` part without `text`"
                        )))
                    }
                    (other, _) => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid input type {other} at messages[{at}]: lmf serves text-only \
                             models"
                        )))
                    }
                }
            }
            Ok(text)
        }
    }
}

/// `json.dumps([tool.function for tool in tools])`, each function written as LLaMA-Factory's
/// `FunctionDefinition` dumps it (`name`, `description`, `parameters`, in that order; all
/// three required).
fn tools_json(req: &ChatCompletionRequest) -> Result<Option<String>, ApiError> {
    let Some(tools) = req.tools.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut parts = vec![];
    for (i, t) in tools.iter().enumerate() {
        let f = t.function.as_ref().ok_or_else(|| {
            ApiError::bad_request(format!("Invalid tools: tools[{i}] has no `function`"))
        })?;
        parts.push(format!(
            "{{\"name\": {}, \"description\": {}, \"parameters\": {}}}",
            json_str(&f.name),
            json_str(&f.description),
            f.parameters.get()
        ));
    }
    Ok(Some(format!("[{}]", parts.join(", "))))
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The per-request decoding overrides.
pub fn generate_request(req: &ChatCompletionRequest) -> GenerateRequest {
    GenerateRequest {
        do_sample: req.do_sample,
        temperature: req.temperature,
        top_p: req.top_p,
        num_return_sequences: Some(req.n),
        repetition_penalty: req.presence_penalty,
        max_new_tokens: req.max_tokens,
        seed: req.seed,
        ..Default::default()
    }
}

/// The request's stop strings.
pub fn stops(req: &ChatCompletionRequest) -> Vec<String> {
    match &req.stop {
        None => vec![],
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    }
}

fn template_role(r: Role) -> TRole {
    match r {
        Role::User => TRole::User,
        Role::Assistant => TRole::Assistant,
        Role::System => TRole::System,
        Role::Function => TRole::Function,
        Role::Tool => TRole::Observation,
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
        Role::Function => "function",
        Role::Tool => "tool",
    }
}
