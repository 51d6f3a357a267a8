//! `Template`: LLaMA-Factory's chat template object — the formatters of each role, the default
//! system prompt, stop words, thought words — and how it turns a conversation into
//! `(prompt ids, response ids)` pairs and fixes the tokenizer's eos / pad / stop tokens.

use lmf_models::tokenizer::Tokenizer;

use super::formatter::{FormatArgs, Formatter, Slot};
use super::message::{Message, Role};
use super::tool_extract::{Extracted, NoResult};
use super::tools::ToolFormat;
use super::{Error, Result};

/// Which of LLaMA-Factory's template classes a template is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// `Template`: the system prompt is its own block before the first user message.
    Plain,
    /// `Llama2Template`: the system prompt is folded into the first user message.
    Llama2,
    /// `ReasoningTemplate`: an empty thought is added to answers that have none.
    Reasoning,
    /// `Glm47ReasoningTemplate`: as reasoning, but an empty thought is only the closing word.
    Glm47Reasoning,
}

/// A chat template (LLaMA-Factory's `Template` and its subclasses).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub(crate) name: String,
    pub(crate) kind: TemplateKind,
    pub(crate) format_user: Formatter,
    pub(crate) format_assistant: Formatter,
    pub(crate) format_system: Formatter,
    pub(crate) format_function: Formatter,
    pub(crate) format_observation: Formatter,
    pub(crate) format_tools: Formatter,
    pub(crate) format_prefix: Formatter,
    pub(crate) default_system: String,
    pub(crate) stop_words: Vec<String>,
    pub(crate) thought_words: (String, String),
    pub(crate) tool_call_words: (String, String),
    pub(crate) efficient_eos: bool,
    pub(crate) replace_eos: bool,
    pub(crate) replace_jinja_template: bool,
    pub(crate) enable_thinking: Option<bool>,
    pub(crate) preserve_thinking: bool,
    pub(crate) mm_plugin: Option<String>,
    pub(crate) tool_date: Option<String>,
}

/// One encoded conversation turn: prompt ids and response ids.
pub type Pair = (Vec<u32>, Vec<u32>);

impl Template {
    /// The registered name (`None`-template parses are called `"<tokenizer>"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which template class this is.
    pub fn kind(&self) -> TemplateKind {
        self.kind
    }

    /// Whether this is a reasoning template (thought handling, `enable_thinking`).
    pub fn is_reasoning(&self) -> bool {
        matches!(
            self.kind,
            TemplateKind::Reasoning | TemplateKind::Glm47Reasoning
        )
    }

    /// The system prompt used when a conversation has none.
    pub fn default_system(&self) -> &str {
        &self.default_system
    }

    /// Replaces the default system prompt (LLaMA-Factory's `default_system` argument).
    pub fn set_default_system(&mut self, system: impl Into<String>) {
        self.default_system = system.into();
    }

    /// Words that end generation besides eos.
    pub fn stop_words(&self) -> &[String] {
        &self.stop_words
    }

    /// The words that open and close a thought.
    pub fn thought_words(&self) -> (&str, &str) {
        (&self.thought_words.0, &self.thought_words.1)
    }

    /// Whether the eos token is written once at the end of an example rather than by the
    /// assistant formatter (such templates refuse `train_on_prompt` in LLaMA-Factory).
    pub fn efficient_eos(&self) -> bool {
        self.efficient_eos
    }

    /// Whether fixing a tokenizer makes the first stop word its eos token.
    pub fn replace_eos(&self) -> bool {
        self.replace_eos
    }

    /// Whether fixing a tokenizer replaces its Jinja chat template by this template's.
    pub fn replace_jinja_template(&self) -> bool {
        self.replace_jinja_template
    }

    /// The multimodal plugin LLaMA-Factory pairs with this template (not ported: text only).
    pub fn mm_plugin(&self) -> Option<&str> {
        self.mm_plugin.as_deref()
    }

    /// `enable_thinking` of a reasoning template: `Some(true)` trains on the (possibly empty)
    /// thought, `Some(false)` removes thoughts and puts the empty one in the prompt, `None`
    /// keeps thoughts but puts the empty one in the prompt.
    pub fn enable_thinking(&self) -> Option<bool> {
        self.enable_thinking
    }

    /// Sets `enable_thinking` (LLaMA-Factory's data argument, default `Some(true)`).
    pub fn set_enable_thinking(&mut self, enable: Option<bool>) {
        self.enable_thinking = enable;
    }

