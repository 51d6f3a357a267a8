//! Chat templates: LLaMA-Factory 0.9.5's template registry (`llamafactory/data/template.py`,
//! `formatter.py`, `tool_utils.py`) in Rust. A [`Template`] turns a conversation into
//! `(prompt ids, response ids)` pairs exactly as LLaMA-Factory does, fixes the tokenizer's eos /
//! pad / stop tokens, and gives the stop ids for generation. With no template name, the
//! tokenizer's own Jinja chat template is parsed into one ([`Template::for_tokenizer`]).
//! Templates can also be read from a template file (`template_file`, see [`load_template_file`]),
//! written with `register_template`'s fields.
//!
//! ```no_run
//! # use lmf_trainers::template::{Template, TemplateOptions, Message, Role};
//! # use lmf_models::tokenizer::Tokenizer;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut tok = Tokenizer::from_dir(std::path::Path::new("model"))?;
//! let template = Template::for_tokenizer(Some("qwen3"), &mut tok, &TemplateOptions::default())?;
//! let messages = [Message::new(Role::User, "Hi"), Message::new(Role::Assistant, "Hello!")];
//! let pairs = template.encode_multiturn(&tok, &messages, None, None)?;
//! # Ok(()) }
//! ```

mod error;
mod file;
mod formatter;
mod jinja;
mod message;
mod parse;
pub mod pyjson;
mod reasoning;
mod registry;
#[allow(clippy::module_inception)]
mod template;
mod tool_extract;
mod tools;

pub use error::{Error, Result};
pub use file::{load_template_file, parse_template_file, template_file_yaml, TEMPLATE_FIELDS};
pub use formatter::{FormatArgs, Formatter, Slot};
pub use jinja::{message_value, render_chat_template};
pub use message::{Message, Role};
pub use parse::{select_template, TemplateOptions};
pub use registry::{find_template, get_template, template_names};
pub use template::{Pair, Template, TemplateKind};
pub use tool_extract::{Extracted, NoResult};
pub use tools::{parse_function_calls, FunctionCall, ToolFormat};
