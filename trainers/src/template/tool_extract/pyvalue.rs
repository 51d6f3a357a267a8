//! Python values as `json.loads` and `ast.literal_eval` make them, Python's `json.loads`
//! (`NaN`, `Infinity`, big integers, surrogate pairs, repeated keys) and `json.dumps` of them:
//! what LLaMA-Factory's extractors compute with.

use super::*;

/// A Python value as `json.loads` or `ast.literal_eval` make them.
#[derive(Debug, Clone)]
pub(super) enum Val {
    None,
    Bool(bool),
    /// An integer of any size, in decimal (`-` sign, no leading zeros).
    Int(String),
    Float(f64),
    Complex(f64, f64),
    Str(String),
    Bytes(Vec<u8>),
    Ellipsis,
    List(Vec<Val>),
    Tuple(Vec<Val>),
    /// A set (never serialisable, so its elements are not kept).
    Set,
    /// A dict, in insertion order.
    Dict(Vec<(Val, Val)>),
}

impl Val {
    pub(super) fn hashable(&self) -> bool {
        match self {
            Val::List(_) | Val::Dict(_) | Val::Set => false,
            Val::Tuple(items) => items.iter().all(Val::hashable),
            _ => true,
        }
    }

    /// The value of a string-keyed dict entry.
    pub(super) fn get(&self, key: &str) -> Option<&Val> {
        match self {
            Val::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Val::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A number for Python's cross-type `==` (`1 == 1.0 == True`).
pub(super) enum Num<'a> {
    Int(&'a str),
    Float(f64),
    Complex(f64, f64),
}

pub(super) fn as_num(v: &Val) -> Option<Num<'_>> {
    match v {
        Val::Bool(b) => Some(Num::Int(if *b { "1" } else { "0" })),
        Val::Int(s) => Some(Num::Int(s)),
        Val::Float(f) => Some(Num::Float(*f)),
        Val::Complex(re, im) => Some(Num::Complex(*re, *im)),
        _ => None,
    }
}

pub(super) fn int_eq_float(i: &str, f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && {
        let digits = format!("{f:.0}");
        let digits = if digits == "-0" {
            "0".to_string()
        } else {
            digits
        };
        digits == i
    }
}

pub(super) fn num_eq(a: &Num, b: &Num) -> bool {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x == y,
        (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => int_eq_float(i, *f),
        (Num::Float(x), Num::Float(y)) => x == y,
        (Num::Complex(re, im), Num::Complex(re2, im2)) => re == re2 && im == im2,
        (Num::Complex(re, im), other) | (other, Num::Complex(re, im)) => {
            *im == 0.0
                && match other {
                    Num::Int(i) => int_eq_float(i, *re),
                    Num::Float(f) => f == re,
                    Num::Complex(..) => false,
                }
        }
    }
}

/// Python `==` between two hashable values (dict keys).
pub(super) fn key_eq(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Bytes(x), Val::Bytes(y)) => x == y,
        (Val::None, Val::None) | (Val::Ellipsis, Val::Ellipsis) => true,
        (Val::Tuple(x), Val::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| key_eq(p, q))
        }
        _ => match (as_num(a), as_num(b)) {
            (Some(x), Some(y)) => num_eq(&x, &y),
            _ => false,
        },
    }
}

/// `d[key] = value`: a repeated key keeps its first position (and first key object).
pub(super) fn dict_set(items: &mut Vec<(Val, Val)>, key: Val, value: Val) {
    match items.iter_mut().find(|(k, _)| key_eq(k, &key)) {
        Some(slot) => slot.1 = value,
        None => items.push((key, value)),
    }
}

pub(super) fn json_str(s: &str) -> String {
    PyJson::Str(s.to_string()).dumps()
}

/// `json.dumps(value, ensure_ascii=False)`; sets, bytes, complex numbers, `...` and dict keys
/// other than str / int / float / bool / None raise `TypeError`.
pub(super) fn dumps(v: &Val) -> Result<String, NoResult> {
    let mut out = String::new();
    write_dumps(v, &mut out)?;
    Ok(out)
}

pub(super) fn write_dumps(v: &Val, out: &mut String) -> Result<(), NoResult> {
    match v {
        Val::None => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(s) => out.push_str(s),
        Val::Float(f) => out.push_str(&float_json(*f)),
        Val::Str(s) => out.push_str(&json_str(s)),
        Val::List(items) | Val::Tuple(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_dumps(item, out)?;
            }
            out.push(']');
        }
        Val::Dict(items) => {
            out.push('{');
            for (i, (k, item)) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let key = match k {
                    Val::Str(s) => s.clone(),
                    Val::Int(s) => s.clone(),
                    Val::Float(f) => float_json(*f),
                    Val::Bool(b) => if *b { "true" } else { "false" }.to_string(),
                    Val::None => "null".to_string(),
                    _ => return Err(TYPE_ERROR),
                };
                out.push_str(&json_str(&key));
                out.push_str(": ");
                write_dumps(item, out)?;
            }
            out.push('}');
        }
        Val::Complex(..) | Val::Bytes(_) | Val::Ellipsis | Val::Set => return Err(TYPE_ERROR),
    }
    Ok(())
}