    /// Whether `encode_oneturn` keeps the thoughts of earlier answers.
    pub fn preserve_thinking(&self) -> bool {
        self.preserve_thinking
    }

    /// Sets `preserve_thinking` (LLaMA-Factory's data argument, default `false`).
    pub fn set_preserve_thinking(&mut self, preserve: bool) {
        self.preserve_thinking = preserve;
    }

    /// Rewrites function calls and the tools block in another tool format (LLaMA-Factory's
    /// `tool_format` argument).
    pub fn set_tool_format(&mut self, name: &str) -> Result<()> {
        let format = ToolFormat::from_name(name)?;
        let slots = if self.efficient_eos {
            vec![Slot::text("{{content}}")]
        } else {
            vec![Slot::text("{{content}}"), Slot::eos()]
        };
        self.format_function = Formatter::Function {
            slots,
            tool_format: format,
        };
        self.format_tools = Formatter::Tool(format);
        Ok(())
    }

    /// The tool calls of a model reply (LLaMA-Factory's `Template.extract_tool`), per the
    /// template's tools formatter: the calls, or the reply unchanged. A template whose tools
    /// formatter is a plain string formatter (`phi4_mini`) makes LF raise
    /// `NotImplementedError`; this answers the text then, as it does wherever LF raises.
    pub fn extract_tool(&self, content: &str) -> Extracted {
        self.try_extract_tool(content)
            .unwrap_or_else(|_| Extracted::Text(content.to_string()))
    }

    /// [`Template::extract_tool`], telling where LF raises or gives a call with a non-string
    /// name (see [`ToolFormat::try_extract`]).
    pub fn try_extract_tool(&self, content: &str) -> std::result::Result<Extracted, NoResult> {
        match &self.format_tools {
            Formatter::Tool(format) => format.try_extract(content),
            _ => Err(NoResult::Raises("NotImplementedError")),
        }
    }

    /// Fixes the "Today Date" of the Llama 3 tool prompt (`%d %b %Y`); `None` = today (UTC).
    pub fn set_tool_date(&mut self, date: Option<String>) {
        self.tool_date = date;
    }

    /// The conversation as `(prompt, response)` where the response is the last message and the
    /// prompt everything before (LLaMA-Factory's `encode_oneturn`).
    pub fn encode_oneturn(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
    ) -> Result<Pair> {
        if self.is_reasoning() {
            return self.reasoning_oneturn(tok, messages, system, tools);
        }
        self.plain_oneturn(tok, messages, system, tools)
    }

    /// The conversation as `(prompt, response)` pairs, one per user/assistant exchange
    /// (LLaMA-Factory's `encode_multiturn`).
    pub fn encode_multiturn(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
    ) -> Result<Vec<Pair>> {
        self.encode_multiturn_with(tok, messages, system, tools, false)
    }

    /// `encode_multiturn` with `discarding_history_cot` (reasoning templates: keep only the
    /// last answer's thought; LLaMA-Factory sets it for `mask_history` without
    /// `preserve_thinking`).
    pub fn encode_multiturn_with(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
        discarding_history_cot: bool,
    ) -> Result<Vec<Pair>> {
        if self.is_reasoning() {
            return self.reasoning_multiturn(tok, messages, system, tools, discarding_history_cot);
        }
        pairs(self.encode_messages(tok, messages, system, tools)?)
    }

    pub(crate) fn plain_oneturn(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
    ) -> Result<Pair> {
        let mut encoded = self.encode_messages(tok, messages, system, tools)?;
        let response = encoded
            .pop()
            .ok_or_else(|| Error::Message("cannot encode an empty conversation".into()))?;
        Ok((encoded.concat(), response))
    }

