//! The untyped first pass over a command line, as LLaMA-Factory's `read_args` + HfArgumentParser
//! see it: an optional first `.yaml`/`.yml`/`.json` config file, then `key=value` overrides
//! (values read as YAML, like OmegaConf's `from_cli`) and `--key value` / `--key=value` /
//! bare `--key` flags (values kept as text, typed later by the field they land in). Later
//! settings win; every key remembers where it was set, for error messages.
//!
//! LLaMA-Factory takes either a file + `key=value`, or flags only; lmf accepts both kinds after
//! the file, which is a superset of what it accepts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{ArgsError, Origin, Result};

/// One raw setting, before it is typed by the field it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A value read from a YAML or JSON config file.
    File(Value),
    /// `key=value` on the command line: the text as given and its YAML reading.
    Override {
        /// The text after `=`.
        text: String,
        /// That text read as a YAML scalar, list or mapping (`""` reads as null).
        value: Value,
    },
    /// `--key value` or `--key=value`: plain text, parsed by the field's type.
    Flag(String),
    /// `--key` with no value (true for a boolean field).
    BareFlag,
}

impl RawValue {
    /// The value as JSON, for messages and for merged views (a bare flag reads as `true`).
    pub fn to_json(&self) -> Value {
        match self {
            RawValue::File(v) | RawValue::Override { value: v, .. } => v.clone(),
            RawValue::Flag(s) => Value::String(s.clone()),
            RawValue::BareFlag => Value::Bool(true),
        }
    }

    /// The value as the user wrote it, for error messages.
    pub fn display(&self) -> String {
        match self {
            RawValue::File(v) => v.to_string(),
            RawValue::Override { text, .. } | RawValue::Flag(text) => format!("{text:?}"),
            RawValue::BareFlag => "(no value)".to_string(),
        }
    }
}

/// One key of [`RawArgs`]: its latest value and where that came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEntry {
    /// The key, with `-` in flag names turned into `_` (as HfArgumentParser allows).
    pub key: String,
    /// The latest value.
    pub value: RawValue,
    /// Where the latest value was given.
    pub origin: Origin,
    /// Order in which the latest value was set (to decide `--x` against a later `--no_x`).
    pub seq: usize,
}

/// An ordered map key → raw value, merged from a config file and the command line (later wins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawArgs {
    entries: Vec<RawEntry>,
    index: HashMap<String, usize>,
    next_seq: usize,
    config_file: Option<PathBuf>,
}

impl RawArgs {
    /// An empty set of arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`; a key set before keeps its position but takes the new value and origin.
    pub fn insert(&mut self, key: impl Into<String>, value: RawValue, origin: Origin) {
        let key = key.into();
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.index.get(&key) {
            Some(&i) => {
                let entry = &mut self.entries[i];
                entry.value = value;
                entry.origin = origin;
                entry.seq = seq;
            }
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push(RawEntry {
                    key,
                    value,
                    origin,
                    seq,
                });
            }
        }
    }

    /// The entry of `key`, if it was given.
    pub fn get(&self, key: &str) -> Option<&RawEntry> {
        self.index.get(key).map(|&i| &self.entries[i])
    }

    /// The entries in the order their keys were first given.
    pub fn iter(&self) -> impl Iterator<Item = &RawEntry> {
        self.entries.iter()
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key was given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The config file that was read, if any.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// The merged key → value map as JSON (what LLaMA-Factory hands to `parse_dict`).
    pub fn to_json(&self) -> Map<String, Value> {
        self.entries
            .iter()
            .map(|e| (e.key.clone(), e.value.to_json()))
            .collect()
    }
}

/// True when `arg` names a config file in the first position, as LLaMA-Factory decides it.
fn is_config_file(arg: &str) -> bool {
    let ext_ok = arg.ends_with(".yaml") || arg.ends_with(".yml") || arg.ends_with(".json");
    // `key=value.json` is an override unless a file of that exact name exists.
    ext_ok && !arg.starts_with('-') && (!arg.contains('=') || Path::new(arg).is_file())
}

