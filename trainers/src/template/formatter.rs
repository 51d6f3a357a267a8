//! Formatters (LLaMA-Factory's `formatter.py`): a list of slots with `{{content}}`-style
//! placeholders that turns one message into text pieces and special tokens.

use super::pyjson::PyJson;
use super::tools::{parse_function_calls, ToolFormat};
use super::{Error, Result};

/// One piece of a formatted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Text, possibly with `{{content}}` (and `{{idx}}`) placeholders; tokenized without
    /// special tokens, each piece on its own.
    Text(String),
    /// A Python set slot such as `{"bos_token"}` or `{"eos_token"}`: the tokenizer's bos / eos
    /// id when it has one. Any other name adds nothing (as in LLaMA-Factory).
    Special(String),
    /// `{"token": "<|x|>"}`: the id of that token (the unk id when it is unknown).
    Token(String),
}

impl Slot {
    /// A text slot.
    pub fn text(s: &str) -> Slot {
        Slot::Text(s.to_string())
    }

    /// `{"bos_token"}`.
    pub fn bos() -> Slot {
        Slot::Special("bos_token".into())
    }

    /// `{"eos_token"}`.
    pub fn eos() -> Slot {
        Slot::Special("eos_token".into())
    }

    /// `{"token": token}`.
    pub fn token(token: &str) -> Slot {
        Slot::Token(token.to_string())
    }
}

/// A formatter: how one kind of message becomes slots.
#[derive(Debug, Clone, PartialEq)]
pub enum Formatter {
    /// Fixed slots, no placeholder (prefixes).
    Empty(Vec<Slot>),
    /// Slots whose `{{name}}` placeholders are filled with the message.
    String(Vec<Slot>),
    /// A function-call message: the JSON calls are rewritten in `tool_format`, then fill the
    /// slots' `{{content}}`.
    Function {
        /// The slots around the calls.
        slots: Vec<Slot>,
        /// How the calls are written.
        tool_format: ToolFormat,
    },
    /// The tools description (a JSON list) written in `tool_format`.
    Tool(ToolFormat),
}

/// What a formatter is applied to (LLaMA-Factory passes these as keyword arguments).
#[derive(Debug, Clone, Copy, Default)]
pub struct FormatArgs<'a> {
    /// The message text (`content=`); `None` for a formatter applied without arguments.
    pub content: Option<&'a str>,
    /// The turn index for `{{idx}}` (user messages of plain templates).
    pub idx: Option<&'a str>,
    /// The template's thought words (function messages of plain templates).
    pub thought_words: Option<(&'a str, &'a str)>,
    /// The template's tool-call words (function messages of plain templates).
    pub tool_call_words: Option<(&'a str, &'a str)>,
    /// The date printed by the Llama 3 tool prompt.
    pub date: &'a str,
}

impl Formatter {
    /// The slots of a string formatter.
    pub fn string(slots: &[Slot]) -> Formatter {
        Formatter::String(slots.to_vec())
    }

    /// The slots of this formatter before any placeholder is filled (the tools formatter has
    /// none).
    pub fn slots(&self) -> &[Slot] {
        match self {
            Formatter::Empty(s) | Formatter::String(s) => s,
            Formatter::Function { slots, .. } => slots,
            Formatter::Tool(_) => &[],
        }
    }

    /// LLaMA-Factory's `Formatter.apply(**kwargs)`.
    pub fn apply(&self, args: FormatArgs<'_>) -> Result<Vec<Slot>> {
        match self {
            Formatter::Empty(slots) => Ok(slots.clone()),
            Formatter::String(slots) => Ok(fill(slots, args.content, args.idx)),
            Formatter::Function { slots, tool_format } => {
                let content = args.content.unwrap_or_default();
                let text = format_function(content, *tool_format, args)?;
                Ok(fill(slots, Some(&text), None))
            }
            Formatter::Tool(format) => {
                let content = args.content.unwrap_or_default();
                let tools = PyJson::parse(content).map_err(|_| {
                    Error::Tools(format!(
                        "invalid JSON format in tool description: {content:?}"
                    ))
                })?;
                let text = match &tools {
                    PyJson::List(list) if list.is_empty() => String::new(),
                    PyJson::List(list) => format.format_tools(list, args.date)?,
                    _ => {
                        return Err(Error::Tools(format!(
                            "expected a JSON list of tools, got {content:?}"
                        )))
                    }
                };
                Ok(vec![Slot::Text(text)])
            }
        }
    }
}

/// `StringFormatter.apply`: each text slot gets its first `{{content}}`, then its first
/// `{{idx}}`, replaced (in that order, so a `{{idx}}` inside the content is replaced too).
fn fill(slots: &[Slot], content: Option<&str>, idx: Option<&str>) -> Vec<Slot> {
    slots
        .iter()
        .map(|slot| match slot {
            Slot::Text(s) => {
                let mut s = s.clone();
                if let Some(c) = content {
                    s = s.replacen("{{content}}", c, 1);
                }
                if let Some(i) = idx {
                    s = s.replacen("{{idx}}", i, 1);
                }
                Slot::Text(s)
            }
            other => other.clone(),
        })
        .collect()
}

/// The first `open(.*?)close` in `text` (what Python's `re.search` with DOTALL finds):
/// `(match start, match end, inner start, inner end)` in bytes.
pub(crate) fn find_between(
    text: &str,
    open: &str,
    close: &str,
) -> Option<(usize, usize, usize, usize)> {
    let start = text.find(open)?;
    let inner = start + open.len();
    let end = text[inner..].find(close)? + inner;
    Some((start, end + close.len(), inner, end))
}

/// `FunctionFormatter.apply`: a tool call wrapped in tool-call words keeps the text around it
/// (as thought) before the calls; otherwise a leading thought block is kept before the calls.
fn format_function(content: &str, format: ToolFormat, args: FormatArgs<'_>) -> Result<String> {
    if let Some((open, close)) = args.tool_call_words {
        if let Some((s, e, is, ie)) = find_between(content, open, close) {
            let thought = content.replace(&content[s..e], "");
            let calls = parse_function_calls(&content[is..ie], content)?;
            return Ok(thought + &format.format_calls(&calls)?);
        }
    }
    let thought = args
        .thought_words
        .and_then(|(open, close)| find_between(content, open, close))
        .map(|(s, e, _, _)| &content[s..e]);
    let json_part = match thought {
        Some(t) => content.replace(t, ""),
        None => content.to_string(),
    };
    let calls = parse_function_calls(&json_part, content)?;
    let text = format.format_calls(&calls)?;
    Ok(match thought {
        Some(t) => format!("{t}{text}"),
        None => text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_first_placeholder_then_idx() {
        let slots = [Slot::text("<{{content}}|{{content}}|{{idx}}>"), Slot::eos()];
        let out = fill(&slots, Some("a {{idx}}"), Some("3"));
        assert_eq!(
            out,
            vec![Slot::text("<a 3|{{content}}|{{idx}}>"), Slot::eos()]
        );
    }

    #[test]
    fn find_between_is_lazy_and_leftmost() {
        let t = "x<a>1</a>2</a><a>3</a>";
        let (s, e, is, ie) = find_between(t, "<a>", "</a>").unwrap();
        assert_eq!((&t[s..e], &t[is..ie]), ("<a>1</a>", "1"));
        assert!(find_between("</a><a>", "<a>", "</a>").is_none());
    }
}
