//! Template files (`template_file: PATH`, an lmf extension; LLaMA-Factory has no such key): chat
//! templates written as data instead of Python. Each template has the keyword arguments of
//! LLaMA-Factory's `register_template` with the same names, defaults and slot syntax, so a
//! `register_template(...)` call translates field by field:
//!
//! ```yaml
//! templates:
//!   - name: my_llama4
//!     format_user: {slots: ["<|header_start|>user<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n"]}
//!     format_assistant: {slots: ["{{content}}<|eot|>"]}
//!     format_function: {slots: ["{{content}}<|eot|>"], tool_format: llama3}
//!     format_tools: {tool_format: llama3}
//!     format_prefix: {slots: [{bos_token}]}
//!     stop_words: ["<|eot|>", "<|eom|>"]
//!     replace_eos: true
//! ```
//!
//! A formatter is a mapping of `slots`, `tool_format` and `type` (the formatter class; by
//! default the one LLaMA-Factory uses for that field: `StringFormatter` for user, assistant,
//! system and observation, `FunctionFormatter` for function, `ToolFormatter` for tools,
//! `EmptyFormatter` for the prefix). A slot is a string (`{{content}}`, `{{idx}}` are filled as
//! `StringFormatter` fills them), the set `{bos_token}` / `{eos_token}` (in YAML flow syntax a
//! mapping with a null value; `{"bos_token": null}` in JSON), or `{token: "<|x|>"}`. Files
//! ending in `.json` are read as JSON, any other as YAML. Mistakes are errors naming the file,
//! the template (index and name) and the field.

use std::path::Path;

use serde_json::{Map, Value};

use super::formatter::{Formatter, Slot};
use super::registry::TemplateSpec;
use super::template::{Template, TemplateKind};
use super::tools::ToolFormat;
use super::{Error, Result};
use crate::args::closest::closest;

/// The fields of one template: `register_template`'s keyword arguments, in its order.
pub const TEMPLATE_FIELDS: [&str; 19] = [
    "name",
    "format_user",
    "format_assistant",
    "format_system",
    "format_function",
    "format_observation",
    "format_tools",
    "format_prefix",
    "default_system",
    "stop_words",
    "thought_words",
    "tool_call_words",
    "efficient_eos",
    "replace_eos",
    "replace_jinja_template",
    "enable_thinking",
    "preserve_thinking",
    "mm_plugin",
    "template_class",
];

/// LLaMA-Factory's multimodal plugins (`PLUGINS` of `mm_plugin.py`); lmf records the name only.
const PLUGINS: [&str; 24] = [
    "base",
    "ernie_vl",
    "gemma3",
    "gemma3n",
    "gemma4",
    "glm4v",
    "intern_vl",
    "kimi_vl",
    "llama4",
    "llava",
    "llava_next",
    "llava_next_video",
    "lfm2_vl",
    "minicpm_v",
    "minicpm_v_4_6",
    "mllama",
    "paligemma",
    "pixtral",
    "qwen2_audio",
    "qwen2_omni",
    "qwen2_vl",
    "qwen3_vl",
    "video_llava",
    "youtu_vl",
];

/// `template_class`: LLaMA-Factory's class names, and lmf's own names of them.
const CLASSES: [(&str, &str, TemplateKind); 4] = [
    ("Template", "plain", TemplateKind::Plain),
    ("Llama2Template", "llama2", TemplateKind::Llama2),
    ("ReasoningTemplate", "reasoning", TemplateKind::Reasoning),
    (
        "Glm47ReasoningTemplate",
        "glm47_reasoning",
        TemplateKind::Glm47Reasoning,
    ),
];

/// The templates of the template file at `path`, in file order.
pub fn load_template_file(path: &Path) -> Result<Vec<Template>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| file_error(path, format!("cannot read it: {e}")))?;
    parse_template_file(&text, path)
}

