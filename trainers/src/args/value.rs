//! Typing one raw value by the field it lands in: booleans, integers, floats, strings,
//! comma-separated lists, JSON configs and LLaMA-Factory's fixed choices (`Literal` / `StrEnum`).
//!
//! Flags (`--key value`) arrive as text and are parsed the way HfArgumentParser parses them;
//! file and `key=value` values arrive as YAML/JSON and are checked against the type. Strings
//! that spell a number or a boolean are accepted for those types either way.

use serde::Serialize;
use serde_json::Value;

use super::raw::RawValue;

/// A Rust type that a LLaMA-Factory argument can have.
pub trait ArgValue: Sized + Clone + PartialEq + Serialize {
    /// LLaMA-Factory's declared type as a short name (`bool`, `int?`, `choice(a|b)`, ...).
    fn kind() -> String;

    /// Types a raw value; the error says what was expected (`"an integer"`, ...).
    fn from_raw(raw: &RawValue) -> Result<Self, String>;

    /// The value of a bare `--no_<key>` flag, which HfArgumentParser offers only for booleans
    /// that default to true.
    fn negated(_default: &Self) -> Option<Self> {
        None
    }
}

/// HfArgumentParser's `string_to_bool`, plus YAML 1.1's on/off (which OmegaConf reads as
/// booleans).
fn text_to_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "t" | "y" | "1" | "on" => Some(true),
        "no" | "false" | "f" | "n" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// The text of a scalar raw value: a string as is, a number by its digits, a `key=value` override
/// by what was typed. `None` for null, lists, mappings and bare flags.
fn scalar_text(raw: &RawValue) -> Option<String> {
    match raw {
        RawValue::File(Value::String(s)) => Some(s.clone()),
        RawValue::File(Value::Number(n)) => Some(n.to_string()),
        RawValue::File(_) => None,
        RawValue::Override { value, text } => match value {
            Value::String(s) => Some(s.clone()),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
            _ => Some(text.clone()),
        },
        RawValue::Flag(text) => Some(text.clone()),
        RawValue::BareFlag => None,
    }
}

/// Number text without Python's digit-group underscores (`1_000`, which YAML 1.1 and `int()`
/// accept and YAML 1.2 reads as a string).
fn number_text(text: &str) -> String {
    text.trim().replace('_', "")
}

/// The JSON value of a file or override, `None` for flags.
fn json_value(raw: &RawValue) -> Option<&Value> {
    match raw {
        RawValue::File(v) | RawValue::Override { value: v, .. } => Some(v),
        RawValue::Flag(_) | RawValue::BareFlag => None,
    }
}

/// True when a file or override value is null (`key: null`, `key: ~`, `key=`, `key=null`).
fn is_null(raw: &RawValue) -> bool {
    matches!(json_value(raw), Some(Value::Null))
}

impl ArgValue for bool {
    fn kind() -> String {
        "bool".into()
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        const EXPECTED: &str = "a boolean (true/false)";
        match raw {
            RawValue::BareFlag => Ok(true),
            RawValue::File(Value::Bool(b))
            | RawValue::Override {
                value: Value::Bool(b),
                ..
            } => Ok(*b),
            RawValue::File(Value::Number(n))
            | RawValue::Override {
                value: Value::Number(n),
                ..
            } => match n.as_i64() {
                Some(0) => Ok(false),
                Some(1) => Ok(true),
                _ => Err(EXPECTED.into()),
            },
            _ => scalar_text(raw)
                .and_then(|t| text_to_bool(&t))
                .ok_or_else(|| EXPECTED.into()),
        }
    }

    fn negated(default: &Self) -> Option<Self> {
        default.then_some(false)
    }
}

impl ArgValue for i64 {
    fn kind() -> String {
        "int".into()
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        const EXPECTED: &str = "an integer";
        if let Some(Value::Number(n)) = json_value(raw) {
            return n.as_i64().ok_or_else(|| EXPECTED.into());
        }
        scalar_text(raw)
            .and_then(|t| number_text(&t).parse::<i64>().ok())
            .ok_or_else(|| EXPECTED.into())
    }
}

impl ArgValue for f64 {
    fn kind() -> String {
        "float".into()
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        const EXPECTED: &str = "a number";
        if let Some(Value::Number(n)) = json_value(raw) {
            return n.as_f64().ok_or_else(|| EXPECTED.into());
        }
        scalar_text(raw)
            .and_then(|t| number_text(&t).parse::<f64>().ok())
            .ok_or_else(|| EXPECTED.into())
    }
}

impl ArgValue for String {
    fn kind() -> String {
        "str".into()
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        scalar_text(raw).ok_or_else(|| "a string".into())
    }
}