    /// The ids of every message (LLaMA-Factory's `_encode`): turn 0 is prefix + system (when
    /// there is a system prompt or tools) + the message.
    pub(crate) fn encode_messages(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        system: Option<&str>,
        tools: Option<&str>,
    ) -> Result<Vec<Vec<u32>>> {
        let system = match system {
            Some(s) if !s.is_empty() => s,
            _ => self.default_system.as_str(),
        };
        let tools = tools.filter(|t| !t.is_empty());
        let date = match &self.tool_date {
            Some(d) => d.clone(),
            None => super::tools::today(),
        };
        let llama2 = self.kind == TemplateKind::Llama2;
        let plain = FormatArgs {
            date: &date,
            ..FormatArgs::default()
        };
        fn with<'a>(plain: FormatArgs<'a>, content: &'a str) -> FormatArgs<'a> {
            FormatArgs {
                content: Some(content),
                ..plain
            }
        }

        let mut encoded = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            let mut elements: Vec<Slot> = Vec::new();
            let mut system_text = String::new();
            if i == 0 {
                elements.extend(self.format_prefix.apply(plain)?);
                if !system.is_empty() || tools.is_some() {
                    let tool_text = match tools {
                        Some(t) => {
                            first_text(&self.format_tools.apply(with(plain, t))?, self, "tools")?
                        }
                        None => String::new(),
                    };
                    let content = format!("{system}{tool_text}");
                    let formatted = self.format_system.apply(with(plain, &content))?;
                    if llama2 {
                        system_text = first_text(&formatted, self, "system")?;
                    } else {
                        elements.extend(formatted);
                    }
                }
            }
            let idx = (i / 2).to_string();
            let content = message.content.as_str();
            let formatted = match message.role {
                Role::User if llama2 => {
                    let joined = format!("{system_text}{content}");
                    self.format_user.apply(with(plain, &joined))?
                }
                Role::User => self.format_user.apply(FormatArgs {
                    idx: Some(&idx),
                    ..with(plain, content)
                })?,
                Role::Assistant => self.format_assistant.apply(with(plain, content))?,
                Role::Observation => self.format_observation.apply(with(plain, content))?,
                Role::Function if llama2 => self.format_function.apply(with(plain, content))?,
                Role::Function => self.format_function.apply(FormatArgs {
                    thought_words: Some((&self.thought_words.0, &self.thought_words.1)),
                    tool_call_words: Some((&self.tool_call_words.0, &self.tool_call_words.1)),
                    ..with(plain, content)
                })?,
                Role::System => {
                    return Err(Error::Message(format!(
                        "message {i}: a `system` message cannot be encoded in the conversation; pass it as the system prompt"
                    )))
                }
            };
            elements.extend(formatted);
            encoded.push(slots_to_ids(tok, &elements)?);
        }
        Ok(encoded)
    }

    /// Ids that end generation: eos and every stop word (LLaMA-Factory's
    /// `get_stop_token_ids`), sorted.
    pub fn stop_token_ids(&self, tok: &Tokenizer) -> Vec<u32> {
        let mut ids: Vec<u32> = tok.eos_token_id().into_iter().collect();
        ids.extend(
            self.stop_words
                .iter()
                .filter_map(|w| tok.convert_token_to_id(w)),
        );
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// What LLaMA-Factory's `get_template_and_fix_tokenizer` does to the tokenizer: the first
    /// stop word becomes eos when `replace_eos`, eos defaults to `<|endoftext|>`, pad defaults to
    /// eos, the other stop words become special tokens, and the Jinja chat template is set from
    /// this template when the tokenizer has none (or `replace_jinja_template`).
    pub fn fix_tokenizer(&self, tok: &mut Tokenizer) -> Result<()> {
        let mut stop_words: &[String] = &self.stop_words;
        if self.replace_eos {
            let Some((first, rest)) = stop_words.split_first() else {
                return Err(Error::Template {
                    template: self.name.clone(),
                    msg: "stop words are required to replace the EOS token".into(),
                });
            };
            replace_eos(tok, first);
            stop_words = rest;
        }
        if tok.eos_token_id().is_none() {
            replace_eos(tok, "<|endoftext|>");
        }
        if tok.pad_token_id().is_none() {
            if let Some(eos) = tok.eos_token().map(str::to_string) {
                tok.set_pad_token(&eos);
            }
        }
        if !stop_words.is_empty() {
            tok.add_special_tokens(stop_words);
        }
        if tok.chat_template().is_none() || self.replace_jinja_template {
            // A template with `{"token": ...}` slots has no Jinja form; LLaMA-Factory keeps the
            // tokenizer's template then.
            if let Some(jinja) = self.jinja_template(tok) {
                tok.set_chat_template(jinja);
            }
        }
        Ok(())
    }

    /// This template as a Jinja chat template (LLaMA-Factory's `_get_jinja_template`); `None`
    /// when a slot is a `{"token": ...}` dict, which it cannot express.
    pub fn jinja_template(&self, tok: &Tokenizer) -> Option<String> {
        let prefix = slots_to_jinja(self.format_prefix.slots(), tok, "content")?;
        let system = slots_to_jinja(self.format_system.slots(), tok, "system_message")?;
        let user = slots_to_jinja(self.format_user.slots(), tok, "content")?;
        let assistant = slots_to_jinja(self.format_assistant.slots(), tok, "content")?;
        let mut out = String::new();
        if !prefix.is_empty() {
            out += &format!("{{{{ {prefix} }}}}");
        }
        if !self.default_system.is_empty() {
            out += &format!(
                "{{% set system_message = '{}' %}}",
                jinja_escape(&self.default_system)
            );
        }
        out += "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}\
                {% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% endif %}";
        if self.kind == TemplateKind::Llama2 {
            out += &format!(
                "{{% for message in loop_messages %}}\
                 {{% if loop.index0 == 0 and system_message is defined %}}\
                 {{% set content = {system} + message['content'] %}}\
                 {{% else %}}{{% set content = message['content'] %}}{{% endif %}}"
            );
        } else {
            out += &format!(
                "{{% if system_message is defined %}}{{{{ {system} }}}}{{% endif %}}\
                 {{% for message in loop_messages %}}\
                 {{% set content = message['content'] %}}"
            );
        }
        out += &format!(
            "{{% if message['role'] == 'user' %}}{{{{ {user} }}}}\
             {{% elif message['role'] == 'assistant' %}}{{{{ {assistant} }}}}\
             {{% endif %}}{{% endfor %}}"
        );
        Some(out)
    }
}