/// The templates of a template file's `text`; `path` is named in errors, and a `.json`
/// extension makes it JSON (anything else is YAML).
pub fn parse_template_file(text: &str, path: &Path) -> Result<Vec<Template>> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let root: Value = if is_json {
        serde_json::from_str(text).map_err(|e| file_error(path, format!("invalid JSON: {e}")))?
    } else {
        serde_norway::from_str(text).map_err(|e| file_error(path, format!("invalid YAML: {e}")))?
    };
    let Value::Object(root) = root else {
        return Err(file_error(
            path,
            format!(
                "expected a mapping with a `templates` list, found {}",
                kind(&root)
            ),
        ));
    };
    if let Some(key) = root.keys().find(|k| *k != "templates") {
        let msg = if TEMPLATE_FIELDS.contains(&key.as_str()) {
            format!("`{key}` at the top level: the templates go in a `templates:` list")
        } else {
            format!("unknown key `{key}`: a template file holds one key, `templates` (a list)")
        };
        return Err(file_error(path, msg));
    }
    let list = match root.get("templates") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => return Err(file_error(path, "`templates` is empty".into())),
        Some(other) => {
            return Err(file_error(
                path,
                format!(
                    "`templates`: expected a list of templates, found {}",
                    kind(other)
                ),
            ))
        }
        None => return Err(file_error(path, "no `templates` list".into())),
    };
    let mut templates: Vec<Template> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let template = parse_template(item, i, path)?;
        if let Some(j) = templates.iter().position(|t| t.name == template.name) {
            return Err(file_error(
                path,
                format!(
                    "templates[{i}]: `{}` is defined twice (also templates[{j}])",
                    template.name
                ),
            ));
        }
        templates.push(template);
    }
    Ok(templates)
}

fn file_error(path: &Path, msg: String) -> Error {
    Error::TemplateFile {
        path: path.to_path_buf(),
        msg,
    }
}

/// Where in the file a value is: the file and the template, for errors.
struct At<'a> {
    path: &'a Path,
    template: String,
}

impl At<'_> {
    /// An error about field `field` of this template.
    fn field(&self, field: &str, msg: impl std::fmt::Display) -> Error {
        file_error(self.path, format!("{}: `{field}`: {msg}", self.template))
    }

    /// An error about this template as a whole.
    fn whole(&self, msg: impl std::fmt::Display) -> Error {
        file_error(self.path, format!("{}: {msg}", self.template))
    }
}

/// One template of the `templates` list (its index is `i`).
fn parse_template(item: &Value, i: usize, path: &Path) -> Result<Template> {
    let mut at = At {
        path,
        template: format!("templates[{i}]"),
    };
    let Value::Object(map) = item else {
        return Err(at.whole(format!(
            "expected a mapping of register_template fields, found {}",
            kind(item)
        )));
    };
    let name = match map.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(at.field("name", "is empty")),
        Some(other) => {
            return Err(at.field("name", format!("expected a string, found {}", kind(other))))
        }
        None => return Err(at.whole("missing `name` (every template needs one)")),
    };
    at.template = format!("templates[{i}] (`{name}`)");
    if let Some(key) = map.keys().find(|k| !TEMPLATE_FIELDS.contains(&k.as_str())) {
        let hint = closest(key, TEMPLATE_FIELDS)
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        return Err(at.whole(format!(
            "unknown field `{key}`{hint}; the fields are register_template's: {}",
            TEMPLATE_FIELDS.join(", ")
        )));
    }

    use FormatterClass::{Empty, Function, String as Str, Tool};
    let mut spec = TemplateSpec::default();
    let fmt =
        |field: &str, default: FormatterClass, allowed: &[FormatterClass]| match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => formatter(&at, field, v, default, allowed).map(Some),
        };
    spec.format_user = fmt("format_user", Str, &[Str, Empty])?;
    spec.format_assistant = fmt("format_assistant", Str, &[Str, Empty])?;
    spec.format_system = fmt("format_system", Str, &[Str, Empty])?;
    spec.format_function = fmt("format_function", Function, &[Function])?;
    spec.format_observation = fmt("format_observation", Str, &[Str, Empty])?;
    spec.format_tools = fmt("format_tools", Tool, &[Tool, Str])?;
    spec.format_prefix = fmt("format_prefix", Empty, &[Empty])?;
    if let Some(v) = map.get("default_system") {
        spec.default_system = string(&at, "default_system", v)?;
    }
    match map.get("stop_words") {
        None | Some(Value::Null) => {}
        Some(Value::Array(words)) => {
            spec.stop_words = words
                .iter()
                .enumerate()
                .map(|(j, w)| string(&at, &format!("stop_words[{j}]"), w))
                .collect::<Result<_>>()?;
        }
        Some(other) => {
            return Err(at.field(
                "stop_words",
                format!("expected a list of strings, found {}", kind(other)),
            ))
        }
    }
    spec.thought_words = word_pair(&at, "thought_words", map)?;
    spec.tool_call_words = word_pair(&at, "tool_call_words", map)?;
    spec.efficient_eos = boolean(&at, "efficient_eos", map)?;
    spec.replace_eos = boolean(&at, "replace_eos", map)?;
    spec.replace_jinja_template = boolean(&at, "replace_jinja_template", map)?;
    spec.preserve_thinking = boolean(&at, "preserve_thinking", map)?;
    match map.get("enable_thinking") {
        None => {}
        Some(Value::Bool(b)) => spec.enable_thinking = Some(*b),
        Some(Value::Null) => spec.enable_thinking = None,
        Some(other) => {
            return Err(at.field(
                "enable_thinking",
                format!("expected true, false or null, found {}", kind(other)),
            ))
        }
    }
    if let Some(v) = map.get("mm_plugin") {
        spec.mm_plugin = mm_plugin(&at, v)?;
    }
    match map.get("template_class") {
        None => {}
        Some(Value::String(s)) => {
            spec.kind = CLASSES
                .iter()
                .find(|(class, alias, _)| s == class || s == alias)
                .map(|&(_, _, kind)| kind)
                .ok_or_else(|| {
                    let names: Vec<&str> = CLASSES.iter().map(|c| c.0).collect();
                    at.field(
                        "template_class",
                        format!("unknown class `{s}` (known: {})", names.join(", ")),
                    )
                })?;
        }
        Some(other) => {
            return Err(at.field(
                "template_class",
                format!("expected a class name, found {}", kind(other)),
            ))
        }
    }
    Ok(spec.build(&name))
}

