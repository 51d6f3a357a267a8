//! JSON the way Python prints it. Tool prompts and function calls are built by LLaMA-Factory
//! with `json.loads` / `json.dumps(..., ensure_ascii=False)` / `str(...)`, so matching its token
//! ids needs the same key order (insertion order, not sorted), the same separators (`", "`,
//! `": "`), Python's float repr (`1e-07`, `1e+16`, `3.0`) and Python's `str()` of values
//! (`True`, `None`, `['a', 'b']`).

use std::fmt::Write as _;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that keeps object keys in document order, like a Python `dict`.
#[derive(Debug, Clone, PartialEq)]
pub enum PyJson {
    /// `null` / `None`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<PyJson>),
    /// An object, keys in insertion order.
    Dict(Vec<(String, PyJson)>),
}

impl PyJson {
    /// `json.loads(text)`.
    pub fn parse(text: &str) -> Result<PyJson, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `dict.get(key)`: `None` unless `self` is an object holding `key`.
    pub fn get(&self, key: &str) -> Option<&PyJson> {
        match self {
            PyJson::Dict(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyJson::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python truthiness: `None`, `False`, `0`, `""`, `[]`, `{}` are false.
    pub fn truthy(&self) -> bool {
        match self {
            PyJson::Null => false,
            PyJson::Bool(b) => *b,
            PyJson::Int(i) => *i != 0,
            PyJson::Float(f) => *f != 0.0,
            PyJson::Str(s) => !s.is_empty(),
            PyJson::List(l) => !l.is_empty(),
            PyJson::Dict(d) => !d.is_empty(),
        }
    }

    /// `json.dumps(self, ensure_ascii=False)`.
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out, None, ", ", ": ", false, 0);
        out
    }

    /// `json.dumps(self, ensure_ascii=False, indent=indent)`.
    pub fn dumps_indent(&self, indent: usize) -> String {
        let mut out = String::new();
        self.write_json(&mut out, Some(indent), ",", ": ", false, 0);
        out
    }

    /// `json.dumps` with all of Jinja's `tojson` options (as transformers exposes them).
    pub fn dumps_with(
        &self,
        indent: Option<usize>,
        separators: Option<(&str, &str)>,
        sort_keys: bool,
    ) -> String {
        let (item, key) = separators.unwrap_or(if indent.is_some() {
            (",", ": ")
        } else {
            (", ", ": ")
        });
        let mut out = String::new();
        self.write_json(&mut out, indent, item, key, sort_keys, 0);
        out
    }

    fn write_json(
        &self,
        out: &mut String,
        indent: Option<usize>,
        item_sep: &str,
        key_sep: &str,
        sort_keys: bool,
        depth: usize,
    ) {
        let newline = |out: &mut String, depth: usize| {
            if let Some(n) = indent {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', n * depth));
            }
        };
        match self {
            PyJson::Null => out.push_str("null"),
            PyJson::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            PyJson::Int(i) => {
                let _ = write!(out, "{i}");
            }
            PyJson::Float(f) => out.push_str(&float_json(*f)),
            PyJson::Str(s) => write_json_string(out, s),
            PyJson::List(items) => {
                if items.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(item_sep);
                    }
                    newline(out, depth + 1);
                    v.write_json(out, indent, item_sep, key_sep, sort_keys, depth + 1);
                }
                newline(out, depth);
                out.push(']');
            }
            PyJson::Dict(items) => {
                if items.is_empty() {
                    out.push_str("{}");
                    return;
                }
                let mut order: Vec<&(String, PyJson)> = items.iter().collect();
                if sort_keys {
                    order.sort_by(|a, b| a.0.cmp(&b.0));
                }
                out.push('{');
                for (i, (k, v)) in order.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(item_sep);
                    }
                    newline(out, depth + 1);
                    write_json_string(out, k);
                    out.push_str(key_sep);
                    v.write_json(out, indent, item_sep, key_sep, sort_keys, depth + 1);
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }

    /// Python's `str(value)` (what an f-string or `str.format` prints).
    pub fn py_str(&self) -> String {
        match self {
            PyJson::Str(s) => s.clone(),
            other => other.py_repr(),
        }
    }

    /// Python's `repr(value)`.
    pub fn py_repr(&self) -> String {
        match self {
            PyJson::Null => "None".into(),
            PyJson::Bool(b) => if *b { "True" } else { "False" }.into(),
            PyJson::Int(i) => i.to_string(),
            PyJson::Float(f) => float_repr(*f),
            PyJson::Str(s) => str_repr(s),
            PyJson::List(items) => {
                let parts: Vec<String> = items.iter().map(PyJson::py_repr).collect();
                format!("[{}]", parts.join(", "))
            }
            PyJson::Dict(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|(k, v)| format!("{}: {}", str_repr(k), v.py_repr()))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }
}

/// A JSON string literal with Python's escapes under `ensure_ascii=False`.
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as `json.dumps` prints it (`NaN`, `Infinity` for the non-finite ones).
pub(crate) fn float_json(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        float_repr(f)
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, positional notation when the
/// decimal exponent is in [-4, 16), scientific (`1e-05`, `1.5e+16`) otherwise.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e3".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

impl<'de> Deserialize<'de> for PyJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PyJsonVisitor)
    }
}

struct PyJsonVisitor;

impl<'de> Visitor<'de> for PyJsonVisitor {
    type Value = PyJson;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<PyJson, E> {
        Ok(PyJson::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<PyJson, E> {
        Ok(PyJson::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<PyJson, E> {
        Ok(PyJson::Int(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<PyJson, E> {
        Ok(PyJson::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<PyJson, E> {
        Ok(PyJson::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<PyJson, E> {
        Ok(PyJson::Str(v))
    }
    fn visit_unit<E>(self) -> Result<PyJson, E> {
        Ok(PyJson::Null)
    }
    fn visit_none<E>(self) -> Result<PyJson, E> {
        Ok(PyJson::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PyJson, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(PyJson::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyJson, A::Error> {
        let mut items: Vec<(String, PyJson)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, PyJson>()? {
            // A repeated key keeps its first position and takes the last value, as in Python.
            match items.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => items.push((k, v)),
            }
        }
        Ok(PyJson::Dict(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        // Expected strings are Python 3.11's repr() of the same floats.
        let cases = [
            (1e-7, "1e-07"),
            (3.5, "3.5"),
            (21.0, "21.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (-2.5e-10, "-2.5e-10"),
            (123456.789, "123456.789"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (1.5e300, "1.5e+300"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn dumps_keeps_order_and_python_separators() {
        let v = PyJson::parse(r#"{"b": 1, "a": [1.0, "é\n\u0001", null, true], "b": 2, "c": {}}"#)
            .unwrap();
        assert_eq!(
            v.dumps(),
            r#"{"b": 2, "a": [1.0, "é\n\u0001", null, true], "c": {}}"#
        );
        assert_eq!(
            v.dumps_indent(2),
            "{\n  \"b\": 2,\n  \"a\": [\n    1.0,\n    \"é\\n\\u0001\",\n    null,\n    true\n  ],\n  \"c\": {}\n}"
        );
        assert_eq!(
            v.py_repr(),
            r#"{'b': 2, 'a': [1.0, 'é\n\x01', None, True], 'c': {}}"#
        );
    }

    #[test]
    fn str_repr_picks_quotes_like_python() {
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'b\"c"), "'a\\'b\"c'");
    }
}