/// A comma-separated list (`a, b` → `["a", "b"]`, items trimmed), as LLaMA-Factory's
/// `__post_init__` splits `adapter_name_or_path`, `lora_target`, `dataset`, ... A YAML list is
/// taken as is, as there.
impl ArgValue for Vec<String> {
    fn kind() -> String {
        "str".into()
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        const EXPECTED: &str = "a comma-separated list of names";
        if let Some(Value::Array(items)) = json_value(raw) {
            return items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.trim().to_string()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(EXPECTED.to_string()),
                })
                .collect();
        }
        let text = scalar_text(raw).ok_or_else(|| EXPECTED.to_string())?;
        Ok(split_comma(&text))
    }
}

/// A comma-separated list of numbers (`interleave_probs`).
impl ArgValue for Vec<f64> {
    fn kind() -> String {
        "str".into()
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        const EXPECTED: &str = "a comma-separated list of numbers";
        if let Some(Value::Array(items)) = json_value(raw) {
            return items
                .iter()
                .map(|item| match item {
                    Value::Number(n) => n.as_f64().ok_or_else(|| EXPECTED.to_string()),
                    Value::String(s) => s.trim().parse().map_err(|_| EXPECTED.to_string()),
                    _ => Err(EXPECTED.to_string()),
                })
                .collect();
        }
        let text = scalar_text(raw).ok_or_else(|| EXPECTED.to_string())?;
        split_comma(&text)
            .iter()
            .map(|s| s.parse::<f64>().map_err(|_| EXPECTED.to_string()))
            .collect()
    }
}

/// Splits on commas and trims each item, as Python's `[x.strip() for x in s.split(",")]`.
pub fn split_comma(text: &str) -> Vec<String> {
    text.split(',').map(|s| s.trim().to_string()).collect()
}

/// A JSON config (`vllm_config`, `sglang_config`): a mapping, or a string, which is parsed as a
/// JSON object when it starts with `{` (as LLaMA-Factory's `__post_init__` does).
impl ArgValue for Value {
    fn kind() -> String {
        "json".into()
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        const EXPECTED: &str = "a mapping or a JSON object string";
        if let Some(v @ Value::Object(_)) = json_value(raw) {
            return Ok(v.clone());
        }
        let text = scalar_text(raw).ok_or_else(|| EXPECTED.to_string())?;
        if text.starts_with('{') {
            match serde_json::from_str::<Value>(&text) {
                Ok(v @ Value::Object(_)) => Ok(v),
                _ => Err(EXPECTED.into()),
            }
        } else {
            Ok(Value::String(text))
        }
    }
}

/// `X | None`: null (from a file or `key=`/`key=null`) is `None`.
impl<T: ArgValue> ArgValue for Option<T> {
    fn kind() -> String {
        // `choice(a|b)` → `choice?(a|b)`, `int` → `int?`.
        let kind = T::kind();
        match kind.find('(') {
            Some(i) => format!("{}?{}", &kind[..i], &kind[i..]),
            None => format!("{kind}?"),
        }
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        if is_null(raw) {
            return Ok(None);
        }
        T::from_raw(raw)
            .map(Some)
            .map_err(|e| format!("{e} or null"))
    }

    fn negated(default: &Self) -> Option<Self> {
        default.as_ref().and_then(T::negated).map(Some)
    }
}

/// Defines a LLaMA-Factory `Literal[...]` / `StrEnum` as a Rust enum whose serde names are
/// LLaMA-Factory's strings, with [`ArgValue`] checking the choices.
macro_rules! lf_choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[doc = $doc:literal])* $variant:ident = $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[doc = $doc])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every accepted spelling, in LLaMA-Factory's order.
            pub const CHOICES: &'static [&'static str] = &[$($text),+];

            /// LLaMA-Factory's spelling of this value.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )+ }
            }

            /// The value spelled `text`, if it is one of [`Self::CHOICES`].
            pub fn parse(text: &str) -> Option<Self> {
                match text { $( $text => Some($name::$variant), )+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::args::value::ArgValue for $name {
            fn kind() -> String {
                format!("choice({})", Self::CHOICES.join("|"))
            }

            fn from_raw(raw: &$crate::args::raw::RawValue) -> Result<Self, String> {
                let expected = || format!("one of {}", Self::CHOICES.join(", "));
                let text = <String as $crate::args::value::ArgValue>::from_raw(raw)
                    .map_err(|_| expected())?;
                Self::parse(&text).ok_or_else(expected)
            }
        }
    };
}

pub(crate) use lf_choice;