/// LLaMA-Factory's formatter classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormatterClass {
    Empty,
    String,
    Function,
    Tool,
}

impl FormatterClass {
    const ALL: [FormatterClass; 4] = [
        FormatterClass::Empty,
        FormatterClass::String,
        FormatterClass::Function,
        FormatterClass::Tool,
    ];

    fn name(self) -> &'static str {
        match self {
            FormatterClass::Empty => "EmptyFormatter",
            FormatterClass::String => "StringFormatter",
            FormatterClass::Function => "FunctionFormatter",
            FormatterClass::Tool => "ToolFormatter",
        }
    }

    fn of(f: &Formatter) -> FormatterClass {
        match f {
            Formatter::Empty(_) => FormatterClass::Empty,
            Formatter::String(_) => FormatterClass::String,
            Formatter::Function { .. } => FormatterClass::Function,
            Formatter::Tool(_) => FormatterClass::Tool,
        }
    }
}

/// A formatter mapping (`slots`, `tool_format`, `type`) of field `field`: `default` is its
/// class when `type` is not given, `allowed` the classes the field takes.
fn formatter(
    at: &At<'_>,
    field: &str,
    v: &Value,
    default: FormatterClass,
    allowed: &[FormatterClass],
) -> Result<Formatter> {
    let Value::Object(m) = v else {
        return Err(at.field(
            field,
            format!(
                "expected a formatter mapping such as {{slots: [\"...{{{{content}}}}...\"]}}, found {}",
                kind(v)
            ),
        ));
    };
    if let Some(key) = m
        .keys()
        .find(|k| !["slots", "tool_format", "type"].contains(&k.as_str()))
    {
        return Err(at.field(
            field,
            format!("unknown key `{key}`; a formatter has `slots`, `tool_format` and `type`"),
        ));
    }
    let class = match m.get("type") {
        None => default,
        Some(Value::String(s)) => FormatterClass::ALL
            .into_iter()
            .find(|c| c.name() == s && allowed.contains(c))
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|c| c.name()).collect();
                at.field(
                    &format!("{field}.type"),
                    format!("`{s}` is not one of {}", names.join(", ")),
                )
            })?,
        Some(other) => {
            return Err(at.field(
                &format!("{field}.type"),
                format!("expected a formatter class name, found {}", kind(other)),
            ))
        }
    };
    let slots_field = format!("{field}.slots");
    let slots = match m.get("slots") {
        None => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .enumerate()
                .map(|(j, s)| slot(at, &format!("{slots_field}[{j}]"), s))
                .collect::<Result<Vec<Slot>>>()?,
        ),
        Some(other) => {
            return Err(at.field(
                &slots_field,
                format!("expected a list of slots, found {}", kind(other)),
            ))
        }
    };
    let format_field = format!("{field}.tool_format");
    let tool_format = match m.get("tool_format") {
        None => None,
        Some(Value::String(s)) => {
            Some(ToolFormat::from_name(s).map_err(|e| at.field(&format_field, e))?)
        }
        Some(other) => {
            return Err(at.field(
                &format_field,
                format!("expected a tool format name, found {}", kind(other)),
            ))
        }
    };
    let needs_format = || {
        at.field(
            field,
            format!(
                "a {} needs a `tool_format` (one of {})",
                class.name(),
                ToolFormat::NAMES.join(", ")
            ),
        )
    };
    let no_format = || {
        at.field(
            &format_field,
            format!(
                "a {} takes no tool format (only FunctionFormatter and ToolFormatter do)",
                class.name()
            ),
        )
    };
    let needs_slots = || at.field(field, format!("a {} needs `slots` (a list)", class.name()));
    let has_placeholder = |slots: &[Slot]| {
        slots
            .iter()
            .any(|s| matches!(s, Slot::Text(t) if contains_placeholder(t)))
    };
    let needs_placeholder = || {
        at.field(
            &slots_field,
            format!(
                "a {} needs a placeholder such as {{{{content}}}} in a text slot",
                class.name()
            ),
        )
    };
    Ok(match class {
        FormatterClass::Tool => {
            if slots.is_some() {
                return Err(at.field(
                    &slots_field,
                    "a ToolFormatter takes no slots (it writes the tools in its tool_format)",
                ));
            }
            Formatter::Tool(tool_format.ok_or_else(needs_format)?)
        }
        FormatterClass::Function => {
            let slots = slots.ok_or_else(needs_slots)?;
            let tool_format = tool_format.ok_or_else(needs_format)?;
            if !has_placeholder(&slots) {
                return Err(needs_placeholder());
            }
            Formatter::Function { slots, tool_format }
        }
        FormatterClass::String => {
            if tool_format.is_some() {
                return Err(no_format());
            }
            let slots = slots.ok_or_else(needs_slots)?;
            if !has_placeholder(&slots) {
                return Err(needs_placeholder());
            }
            Formatter::String(slots)
        }
        FormatterClass::Empty => {
            if tool_format.is_some() {
                return Err(no_format());
            }
            let slots = slots.unwrap_or_default();
            if has_placeholder(&slots) {
                return Err(at.field(
                    &slots_field,
                    "an EmptyFormatter cannot hold a placeholder such as {{content}}",
                ));
            }
            Formatter::Empty(slots)
        }
    })
}