/// Reads LLaMA-Factory arguments from `argv` (the words after the subcommand).
pub fn parse_raw(argv: &[String]) -> Result<RawArgs> {
    let mut raw = RawArgs::new();
    let mut rest = argv;
    if let Some(first) = argv.first() {
        if is_config_file(first) {
            let path = PathBuf::from(first);
            let origin = Origin::File(path.clone());
            for (key, value) in load_config_file(&path)? {
                raw.insert(key, RawValue::File(value), origin.clone());
            }
            raw.config_file = Some(path);
            rest = &argv[1..];
        }
    }
    let mut i = 0;
    while i < rest.len() {
        let arg = &rest[i];
        i += 1;
        if let Some(flag) = arg.strip_prefix("--") {
            let (name, value) = match flag.split_once('=') {
                Some((name, text)) => (name, RawValue::Flag(text.to_string())),
                None => match rest.get(i) {
                    // argparse takes the next word as the value unless it is an option.
                    Some(next) if !next.starts_with("--") => {
                        i += 1;
                        (flag, RawValue::Flag(next.clone()))
                    }
                    _ => (flag, RawValue::BareFlag),
                },
            };
            let key = name.replace('-', "_");
            check_key(arg, &key)?;
            raw.insert(key, value, Origin::CommandLine);
        } else if let Some((key, text)) = arg.split_once('=') {
            check_key(arg, key)?;
            let value = RawValue::Override {
                text: text.to_string(),
                value: yaml_value(text),
            };
            raw.insert(key, value, Origin::CommandLine);
        } else if is_config_file(arg) {
            return Err(ArgsError::Syntax {
                arg: arg.clone(),
                msg: "a config file must be the first argument".into(),
            });
        } else {
            return Err(ArgsError::Syntax {
                arg: arg.clone(),
                msg: "expected key=value, --key value or --key".into(),
            });
        }
    }
    Ok(raw)
}

fn check_key(arg: &str, key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ArgsError::Syntax {
            arg: arg.to_string(),
            msg: format!("`{key}` is not an argument name"),
        })
    }
}

/// Reads the text of a `key=value` override the way OmegaConf does: as YAML, empty = null;
/// text that is not valid YAML stays a string.
pub fn yaml_value(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_norway::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Reads a `.yaml`/`.yml`/`.json` config file into its top-level key → value pairs, in file
/// order.
pub fn load_config_file(path: &Path) -> Result<Vec<(String, Value)>> {
    let text = std::fs::read_to_string(path).map_err(|error| ArgsError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    // First as a plain value, to say what the top level is when it is not a mapping; then again
    // as ordered pairs (serde_json's map would sort the keys).
    let parsed: Value = if is_json {
        serde_json::from_str(&text).map_err(|e| file_error(path, format!("invalid JSON: {e}")))?
    } else {
        serde_norway::from_str(&text).map_err(|e| file_error(path, format!("invalid YAML: {e}")))?
    };
    match parsed {
        Value::Object(_) => {}
        // An empty YAML file is an empty config, as for OmegaConf.
        Value::Null => return Ok(Vec::new()),
        other => {
            return Err(file_error(
                path,
                format!(
                    "expected a mapping of argument names to values, found {}",
                    json_kind(&other)
                ),
            ))
        }
    }
    let pairs: OrderedPairs = if is_json {
        serde_json::from_str(&text).map_err(|e| file_error(path, format!("invalid JSON: {e}")))?
    } else {
        serde_norway::from_str(&text).map_err(|e| file_error(path, format!("invalid YAML: {e}")))?
    };
    Ok(pairs.0)
}

/// A mapping read as key → value pairs in document order.
struct OrderedPairs(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for OrderedPairs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = OrderedPairs;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of argument names to values")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedPairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    pairs.push((key, value));
                }
                Ok(OrderedPairs(pairs))
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

fn file_error(path: &Path, msg: String) -> ArgsError {
    ArgsError::File {
        path: path.to_path_buf(),
        msg,
    }
}

/// "a list", "a string", ...: the JSON type of `v`, for messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
