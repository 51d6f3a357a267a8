//! Errors of the template module: each names the template, message or file at fault in one line.

/// Result with the template [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong choosing a template or encoding a conversation with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `template: <name>` names no registered template.
    #[error("unknown template `{name}`{}{}", in_file(file), suggest(close))]
    UnknownTemplate {
        /// The name asked for.
        name: String,
        /// Registered names close to it.
        close: Vec<String>,
        /// The template file that was searched too (`template_file`).
        file: Option<String>,
    },
    /// A template file (`template_file`) that cannot be read or holds a mistake.
    #[error("template_file `{}`: {msg}", path.display())]
    TemplateFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, naming the template and the field.
        msg: String,
    },
    /// `tool_format: <name>` names no tool format.
    #[error("unknown tool format `{0}` (known: default, gemma4, glm4, glm4_moe, lfm2, ling, llama3, minimax1, minimax2, mistral, qwen, qwen3_5, seed_oss)")]
    UnknownToolFormat(String),
    /// A conversation that the template cannot encode (bad role, bad function-call JSON, ...).
    #[error("{0}")]
    Message(String),
    /// The `tools` description is not a JSON list of tools.
    #[error("invalid tools description: {0}")]
    Tools(String),
    /// The template's definition cannot be used with this tokenizer.
    #[error("template `{template}`: {msg}")]
    Template {
        /// The template name.
        template: String,
        /// What is wrong.
        msg: String,
    },
    /// The tokenizer's Jinja chat template failed to compile or render.
    #[error("chat template: {0}")]
    Jinja(String),
    /// An error of the tokenizer.
    #[error(transparent)]
    Tokenizer(#[from] lmf_models::Error),
}

fn in_file(file: &Option<String>) -> String {
    match file {
        Some(f) => format!(" (neither built in nor in template_file `{f}`)"),
        None => String::new(),
    }
}

fn suggest(close: &[String]) -> String {
    let all = super::template_names().len();
    format!(
        "; the closest are {} (`lmf templates` lists all {all})",
        close.join(", ")
    )
}