/// `_add_or_replace_eos_token`.
fn replace_eos(tok: &mut Tokenizer, eos: &str) {
    if tok.eos_token() != Some(eos) {
        tok.set_eos_token(eos);
    }
}

/// Groups per-message ids into (prompt, response) pairs.
fn pairs(encoded: Vec<Vec<u32>>) -> Result<Vec<Pair>> {
    if !encoded.len().is_multiple_of(2) {
        return Err(Error::Message(format!(
            "a conversation needs prompt/response pairs, got {} messages",
            encoded.len()
        )));
    }
    let mut out = Vec::with_capacity(encoded.len() / 2);
    let mut it = encoded.into_iter();
    while let (Some(p), Some(r)) = (it.next(), it.next()) {
        out.push((p, r));
    }
    Ok(out)
}

/// The first slot of a formatter output, which must be text (LLaMA-Factory's `apply(...)[0]`).
fn first_text(slots: &[Slot], t: &Template, what: &str) -> Result<String> {
    match slots.first() {
        Some(Slot::Text(s)) => Ok(s.clone()),
        Some(Slot::Special(_)) | Some(Slot::Token(_)) | None => Err(Error::Template {
            template: t.name.clone(),
            msg: format!("the {what} formatter must start with a text slot"),
        }),
    }
}

/// `_convert_elements_to_ids`: text pieces are tokenized one by one without special tokens.
pub(crate) fn slots_to_ids(tok: &Tokenizer, slots: &[Slot]) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for slot in slots {
        match slot {
            Slot::Text(s) if s.is_empty() => {}
            Slot::Text(s) => ids.extend(tok.encode(s, false)?),
            Slot::Token(t) => ids.push(tok.convert_token_to_id(t).ok_or_else(|| {
                Error::Message(format!(
                    "token {t:?} is not in the vocabulary and the tokenizer has no unk token"
                ))
            })?),
            Slot::Special(name) => {
                if name == "bos_token" {
                    ids.extend(tok.bos_token_id());
                } else if name == "eos_token" {
                    ids.extend(tok.eos_token_id());
                }
            }
        }
    }
    Ok(ids)
}

/// `_jinja_escape`: single quotes are backslash-escaped.
fn jinja_escape(s: &str) -> String {
    s.replace('\'', "\\'")
}

/// `_convert_slots_to_jinja`: quoted text pieces around the placeholder, joined with ` + `.
fn slots_to_jinja(slots: &[Slot], tok: &Tokenizer, placeholder: &str) -> Option<String> {
    let mut items: Vec<String> = Vec::new();
    for slot in slots {
        match slot {
            Slot::Text(s) => {
                let pieces: Vec<&str> = s.split("{{content}}").collect();
                if !pieces[0].is_empty() {
                    items.push(format!("'{}'", jinja_escape(pieces[0])));
                }
                if pieces.len() > 1 {
                    items.push(placeholder.to_string());
                    if !pieces[1].is_empty() {
                        items.push(format!("'{}'", jinja_escape(pieces[1])));
                    }
                }
            }
            Slot::Special(name) => {
                if name == "bos_token" && tok.bos_token_id().is_some() {
                    items.push(format!("'{}'", tok.bos_token().unwrap_or_default()));
                } else if name == "eos_token" && tok.eos_token_id().is_some() {
                    items.push(format!("'{}'", tok.eos_token().unwrap_or_default()));
                }
            }
            Slot::Token(_) => return None,
        }
    }
    Some(items.join(" + "))
}
