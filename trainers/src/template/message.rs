//! One turn of a conversation, with LLaMA-Factory's role names.

use serde::{Deserialize, Serialize};

/// Who speaks in a message (LLaMA-Factory's `Role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The model.
    Assistant,
    /// The system prompt (passed apart from the messages when encoding).
    System,
    /// A tool call written by the model (JSON: `{"name": ..., "arguments": ...}` or a list).
    Function,
    /// The result of a tool call.
    Observation,
}

impl Role {
    /// The role's name as LLaMA-Factory and chat templates spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Function => "function",
            Role::Observation => "observation",
        }
    }
}

/// A message: a role and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A message of `role` saying `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }
}
