//! A template read off the tokenizer's own Jinja chat template (LLaMA-Factory's
//! `parse_template`, used when no `template` is given): the template is rendered over
//! placeholder conversations and the user / assistant / system slots are cut out of the text.

use std::path::PathBuf;

use lmf_models::tokenizer::{ChatTemplates, Tokenizer};

use super::file::load_template_file;
use super::formatter::{Formatter, Slot};
use super::jinja::{message_value, render_chat_template};
use super::pyjson::PyJson;
use super::template::{Template, TemplateKind};
use super::tools::ToolFormat;
use super::{registry, Error, Result};

/// Options LLaMA-Factory takes from its data arguments when it sets up a template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateOptions {
    /// `tool_format`: rewrite function calls and tools in this format.
    pub tool_format: Option<String>,
    /// `default_system`: replace the template's default system prompt.
    pub default_system: Option<String>,
    /// `enable_thinking` (reasoning templates), default `Some(true)`.
    pub enable_thinking: Option<bool>,
    /// `preserve_thinking` (reasoning templates), default `false`.
    pub preserve_thinking: bool,
    /// `template_file` (an lmf extension): a template file whose templates `template` may name
    /// (they replace built-in templates of the same name).
    pub template_file: Option<PathBuf>,
}

impl Default for TemplateOptions {
    fn default() -> Self {
        TemplateOptions {
            tool_format: None,
            default_system: None,
            enable_thinking: Some(true),
            preserve_thinking: false,
            template_file: None,
        }
    }
}

/// The template `name` names, `template_file`'s templates first (see [`TemplateOptions`]), or
/// `None` when there is no name (the tokenizer's own template is used then). A template file
/// without a `template` name is an error: its templates would go unused.
pub fn select_template(name: Option<&str>, options: &TemplateOptions) -> Result<Option<Template>> {
    let Some(path) = &options.template_file else {
        return name.map(registry::get_template).transpose();
    };
    let custom = load_template_file(path)?;
    match name {
        Some(name) => registry::find_template(name, &custom, Some(path)).map(Some),
        None => {
            let names: Vec<&str> = custom.iter().map(|t| t.name()).collect();
            Err(Error::TemplateFile {
                path: path.clone(),
                msg: format!(
                    "`template` is not set, so none of its templates ({}) is used; set \
                     `template` to one of them",
                    names.join(", ")
                ),
            })
        }
    }
}

impl Template {
    /// LLaMA-Factory's `get_template_and_fix_tokenizer`: the template called `name` (among the
    /// templates of `options.template_file` first, then the built-in ones) — or, with no name,
    /// the tokenizer's own Jinja template when it has a single one, else `empty` — with
    /// `options` applied, and the tokenizer fixed for it.
    pub fn for_tokenizer(
        name: Option<&str>,
        tok: &mut Tokenizer,
        options: &TemplateOptions,
    ) -> Result<Template> {
        let mut template = match select_template(name, options)? {
            Some(template) => template,
            None => match tok.chat_templates() {
                ChatTemplates::Single(_) => Template::from_tokenizer_chat_template(tok)?,
                _ => registry::get_template("empty")?,
            },
        };
        if let Some(format) = &options.tool_format {
            template.set_tool_format(format)?;
        }
        if let Some(system) = &options.default_system {
            template.set_default_system(system.clone());
        }
        if template.is_reasoning() {
            template.set_enable_thinking(options.enable_thinking);
            template.set_preserve_thinking(options.preserve_thinking);
        }
        template.fix_tokenizer(tok)?;
        Ok(template)
    }

    /// The template described by the tokenizer's Jinja chat template (LLaMA-Factory's
    /// `parse_template`); a template whose answers show `<think>` becomes a reasoning template.
    pub fn from_tokenizer_chat_template(tok: &Tokenizer) -> Result<Template> {
        let source = tok
            .chat_template()
            .ok_or_else(|| Error::Jinja("the tokenizer has no chat template".into()))?;
        let render = |messages: &[(&str, &str)], generation: bool| -> Result<String> {
            let messages: Vec<PyJson> = messages
                .iter()
                .map(|(role, content)| message_value(role, content))
                .collect();
            render_chat_template(source, tok, &messages, None, generation, &[])
        };
        let prefix = tok.decode(&tok.encode("", true)?, false)?;
        let cut = chars(&prefix);

        let system_slot = skip(&render(&[("system", "{{content}}")], false)?, cut);
        let user_empty_system = skip(
            &render(&[("system", ""), ("user", "{{content}}")], true)?,
            cut,
        );
        let mut user_slot = skip(&render(&[("user", "{{content}}")], true)?, cut);
        let full = render(
            &[("user", "{{content}}"), ("assistant", "{{content}}")],
            false,
        )?;
        let assistant_slot = skip(&full, cut + chars(&user_slot));
        let kind = if assistant_slot.contains("<think>") {
            TemplateKind::Reasoning
        } else {
            TemplateKind::Plain
        };
        let assistant_slot = assistant_slot
            .replace("<think>", "")
            .replace("</think>", "")
            .trim_start_matches('\n')
            .to_string();

        let default_system = if chars(&user_slot) > chars(&user_empty_system) {
            let found = find_diff(&user_empty_system, &user_slot);
            let sole_system = system_slot.replacen("{{content}}", &found, 1);
            user_slot = skip(&user_slot, chars(&sole_system));
            found
        } else {
            String::new()
        };

        let text = |s: &str| vec![Slot::Text(s.to_string())];
        Ok(Template {
            name: "<tokenizer>".into(),
            kind,
            format_user: Formatter::String(text(&user_slot)),
            format_assistant: Formatter::String(text(&assistant_slot)),
            format_system: Formatter::String(text(&system_slot)),
            format_function: Formatter::Function {
                slots: text(&assistant_slot),
                tool_format: ToolFormat::Default,
            },
            format_observation: Formatter::String(text(&user_slot)),
            format_tools: Formatter::Tool(ToolFormat::Default),
            format_prefix: Formatter::Empty(if prefix.is_empty() {
                Vec::new()
            } else {
                text(&prefix)
            }),
            default_system,
            stop_words: Vec::new(),
            thought_words: ("<think>\n".into(), "\n</think>\n\n".into()),
            tool_call_words: ("<tool_call>".into(), "</tool_call>".into()),
            efficient_eos: false,
            replace_eos: false,
            replace_jinja_template: false,
            enable_thinking: Some(true),
            preserve_thinking: false,
            mm_plugin: None,
            tool_date: None,
        })
    }
}

/// Number of characters (Python's `len(str)`).
fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `s[n:]` in characters.
fn skip(s: &str, n: usize) -> String {
    s.chars().skip(n).collect()
}

/// LLaMA-Factory's `find_diff`: the characters of `long` that a greedy walk cannot match
/// against `short`.
fn find_diff(short: &str, long: &str) -> String {
    let short: Vec<char> = short.chars().collect();
    let long: Vec<char> = long.chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut diff = String::new();
    while i < short.len() && j < long.len() {
        if short[i] == long[j] {
            i += 1;
        } else {
            diff.push(long[j]);
        }
        j += 1;
    }
    diff
}