/// Python's limit on the digits of `int(str)` (`sys.get_int_max_str_digits()`).
pub(super) const INT_MAX_STR_DIGITS: usize = 4300;
/// Nesting beyond this counts as Python's `RecursionError` (Python's own limit depends on the
/// stack in use; 1000 frames in all).
pub(super) const JSON_MAX_DEPTH: usize = 900;

/// `json.loads(s)`: `Ok(None)` where Python raises `JSONDecodeError`, `Err` where it raises
/// something else (an integer over 4300 digits, too deep a nesting).
pub(super) fn json_loads(s: &str) -> Result<Option<Val>, NoResult> {
    let mut p = JsonParser {
        s,
        b: s.as_bytes(),
        i: 0,
        depth: 0,
    };
    p.ws();
    let v = match p.value()? {
        Some(v) => v,
        None => return Ok(None),
    };
    p.ws();
    Ok(if p.i == s.len() { Some(v) } else { None })
}

pub(super) struct JsonParser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

pub(super) type JsonRes = Result<Option<Val>, NoResult>;

impl JsonParser<'_> {
    pub(super) fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    pub(super) fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    pub(super) fn value(&mut self) -> JsonRes {
        let Some(&c) = self.b.get(self.i) else {
            return Ok(None);
        };
        match c {
            b'"' => {
                self.i += 1;
                Ok(self.string().map(Val::Str))
            }
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > JSON_MAX_DEPTH {
                    return Err(NoResult::Raises("RecursionError"));
                }
                self.i += 1;
                let v = if c == b'{' {
                    self.object()
                } else {
                    self.array()
                };
                self.depth -= 1;
                v
            }
            b'n' if self.eat("null") => Ok(Some(Val::None)),
            b't' if self.eat("true") => Ok(Some(Val::Bool(true))),
            b'f' if self.eat("false") => Ok(Some(Val::Bool(false))),
            b'N' if self.eat("NaN") => Ok(Some(Val::Float(f64::NAN))),
            b'I' if self.eat("Infinity") => Ok(Some(Val::Float(f64::INFINITY))),
            b'-' if self.eat("-Infinity") => Ok(Some(Val::Float(f64::NEG_INFINITY))),
            _ => self.number(),
        }
    }

    pub(super) fn number(&mut self) -> JsonRes {
        let b = self.b;
        let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
        let start = self.i;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'1'..=b'9') => {
                i += 1;
                while digit(i) {
                    i += 1;
                }
            }
            Some(b'0') => i += 1,
            _ => return Ok(None),
        }
        let mut is_float = false;
        if b.get(i) == Some(&b'.') && digit(i + 1) {
            is_float = true;
            i += 2;
            while digit(i) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if digit(j) {
                while digit(j) {
                    j += 1;
                }
                is_float = true;
                i = j;
            }
        }
        self.i = i;
        let text = &self.s[start..i];
        if is_float {
            return Ok(Some(Val::Float(text.parse().unwrap_or(f64::NAN))));
        }
        let digits = text.trim_start_matches('-');
        if digits.len() > INT_MAX_STR_DIGITS {
            return Err(NoResult::Raises("ValueError"));
        }
        Ok(Some(Val::Int(if digits == "0" {
            "0".into()
        } else {
            text.into()
        })))
    }

    /// A string after its opening quote (strict: no raw control characters).
    pub(super) fn string(&mut self) -> Option<String> {
        let mut out = String::new();
        loop {
            let c = self.s[self.i..].chars().next()?;
            self.i += c.len_utf8();
            match c {
                '"' => return Some(out),
                '\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let mut code = hi;
                            if (0xd800..0xdc00).contains(&hi) && self.s[self.i..].starts_with("\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    code = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                                } else {
                                    self.i = save;
                                }
                            }
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        _ => return None,
                    }
                }
                c if (c as u32) < 0x20 => return None,
                c => out.push(c),
            }
        }
    }

    pub(super) fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }

    pub(super) fn object(&mut self) -> JsonRes {
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Some(Val::Dict(items)));
        }
        loop {
            if self.b.get(self.i) != Some(&b'"') {
                return Ok(None);
            }
            self.i += 1;
            let Some(key) = self.string() else {
                return Ok(None);
            };
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Ok(None);
            }
            self.i += 1;
            self.ws();
            let Some(v) = self.value()? else {
                return Ok(None);
            };
            dict_set(&mut items, Val::Str(key), v);
            self.ws();
            match self.b.get(self.i) {
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Some(Val::Dict(items)));
                }
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                _ => return Ok(None),
            }
        }
    }

    pub(super) fn array(&mut self) -> JsonRes {
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Some(Val::List(items)));
        }
        loop {
            let Some(v) = self.value()? else {
                return Ok(None);
            };
            items.push(v);
            self.ws();
            match self.b.get(self.i) {
                Some(b']') => {
                    self.i += 1;
                    return Ok(Some(Val::List(items)));
                }
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                _ => return Ok(None),
            }
        }
    }
}