/// Whether `s` holds a `{{name}}` placeholder (LLaMA-Factory's
/// `\{\{[a-zA-Z_][a-zA-Z0-9_]*\}\}`).
fn contains_placeholder(s: &str) -> bool {
    s.match_indices("{{").any(|(i, _)| {
        let rest = &s[i + 2..];
        let Some(end) = rest.find("}}") else {
            return false;
        };
        let name = &rest[..end];
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// One slot: a string, `{bos_token}` / `{eos_token}` (a mapping with a null value), or
/// `{token: "<|x|>"}`.
fn slot(at: &At<'_>, field: &str, v: &Value) -> Result<Slot> {
    match v {
        Value::String(s) => return Ok(Slot::Text(s.clone())),
        Value::Object(m) if m.len() == 1 => {
            if let Some((key, value)) = m.iter().next() {
                match (key.as_str(), value) {
                    ("token", Value::String(t)) => return Ok(Slot::Token(t.clone())),
                    ("bos_token" | "eos_token", Value::Null) => {
                        return Ok(Slot::Special(key.clone()))
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Err(at.field(
        field,
        format!(
            "a slot is a string, {{bos_token}}, {{eos_token}} or {{token: \"<|...|>\"}}; found {}",
            serde_json::to_string(v).unwrap_or_else(|_| kind(v).into())
        ),
    ))
}

fn string(at: &At<'_>, field: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(at.field(field, format!("expected a string, found {}", kind(other)))),
    }
}

fn boolean(at: &At<'_>, field: &str, map: &Map<String, Value>) -> Result<bool> {
    match map.get(field) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(at.field(
            field,
            format!("expected true or false, found {}", kind(other)),
        )),
    }
}

/// `thought_words` / `tool_call_words`: a list of two strings (Python's tuple).
fn word_pair(
    at: &At<'_>,
    field: &str,
    map: &Map<String, Value>,
) -> Result<Option<(String, String)>> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(words)) if words.len() == 2 => Ok(Some((
            string(at, &format!("{field}[0]"), &words[0])?,
            string(at, &format!("{field}[1]"), &words[1])?,
        ))),
        Some(other) => Err(at.field(
            field,
            format!(
                "expected a list of two strings (opening and closing word), found {}",
                match other {
                    Value::Array(w) => format!("a list of {}", w.len()),
                    _ => kind(other).to_string(),
                }
            ),
        )),
    }
}

/// `mm_plugin`: a plugin name, or `get_mm_plugin`'s arguments (`name`, `image_token`,
/// `video_token`, `audio_token`). lmf records the name only (multimodal inputs are not
/// ported); `base` is no plugin.
fn mm_plugin(at: &At<'_>, v: &Value) -> Result<Option<String>> {
    let name = match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            for (key, value) in m {
                match key.as_str() {
                    "name" => {}
                    "image_token" | "video_token" | "audio_token" => {
                        if !matches!(value, Value::String(_) | Value::Null) {
                            return Err(at.field(
                                &format!("mm_plugin.{key}"),
                                format!("expected a string, found {}", kind(value)),
                            ));
                        }
                    }
                    _ => {
                        return Err(at.field(
                            "mm_plugin",
                            format!(
                                "unknown key `{key}`; get_mm_plugin takes name, image_token, \
                                 video_token, audio_token"
                            ),
                        ))
                    }
                }
            }
            match m.get("name") {
                Some(n) => string(at, "mm_plugin.name", n)?,
                None => return Err(at.field("mm_plugin", "missing `name`")),
            }
        }
        other => {
            return Err(at.field(
                "mm_plugin",
                format!(
                    "expected a plugin name or a mapping with `name`, found {}",
                    kind(other)
                ),
            ))
        }
    };
    if !PLUGINS.contains(&name.as_str()) {
        return Err(at.field(
            "mm_plugin",
            format!(
                "unknown multimodal plugin `{name}` (known: {})",
                PLUGINS.join(", ")
            ),
        ));
    }
    Ok((name != "base").then_some(name))
}

/// "a list", "a string", ...: the JSON type of `v`, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// `templates` written as a template file (YAML) that [`load_template_file`] reads back into
/// the same templates: only the fields that differ from `register_template`'s defaults, strings
/// double-quoted. Set slots other than `{bos_token}` / `{eos_token}` add nothing (in
/// LLaMA-Factory as here) and are left out.
pub fn template_file_yaml(templates: &[Template]) -> String {
    let mut out = String::from(
        "# An lmf template file (`template_file`): register_template's arguments, defaults left out.\n\
         templates:\n",
    );
    for template in templates {
        write_template(&mut out, template);
    }
    out
}

/// A [`TemplateSpec`] that builds `template` with as few non-default fields as possible.
fn minimal_spec(template: &Template) -> TemplateSpec {
    let target = without_noop_slots(template);
    let mut spec = TemplateSpec {
        kind: target.kind,
        format_user: Some(target.format_user.clone()),
        format_assistant: Some(target.format_assistant.clone()),
        format_system: Some(target.format_system.clone()),
        format_function: Some(target.format_function.clone()),
        format_observation: Some(target.format_observation.clone()),
        format_tools: Some(target.format_tools.clone()),
        format_prefix: Some(target.format_prefix.clone()),
        default_system: target.default_system.clone(),
        stop_words: target.stop_words.clone(),
        thought_words: Some(target.thought_words.clone()),
        tool_call_words: Some(target.tool_call_words.clone()),
        efficient_eos: target.efficient_eos,
        replace_eos: target.replace_eos,
        replace_jinja_template: target.replace_jinja_template,
        enable_thinking: target.enable_thinking,
        preserve_thinking: target.preserve_thinking,
        mm_plugin: target.mm_plugin.clone(),
    };
    let builds_target = |spec: &TemplateSpec| {
        let mut built = spec.clone().build(&target.name);
        built.tool_date = target.tool_date.clone();
        built == target
    };
    // Each field in turn goes back to its default when the template stays the same (the
    // formatters that others default from come first: user before observation, assistant
    // before function).
    let defaults = TemplateSpec::default();
    let resets: [fn(&mut TemplateSpec, &TemplateSpec); 18] = [
        |s, d| s.kind = d.kind,
        |s, _| s.format_user = None,
        |s, _| s.format_assistant = None,
        |s, _| s.format_system = None,
        |s, _| s.format_function = None,
        |s, _| s.format_observation = None,
        |s, _| s.format_tools = None,
        |s, _| s.format_prefix = None,
        |s, d| s.default_system = d.default_system.clone(),
        |s, d| s.stop_words = d.stop_words.clone(),
        |s, _| s.thought_words = None,
        |s, _| s.tool_call_words = None,
        |s, d| s.efficient_eos = d.efficient_eos,
        |s, d| s.replace_eos = d.replace_eos,
        |s, d| s.replace_jinja_template = d.replace_jinja_template,
        |s, d| s.enable_thinking = d.enable_thinking,
        |s, d| s.preserve_thinking = d.preserve_thinking,
        |s, d| s.mm_plugin = d.mm_plugin.clone(),
    ];
    for reset in resets {
        let mut trial = spec.clone();
        reset(&mut trial, &defaults);
        if builds_target(&trial) {
            spec = trial;
        }
    }
    spec
}

/// `template` without its set slots other than `{bos_token}` / `{eos_token}`, which add no id
/// and no Jinja text.
pub(crate) fn without_noop_slots(template: &Template) -> Template {
    let keep = |s: &Slot| !matches!(s, Slot::Special(n) if n != "bos_token" && n != "eos_token");
    let clean = |f: &Formatter| match f {
        Formatter::Empty(s) => Formatter::Empty(s.iter().filter(|x| keep(x)).cloned().collect()),
        Formatter::String(s) => Formatter::String(s.iter().filter(|x| keep(x)).cloned().collect()),
        Formatter::Function { slots, tool_format } => Formatter::Function {
            slots: slots.iter().filter(|x| keep(x)).cloned().collect(),
            tool_format: *tool_format,
        },
        Formatter::Tool(t) => Formatter::Tool(*t),
    };
    Template {
        format_user: clean(&template.format_user),
        format_assistant: clean(&template.format_assistant),
        format_system: clean(&template.format_system),
        format_function: clean(&template.format_function),
        format_observation: clean(&template.format_observation),
        format_tools: clean(&template.format_tools),
        format_prefix: clean(&template.format_prefix),
        ..template.clone()
    }
}

fn write_template(out: &mut String, template: &Template) {
    let spec = minimal_spec(template);
    out.push_str(&format!("  - name: {}\n", quote(&template.name)));
    if spec.kind != TemplateKind::Plain {
        let class = CLASSES
            .iter()
            .find(|c| c.2 == spec.kind)
            .map_or("", |c| c.0);
        out.push_str(&format!("    template_class: {class}\n"));
    }
    let formatters = [
        ("format_user", &spec.format_user, FormatterClass::String),
        (
            "format_assistant",
            &spec.format_assistant,
            FormatterClass::String,
        ),
        ("format_system", &spec.format_system, FormatterClass::String),
        (
            "format_function",
            &spec.format_function,
            FormatterClass::Function,
        ),
        (
            "format_observation",
            &spec.format_observation,
            FormatterClass::String,
        ),
        ("format_tools", &spec.format_tools, FormatterClass::Tool),
        ("format_prefix", &spec.format_prefix, FormatterClass::Empty),
    ];
    for (field, formatter, default) in formatters {
        let Some(f) = formatter else { continue };
        let mut parts = Vec::new();
        if FormatterClass::of(f) != default {
            parts.push(format!("type: {}", FormatterClass::of(f).name()));
        }
        if !matches!(f, Formatter::Tool(_)) {
            let slots: Vec<String> = f.slots().iter().map(slot_text).collect();
            parts.push(format!("slots: [{}]", slots.join(", ")));
        }
        if let Formatter::Function { tool_format, .. } | Formatter::Tool(tool_format) = f {
            parts.push(format!("tool_format: {}", tool_format.name()));
        }
        out.push_str(&format!("    {field}: {{{}}}\n", parts.join(", ")));
    }
    if !spec.default_system.is_empty() {
        out.push_str(&format!(
            "    default_system: {}\n",
            quote(&spec.default_system)
        ));
    }
    if !spec.stop_words.is_empty() {
        let words: Vec<String> = spec.stop_words.iter().map(|w| quote(w)).collect();
        out.push_str(&format!("    stop_words: [{}]\n", words.join(", ")));
    }
    for (field, words) in [
        ("thought_words", &spec.thought_words),
        ("tool_call_words", &spec.tool_call_words),
    ] {
        if let Some((open, close)) = words {
            out.push_str(&format!(
                "    {field}: [{}, {}]\n",
                quote(open),
                quote(close)
            ));
        }
    }
    for (field, on) in [
        ("efficient_eos", spec.efficient_eos),
        ("replace_eos", spec.replace_eos),
        ("replace_jinja_template", spec.replace_jinja_template),
        ("preserve_thinking", spec.preserve_thinking),
    ] {
        if on {
            out.push_str(&format!("    {field}: true\n"));
        }
    }
    if spec.enable_thinking != Some(true) {
        let v = spec
            .enable_thinking
            .map_or("null", |b| if b { "true" } else { "false" });
        out.push_str(&format!("    enable_thinking: {v}\n"));
    }
    if let Some(plugin) = &spec.mm_plugin {
        out.push_str(&format!("    mm_plugin: {}\n", quote(plugin)));
    }
}

fn slot_text(slot: &Slot) -> String {
    match slot {
        Slot::Text(s) => quote(s),
        Slot::Special(name) => format!("{{{name}}}"),
        Slot::Token(t) => format!("{{token: {}}}", quote(t)),
    }
}

/// A YAML double-quoted scalar: JSON's escapes, plus `\uXXXX` for the characters YAML does not
/// allow unescaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20
                || (0x7f..=0x9f).contains(&(c as u32))
                || c == '\u{feff}'
                || (0xfffe..=0xffff).contains(&(c as u32)) =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{get_template, template_names};

    fn parse(text: &str) -> Result<Vec<Template>> {
        parse_template_file(text, Path::new("t.yaml"))
    }

    #[test]
    fn placeholders_are_llamafactorys() {
        assert!(contains_placeholder("a{{content}}b"));
        assert!(contains_placeholder("{{idx}}"));
        assert!(contains_placeholder("{{_x9}}"));
        assert!(!contains_placeholder("{{9x}}"));
        assert!(!contains_placeholder("{{a b}}"));
        assert!(!contains_placeholder("{{content}"));
        assert!(!contains_placeholder("{{}}"));
        assert!(contains_placeholder("{{ {{content}}"));
    }

    #[test]
    fn tool_format_names_round_trip() {
        for name in ToolFormat::NAMES {
            assert_eq!(
                ToolFormat::from_name(name).map(ToolFormat::name).ok(),
                Some(name)
            );
        }
    }

    #[test]
    fn yaml_flow_set_is_a_special_slot() {
        let t = parse(
            "templates:\n  - name: x\n    format_user: {slots: [{bos_token}, \"u{{content}}\", {token: \"<t>\"}, {eos_token}]}\n",
        )
        .unwrap();
        assert_eq!(
            t[0].format_user,
            Formatter::String(vec![
                Slot::bos(),
                Slot::text("u{{content}}"),
                Slot::token("<t>"),
                Slot::eos()
            ])
        );
    }

    #[test]
    fn defaults_are_register_templates() {
        let t = parse(
            "templates:\n  - name: empty\n    format_assistant: {slots: [\"{{content}}\"]}\n",
        )
        .unwrap();
        assert_eq!(t[0], get_template("empty").unwrap());
    }

    /// Every built-in template written as a file reads back as the same template.
    #[test]
    fn every_builtin_round_trips() {
        let all: Vec<Template> = template_names()
            .iter()
            .map(|n| get_template(n).unwrap())
            .collect();
        let text = template_file_yaml(&all);
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back.len(), all.len());
        for (got, want) in back.iter().zip(&all) {
            assert_eq!(got, &without_noop_slots(want), "{}", want.name);
        }
        // and as JSON
        let yaml: Value = serde_norway::from_str(&text).unwrap();
        let json = serde_json::to_string(&yaml).unwrap();
        let back = parse_template_file(&json, Path::new("t.json")).unwrap();
        assert_eq!(back.len(), all.len());
        for (got, want) in back.iter().zip(&all) {
            assert_eq!(got, &without_noop_slots(want), "{}", want.name);
        }
    }
}
