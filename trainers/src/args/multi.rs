//! The value shapes that only transformers' `TrainingArguments` has: HfArgumentParser lists
//! (`list[str]`, `nargs="+"`), unions of two types (`str | list[str]`, `str | bool`) and the
//! `Literal[False]` of `trackio_static_space_id`.

use serde::Serialize;
use serde_json::Value;

use super::raw::RawValue;
use super::value::ArgValue;

/// A `list[T]` field: a YAML/JSON list of `T`, or one scalar taken as a one-item list (what
/// argparse's `nargs="+"` gives for a single word).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<T: ArgValue> ArgValue for List<T> {
    fn kind() -> String {
        format!("list({})", T::kind())
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        let items = match raw {
            RawValue::File(Value::Array(items))
            | RawValue::Override {
                value: Value::Array(items),
                ..
            } => items,
            _ => {
                return T::from_raw(raw)
                    .map(|item| List(vec![item]))
                    .map_err(|e| format!("a list of {e}"))
            }
        };
        items
            .iter()
            .map(|item| T::from_raw(&RawValue::File(item.clone())))
            .collect::<Result<Vec<T>, String>>()
            .map(List)
            .map_err(|e| format!("a list of {e}"))
    }
}

/// An `A | B` field (declared order kept): a value is read as `A` when it can be, else as `B`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Union2<A, B> {
    /// The first type of the union.
    A(A),
    /// The second type of the union.
    B(B),
}

impl<A: ArgValue, B: ArgValue> ArgValue for Union2<A, B> {
    fn kind() -> String {
        format!("union({}|{})", A::kind(), B::kind())
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        match A::from_raw(raw) {
            Ok(a) => Ok(Union2::A(a)),
            Err(ea) => B::from_raw(raw)
                .map(Union2::B)
                .map_err(|eb| format!("{ea} or {eb}")),
        }
    }
}

/// Python's `Literal[False]`: only `false` is accepted (serialised as JSON `false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FalseOnly;

impl Serialize for FalseOnly {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(false)
    }
}

impl ArgValue for FalseOnly {
    fn kind() -> String {
        // Python's spelling of the one literal, as `choice(...)` lists Literal values.
        "choice(False)".into()
    }

    fn from_raw(raw: &RawValue) -> Result<Self, String> {
        match bool::from_raw(raw) {
            Ok(false) => Ok(FalseOnly),
            _ => Err("false".into()),
        }
    }
}
