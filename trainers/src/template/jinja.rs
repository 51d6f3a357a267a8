//! Rendering a tokenizer's Jinja `chat_template` the way transformers' `apply_chat_template`
//! does: `trim_blocks` and `lstrip_blocks` on, loop controls, Python string/dict methods
//! (minijinja-contrib's pycompat), `raise_exception`, `strftime_now`, and a `tojson` that
//! prints like Python's `json.dumps(ensure_ascii=False)` instead of Jinja's HTML-safe one.
//! The special tokens (`bos_token`, `eos_token`, ...) are template variables.

use std::collections::BTreeMap;

use lmf_models::tokenizer::Tokenizer;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};

use super::pyjson::PyJson;
use super::{Error, Result};

/// Renders `template` over `messages` (each `{"role", "content", ...}`), with `tools` (a JSON
/// list, or `None`) and `add_generation_prompt`; `extra` are more template variables
/// (e.g. `enable_thinking`).
pub fn render_chat_template(
    template: &str,
    tok: &Tokenizer,
    messages: &[PyJson],
    tools: Option<&PyJson>,
    add_generation_prompt: bool,
    extra: &[(&str, PyJson)],
) -> Result<String> {
    let env = environment();
    let compiled = env
        .template_from_str(template)
        .map_err(|e| Error::Jinja(one_line(&e)))?;
    let mut ctx: BTreeMap<String, Value> = tok
        .special_tokens_map()
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::from(v)))
        .collect();
    ctx.insert(
        "messages".into(),
        to_value(&PyJson::List(messages.to_vec())),
    );
    ctx.insert(
        "tools".into(),
        tools.map(to_value).unwrap_or(Value::from(())),
    );
    ctx.insert("documents".into(), Value::from(()));
    ctx.insert(
        "add_generation_prompt".into(),
        Value::from(add_generation_prompt),
    );
    for (k, v) in extra {
        ctx.insert(k.to_string(), to_value(v));
    }
    let ctx = Value::from(ctx);
    compiled.render(ctx).map_err(|e| Error::Jinja(one_line(&e)))
}

/// A message as the JSON object a chat template sees.
pub fn message_value(role: &str, content: &str) -> PyJson {
    PyJson::Dict(vec![
        ("role".into(), PyJson::Str(role.into())),
        ("content".into(), PyJson::Str(content.into())),
    ])
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax.trim_blocks(true).lstrip_blocks(true);
    if let Ok(config) = syntax.build() {
        env.set_syntax(config);
    }
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |format: String| -> Value {
        Value::from(crate::clock::now(&format))
    });
    env.add_filter("tojson", tojson);
    env
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let _: Option<Value> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let separators = match separators.as_deref() {
        Some([a, b]) => Some((a.clone(), b.clone())),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None => None,
    };
    let json = from_value(&value)?;
    Ok(json.dumps_with(
        indent,
        separators.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
        sort_keys.unwrap_or(false),
    ))
}

/// A JSON value as a minijinja value (maps keep their key order).
fn to_value(v: &PyJson) -> Value {
    match v {
        PyJson::Null => Value::from(()),
        PyJson::Bool(b) => Value::from(*b),
        PyJson::Int(i) => Value::from(*i),
        PyJson::Float(f) => Value::from(*f),
        PyJson::Str(s) => Value::from(s.as_str()),
        PyJson::List(items) => items.iter().map(to_value).collect(),
        PyJson::Dict(items) => {
            Value::from_pairs(items.iter().map(|(k, v)| (k.as_str(), to_value(v))))
        }
    }
}

/// A minijinja value as JSON, for `tojson`.
fn from_value(v: &Value) -> Result<PyJson, minijinja::Error> {
    Ok(match v.kind() {
        ValueKind::Undefined | ValueKind::None => PyJson::Null,
        ValueKind::Bool => PyJson::Bool(v.is_true()),
        ValueKind::Number => {
            if v.is_integer() {
                match i128::try_from(v.clone()) {
                    Ok(i) => PyJson::Int(i),
                    Err(_) => PyJson::Float(f64::try_from(v.clone())?),
                }
            } else {
                PyJson::Float(f64::try_from(v.clone())?)
            }
        }
        ValueKind::String => PyJson::Str(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Seq | ValueKind::Iterable => PyJson::List(
            v.try_iter()?
                .map(|x| from_value(&x))
                .collect::<Result<_, _>>()?,
        ),
        ValueKind::Map => {
            let mut items = Vec::new();
            for key in v.try_iter()? {
                let item = v.get_item(&key)?;
                let key = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => key.to_string(),
                };
                items.push((key, from_value(&item)?));
            }
            PyJson::Dict(items)
        }
        _ => PyJson::Str(v.to_string()),
    })
}

/// A minijinja error with its cause chain on one line.
fn one_line(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg.replace('\n', " ")
}
