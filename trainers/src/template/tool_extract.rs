//! Tool-call extraction: LLaMA-Factory 0.9.5's `ToolUtils.tool_extractor` of every tool format
//! (`llamafactory/data/tool_utils.py`), which its api and web chat run over a reply when the
//! request had tools (`Template.extract_tool`). The result is LF's `Union[str,
//! list[FunctionCall]]`: the reply unchanged when no call is recognised, else the calls with
//! their arguments as `json.dumps(args, ensure_ascii=False)`.
//!
//! LF's extractors are Python regexes, `str.strip()`, `json.loads` and (LFM 2) `ast.parse` +
//! `ast.literal_eval`. They are reproduced here by hand, with Python's semantics:
//! - the regexes are matched the way Python's backtracking engine matches them (lazy groups,
//!   `re.DOTALL`, the lookaheads of the default and Qwen formats), `\s` and `strip()` being
//!   Python's `str.isspace` (Unicode whitespace plus U+001C..U+001F);
//! - `json.loads` is Python's (`NaN`, `Infinity`, big integers, surrogate pairs, the first
//!   position and last value of a repeated key), and `json.dumps` prints what Python prints;
//! - LFM 2's Pythonic calls go through a small Python expression parser and `literal_eval`.
//!
//! Where LF does not hand back a usable result, [`ToolFormat::try_extract`] says why
//! ([`NoResult`]): the extractor raises (a `TypeError` on `{"name": ...}` that is not an object,
//! a `KeyError` in MiniMax-M1, a set or complex number in an LFM 2 call, ...), or a call's name
//! is not a string (LF returns it, then its api cannot build the reply). [`ToolFormat::extract`]
//! answers the reply text in those cases.
//!
//! Known gaps (LF answers differently, all on unusual replies): lone UTF-16
//! surrogates (`"\ud800"` in JSON or a Python string) become U+FFFD, since a Rust string cannot
//! hold them; in LFM 2 calls, `\N{...}` escapes, NFKC normalisation of identifiers, and the
//! rarer Python syntax (lambdas, comprehensions, `await`, ...) in the positional arguments LF
//! ignores are taken as syntax errors (the reply text); Python's parser runs out of stack
//! (`MemoryError`) on some invalid calls nested close to its 200-bracket limit, where this
//! answers the text; nesting deeper than 900 JSON levels counts as LF's `RecursionError`.

use super::pyjson::{float_json, PyJson};
use super::tools::{FunctionCall, ToolFormat};
use pyexpr::Node;
use pyvalue::*;

mod pyexpr;
mod pyvalue;

/// What LF's `tool_extractor` returns: the reply text, or the calls found in it.
#[derive(Debug, Clone, PartialEq)]
pub enum Extracted {
    /// No call recognised: the reply, unchanged.
    Text(String),
    /// The calls, in order (possibly none: MiniMax's `<tool_calls>` block with no valid line).
    Calls(Vec<FunctionCall>),
}

/// Why LF gives no usable result for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoResult {
    /// LF's extractor raises this Python exception (its api then answers HTTP 500).
    Raises(&'static str),
    /// LF returns a call whose `name` is not a string (a JSON number, list, ...); its api then
    /// fails to build the `Function(name: str)` of the reply.
    NameNotString,
}

type Res = Result<Extracted, NoResult>;

const TYPE_ERROR: NoResult = NoResult::Raises("TypeError");

impl ToolFormat {
    /// LF's `tool_extractor` of this format: the calls in `content`, or `content` itself. Where
    /// LF raises (see [`NoResult`]) this answers the text too.
    pub fn extract(self, content: &str) -> Extracted {
        self.try_extract(content)
            .unwrap_or_else(|_| Extracted::Text(content.to_string()))
    }

    /// [`ToolFormat::extract`], telling where LF raises or returns a call with a non-string
    /// name.
    pub fn try_extract(self, content: &str) -> Res {
        match self {
            ToolFormat::Default => default_calls(content),
            ToolFormat::Gemma4 => gemma4_calls(content),
            ToolFormat::Glm4 => glm4_calls(content),
            ToolFormat::Llama3 => json_calls(content, "parameters"),
            ToolFormat::Mistral => json_calls(content, "arguments"),
            ToolFormat::Minimax1 => minimax1_calls(content),
            ToolFormat::Minimax2 => minimax2_calls(content),
            ToolFormat::Qwen | ToolFormat::Glm4Moe | ToolFormat::Ling => qwen_calls(content),
            ToolFormat::Qwen35 => xml_function_calls(content, &QWEN35_XML),
            ToolFormat::SeedOss => xml_function_calls(content, &SEED_XML),
            ToolFormat::Lfm2 => lfm2_calls(content),
        }
    }
}

fn text(content: &str) -> Res {
    Ok(Extracted::Text(content.to_string()))
}

/// Calls whose names came from JSON: any non-string name makes the whole result unusable.
fn finish(calls: Vec<(Val, String)>) -> Res {
    calls
        .into_iter()
        .map(|(name, arguments)| match name {
            Val::Str(name) => Ok(FunctionCall { name, arguments }),
            _ => Err(NoResult::NameNotString),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Extracted::Calls)
}

// ---------------------------------------------------------------------------------------------
// Python text semantics

/// `str.isspace()` (and `\s` of a `str` regex): Unicode whitespace and U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.strip()`.
fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// The byte index after the whitespace run starting at `i` (`\s*`, greedy).
fn skip_ws(s: &str, mut i: usize) -> usize {
    while let Some(c) = s[i..].chars().next() {
        if !is_py_space(c) {
            break;
        }
        i += c.len_utf8();
    }
    i
}

/// The index of the character after the one at `i` (`i` < len).
fn next_char(s: &str, i: usize) -> usize {
    i + s[i..].chars().next().map_or(1, char::len_utf8)
}

/// The index of the character before `i` (`i` > 0).
fn prev_char(s: &str, i: usize) -> usize {
    i - s[..i].chars().next_back().map_or(1, char::len_utf8)
}

fn find_from(s: &str, pat: &str, from: usize) -> Option<usize> {
    s.get(from..)?.find(pat).map(|k| from + k)
}

/// `re.search(OPEN \s*(.+?)\s* CLOSE, s, re.DOTALL)` for a `close` that starts with a
/// non-space character: the byte range of the group.
fn search_wrapped(s: &str, open: &str, close: &str) -> Option<(usize, usize)> {
    let closes_at = |e: usize| s[skip_ws(s, e)..].starts_with(close);
    let mut pos = 0;
    while let Some(k) = find_from(s, open, pos) {
        let a = k + open.len();
        let b = skip_ws(s, a);
        // The group starts after all the whitespace and takes at least one character ...
        if b < s.len() {
            let mut e = next_char(s, b);
            loop {
                if closes_at(e) {
                    return Some((b, e));
                }
                if e >= s.len() {
                    break;
                }
                e = next_char(s, e);
            }
        }
        // ... or, backtracking, the last whitespace character before a close.
        if b > a && closes_at(b) {
            return Some((prev_char(s, b), b));
        }
        pos = k + 1;
    }
    None
}

/// `re.findall(OPEN(.*?)MID(.*?)CLOSE, s, re.DOTALL)`: the two groups of every match.
fn findall_tagged<'a>(s: &'a str, open: &str, mid: &str, close: &str) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(k) = find_from(s, open, pos) {
        let a = k + open.len();
        let found = find_from(s, mid, a).and_then(|m| {
            let b = m + mid.len();
            find_from(s, close, b).map(|c| (m, b, c))
        });
        match found {
            Some((m, b, c)) => {
                out.push((&s[a..m], &s[b..c]));
                pos = c + close.len();
            }
            None => pos = k + 1,
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The extractors

/// `DefaultToolUtils`: `Action: name` / `Action Input: {json}` pairs, via
/// `Action:\s*([a-zA-Z0-9_]+)\s*Action Input:\s*(.+?)(?=\s*Action:|\s*$)`.
fn default_calls(content: &str) -> Res {
    let mut found = Vec::new();
    let mut pos = 0;
    while let Some(k) = find_from(content, "Action:", pos) {
        match default_match(content, k) {
            Some((name, input, end)) => {
                found.push((name, input));
                pos = end;
            }
            None => pos = k + 1,
        }
    }
    if found.is_empty() {
        return text(content);
    }
    let mut calls = Vec::new();
    for (name, input) in found {
        let input = py_strip(input).trim_matches('"').trim_matches('`');
        match json_loads(input)? {
            Some(v) => calls.push(FunctionCall {
                name: py_strip(name).to_string(),
                arguments: dumps(&v)?,
            }),
            None => return text(content),
        }
    }
    Ok(Extracted::Calls(calls))
}

/// The default regex matched at `k` (where `Action:` starts): name, input, end of the match.
fn default_match(s: &str, k: usize) -> Option<(&str, &str, usize)> {
    let b = s.as_bytes();
    let p = skip_ws(s, k + "Action:".len());
    let mut q = p;
    while q < b.len() && (b[q].is_ascii_alphanumeric() || b[q] == b'_') {
        q += 1;
    }
    // The greedy name gives characters back until `Action Input:` follows.
    for name_end in (p + 1..=q).rev() {
        let r = skip_ws(s, name_end);
        if !s[r..].starts_with("Action Input:") {
            continue;
        }
        let a = r + "Action Input:".len();
        let lookahead = |e: usize| {
            let t = skip_ws(s, e);
            t == s.len() || s[t..].starts_with("Action:")
        };
        let g = skip_ws(s, a);
        if g < s.len() {
            let mut e = next_char(s, g);
            while !lookahead(e) {
                e = next_char(s, e);
            }
            return Some((&s[p..name_end], &s[g..e], e));
        }
        if g > a {
            // Only whitespace after `Action Input:`: the group is its last character.
            return Some((&s[p..name_end], &s[prev_char(s, g)..g], g));
        }
    }
    None
}

/// `Gemma4ToolUtils`: `<|tool_call>call:name{k:v,...}<tool_call|>`.
fn gemma4_calls(content: &str) -> Res {
    const OPEN: &str = "<|tool_call>call:";
    const CLOSE: &str = "}<tool_call|>";
    let mut found = Vec::new();
    let mut pos = 0;
    while let Some(k) = find_from(content, OPEN, pos) {
        let start = k + OPEN.len();
        let name_end = content[start..]
            .char_indices()
            .find(|&(_, c)| c == '{' || is_py_space(c))
            .map_or(content.len(), |(i, _)| start + i);
        let body = (name_end > start && content[name_end..].starts_with('{'))
            .then(|| find_from(content, CLOSE, name_end + 1))
            .flatten();
        match body {
            Some(close) => {
                found.push((&content[start..name_end], &content[name_end + 1..close]));
                pos = close + CLOSE.len();
            }
            None => pos = k + 1,
        }
    }
    if found.is_empty() {
        return text(content);
    }
    let mut calls = Vec::new();
    for (name, args) in found {
        calls.push(FunctionCall {
            name: py_strip(name).to_string(),
            arguments: gemma4_arguments(args)?,
        });
    }
    Ok(Extracted::Calls(calls))
}

/// Gemma 4's `_parse_arguments`, then `json.dumps` unless it gave a string.
fn gemma4_arguments(arg_text: &str) -> Result<String, NoResult> {
    let text = py_strip(arg_text);
    if text.is_empty() {
        return Ok("{}".into());
    }
    let object_like = format!("{{{text}}}");
    // `<|"|>value<|"|>` -> a JSON string.
    const MARK: &str = "<|\"|>";
    let mut quoted = String::new();
    let mut pos = 0;
    while let Some(a) = find_from(&object_like, MARK, pos) {
        let Some(b) = find_from(&object_like, MARK, a + MARK.len()) else {
            break;
        };
        quoted.push_str(&object_like[pos..a]);
        quoted.push_str(&json_str(&object_like[a + MARK.len()..b]));
        pos = b + MARK.len();
    }
    quoted.push_str(&object_like[pos..]);
    let normalized = quote_keys(&quoted);
    if let Some(v) = json_loads(&normalized)? {
        return dumps(&v);
    }
    match json_loads(text)? {
        Some(Val::Str(s)) => Ok(s),
        Some(v) => dumps(&v),
        None => Ok(text.to_string()),
    }
}

/// `re.sub(r"(^|[{\s,])([A-Za-z_][A-Za-z0-9_]*)(\s*:)", r'\1"\2"\3', s)`.
fn quote_keys(s: &str) -> String {
    // An identifier at `i` followed by `\s*:`: the end of the identifier and of the match.
    let key_at = |i: usize| -> Option<(usize, usize)> {
        let b = s.as_bytes();
        if !b
            .get(i)
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        {
            return None;
        }
        let mut j = i + 1;
        while b
            .get(j)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            j += 1;
        }
        let t = skip_ws(s, j);
        (b.get(t) == Some(&b':')).then_some((j, t + 1))
    };
    let mut out = String::new();
    let mut last = 0;
    let mut i = 0;
    while i < s.len() {
        let mut hit = None;
        if i == 0 {
            hit = key_at(0).map(|(j, end)| (0, j, end));
        }
        if hit.is_none() {
            let c = s[i..].chars().next().unwrap_or(' ');
            if c == '{' || c == ',' || is_py_space(c) {
                let k = i + c.len_utf8();
                hit = key_at(k).map(|(j, end)| (k, j, end));
            }
        }
        match hit {
            Some((k, j, end)) => {
                out.push_str(&s[last..k]);
                out.push('"');
                out.push_str(&s[k..j]);
                out.push('"');
                out.push_str(&s[j..end]);
                last = end;
                i = end;
            }
            None => i = next_char(s, i),
        }
    }
    out.push_str(&s[last..]);
    out
}

/// `GLM4ToolUtils`: `name\n{json}` (one call).
fn glm4_calls(content: &str) -> Res {
    let Some((name, input)) = content.split_once('\n') else {
        return text(content);
    };
    match json_loads(py_strip(input))? {
        Some(v) => Ok(Extracted::Calls(vec![FunctionCall {
            name: name.to_string(),
            arguments: dumps(&v)?,
        }])),
        None => text(content),
    }
}

/// `Llama3ToolUtils` / `MistralToolUtils`: the whole reply is one JSON call or a list of them,
/// the arguments under `key`.
fn json_calls(content: &str, key: &str) -> Res {
    let Some(v) = json_loads(py_strip(content))? else {
        return text(content);
    };
    let items = match v {
        Val::List(items) => items,
        other => vec![other],
    };
    let mut calls = Vec::new();
    for tool in &items {
        if !matches!(tool, Val::Dict(_)) {
            return Err(TYPE_ERROR); // `tool["name"]` on a str / list / number / None
        }
        match (tool.get("name"), tool.get(key)) {
            (Some(name), Some(args)) => calls.push((name.clone(), dumps(args)?)),
            _ => return text(content), // KeyError
        }
    }
    finish(calls)
}

/// `MiniMaxM1ToolUtils`: JSON lines inside `<tool_calls>...</tool_calls>`.
fn minimax1_calls(content: &str) -> Res {
    let Some((a, b)) = search_wrapped(content, "<tool_calls>", "</tool_calls>") else {
        return text(content);
    };
    let mut calls = Vec::new();
    for line in content[a..b].split('\n') {
        let line = py_strip(line);
        if line.is_empty() {
            continue;
        }
        let Some(tool) = json_loads(line)? else {
            continue;
        };
        if !matches!(tool, Val::Dict(_)) {
            return Err(TYPE_ERROR);
        }
        match (tool.get("name"), tool.get("arguments")) {
            (Some(name), Some(args)) => calls.push((name.clone(), dumps(args)?)),
            _ => return Err(NoResult::Raises("KeyError")),
        }
    }
    finish(calls)
}

/// `MiniMaxM2ToolUtils`: `<invoke name="...">` blocks of `<parameter name="...">` inside
/// `<minimax:tool_call>...</minimax:tool_call>`.
fn minimax2_calls(content: &str) -> Res {
    let Some((a, b)) = search_wrapped(content, "<minimax:tool_call>", "</minimax:tool_call>")
    else {
        return text(content);
    };
    let mut calls = Vec::new();
    for (name, params) in findall_tagged(&content[a..b], "<invoke name=\"", "\">", "</invoke>") {
        let mut args = Vec::new();
        for (key, raw) in findall_tagged(params, "<parameter name=\"", "\">", "</parameter>") {
            let value = json_loads(py_strip(raw))?.unwrap_or_else(|| Val::Str(raw.to_string()));
            dict_set(&mut args, Val::Str(key.to_string()), value);
        }
        calls.push(FunctionCall {
            name: py_strip(name).to_string(),
            arguments: dumps(&Val::Dict(args))?,
        });
    }
    Ok(Extracted::Calls(calls))
}

/// `QwenToolUtils` (also GLM-4.5 and Ling): `<tool_call>{json}</tool_call>` blocks, via
/// `<tool_call>(.+?)</tool_call>(?=\s*<tool_call>|\s*$)`.
fn qwen_calls(content: &str) -> Res {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut found = Vec::new();
    let mut pos = 0;
    while let Some(k) = find_from(content, OPEN, pos) {
        let g = k + OPEN.len();
        let mut matched = None;
        if g < content.len() {
            let mut from = next_char(content, g);
            while let Some(c) = find_from(content, CLOSE, from) {
                let t = skip_ws(content, c + CLOSE.len());
                if t == content.len() || content[t..].starts_with(OPEN) {
                    matched = Some(c);
                    break;
                }
                from = c + 1;
            }
        }
        match matched {
            Some(c) => {
                found.push(&content[g..c]);
                pos = c + CLOSE.len();
            }
            None => pos = k + 1,
        }
    }
    if found.is_empty() {
        return text(content);
    }
    let mut calls = Vec::new();
    for block in found {
        let Some(tool) = json_loads(py_strip(block))? else {
            return text(content);
        };
        // `"name" not in tool or "arguments" not in tool`, then `tool["name"]`.
        match &tool {
            Val::Dict(_) => match (tool.get("name"), tool.get("arguments")) {
                (Some(name), Some(args)) => calls.push((name.clone(), dumps(args)?)),
                _ => return text(content),
            },
            Val::List(items) => {
                let has = |k: &str| items.iter().any(|x| matches!(x, Val::Str(s) if s == k));
                return if has("name") && has("arguments") {
                    Err(TYPE_ERROR)
                } else {
                    text(content)
                };
            }
            Val::Str(s) => {
                return if s.contains("name") && s.contains("arguments") {
                    Err(TYPE_ERROR)
                } else {
                    text(content)
                };
            }
            _ => return Err(TYPE_ERROR), // `in` on a number / bool / None
        }
    }
    finish(calls)
}

/// The XML function-call formats of Qwen 3.5 and Seed-OSS.
struct XmlFormat {
    open: &'static str,
    close: &'static str,
    /// Whether the name stops at `>` (Qwen 3.5's `[^\s<>]+`; Seed's `[^\s<]+` takes it).
    name_stops_at_gt: bool,
    /// Whether a parameter value that is not JSON is kept stripped (Qwen 3.5) or raw (Seed).
    strip_text_values: bool,
}

const QWEN35_XML: XmlFormat = XmlFormat {
    open: "<tool_call>",
    close: "</tool_call>",
    name_stops_at_gt: true,
    strip_text_values: true,
};

const SEED_XML: XmlFormat = XmlFormat {
    open: "<seed:tool_call>",
    close: "</seed:tool_call>",
    name_stops_at_gt: false,
    strip_text_values: false,
};

/// `OPEN\s*<function=\s*(NAME)\s*(.*?)\s*</function>\s*CLOSE`, then
/// `<parameter=(.*?)>(.*?)</parameter>` in each block; no call at all gives the text.
fn xml_function_calls(content: &str, fmt: &XmlFormat) -> Res {
    let s = content;
    // The end of `\s*</function>\s*CLOSE` matched at `e`.
    let suffix = |e: usize| -> Option<usize> {
        let t = skip_ws(s, e);
        if !s[t..].starts_with("</function>") {
            return None;
        }
        let t = skip_ws(s, t + "</function>".len());
        s[t..].starts_with(fmt.close).then_some(t + fmt.close.len())
    };
    let mut found = Vec::new();
    let mut pos = 0;
    while let Some(k) = find_from(s, fmt.open, pos) {
        let mut matched = None;
        let p = skip_ws(s, k + fmt.open.len());
        if s[p..].starts_with("<function=") {
            let n = skip_ws(s, p + "<function=".len());
            let name_end = s[n..]
                .char_indices()
                .find(|&(_, c)| is_py_space(c) || c == '<' || (fmt.name_stops_at_gt && c == '>'))
                .map_or(s.len(), |(i, _)| n + i);
            if name_end > n {
                let g = skip_ws(s, name_end);
                let mut e = g;
                loop {
                    if let Some(end) = suffix(e) {
                        matched = Some((&s[n..name_end], &s[g..e], end));
                        break;
                    }
                    if e >= s.len() {
                        break;
                    }
                    e = next_char(s, e);
                }
            }
        }
        match matched {
            Some((name, block, end)) => {
                found.push((name, block));
                pos = end;
            }
            None => pos = k + 1,
        }
    }
    let mut calls = Vec::new();
    for (name, block) in found {
        let mut args = Vec::new();
        for (key, raw) in findall_tagged(py_strip(block), "<parameter=", ">", "</parameter>") {
            let value = py_strip(raw);
            let parsed = json_loads(value)?.unwrap_or_else(|| {
                Val::Str(if fmt.strip_text_values { value } else { raw }.to_string())
            });
            dict_set(&mut args, Val::Str(key.to_string()), parsed);
        }
        calls.push(FunctionCall {
            name: py_strip(name).to_string(),
            arguments: dumps(&Val::Dict(args))?,
        });
    }
    if calls.is_empty() {
        return text(content);
    }
    Ok(Extracted::Calls(calls))
}

/// `LFM2ToolUtils`: Pythonic calls `[name(key=value, ...), ...]` between
/// `<|tool_call_start|>` and `<|tool_call_end|>`, read with `ast.parse` and `literal_eval`
/// (plus bare `true` / `false` / `null` as a whole argument).
fn lfm2_calls(content: &str) -> Res {
    const START: &str = "<|tool_call_start|>";
    const END: &str = "<|tool_call_end|>";
    let Some(start) = content.find(START) else {
        return text(content);
    };
    let Some(end) = find_from(content, END, start) else {
        return text(content);
    };
    let inner = py_strip(content.get(start + START.len()..end).unwrap_or(""));
    let Some(body) = pyexpr::parse_eval(inner) else {
        return text(content); // SyntaxError
    };
    let nodes: Vec<&Node> = match &body {
        Node::List(items) => items.iter().collect(),
        Node::Call { .. } => vec![&body],
        _ => return text(content),
    };
    let mut calls = Vec::new();
    for node in nodes {
        let Node::Call { func, keywords, .. } = node else {
            return text(content);
        };
        let Node::Name(name) = func.as_ref() else {
            return text(content);
        };
        let mut args = Vec::new();
        for (key, value) in keywords {
            let value = match pyexpr::keyword_value(value) {
                Ok(v) => v,
                Err(pyexpr::Conv::Malformed) => return text(content), // ValueError
                Err(pyexpr::Conv::Raise(e)) => return Err(e),
            };
            let key = key.clone().map_or(Val::None, Val::Str);
            dict_set(&mut args, key, value);
        }
        calls.push(FunctionCall {
            name: name.clone(),
            arguments: dumps(&Val::Dict(args))?,
        });
    }
    if calls.is_empty() {
        return text(content);
    }
    Ok(Extracted::Calls(calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(pairs: &[(&str, &str)]) -> Extracted {
        Extracted::Calls(
            pairs
                .iter()
                .map(|(n, a)| FunctionCall {
                    name: n.to_string(),
                    arguments: a.to_string(),
                })
                .collect(),
        )
    }

    #[test]
    fn qwen_calls_and_fallbacks() {
        let reply = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"北京\", \"days\": 2.0}}\n</tool_call>\n<tool_call>{\"name\": \"ping\", \"arguments\": {}}</tool_call>\n";
        assert_eq!(
            ToolFormat::Qwen.extract(reply),
            calls(&[
                ("get_weather", r#"{"city": "北京", "days": 2.0}"#),
                ("ping", "{}")
            ])
        );
        // Text after a call: the lazy group runs on to the end and the JSON breaks.
        let reply = "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call> thanks";
        assert_eq!(
            ToolFormat::Qwen.extract(reply),
            Extracted::Text(reply.into())
        );
        // A string holding both words: LF's `tool["name"]` raises TypeError.
        assert_eq!(
            ToolFormat::Qwen.try_extract("<tool_call>\"name arguments\"</tool_call>"),
            Err(NoResult::Raises("TypeError"))
        );
    }

    #[test]
    fn default_backtracks_into_the_name() {
        assert_eq!(
            ToolFormat::Default.extract("Action: fooAction Input: {\"a\": 1e400}"),
            calls(&[("foo", r#"{"a": Infinity}"#)])
        );
        assert_eq!(
            ToolFormat::Default.extract("Action: foo\nAction Input: ```{\"q\": [1, 2]}```"),
            calls(&[("foo", r#"{"q": [1, 2]}"#)])
        );
    }

    #[test]
    fn lfm2_literals() {
        let reply = "<|tool_call_start|>[f(a='x', b=true, c=[1, -2.5, None], d={1: (2,)}), g()]<|tool_call_end|>";
        assert_eq!(
            ToolFormat::Lfm2.extract(reply),
            calls(&[
                (
                    "f",
                    r#"{"a": "x", "b": true, "c": [1, -2.5, null], "d": {"1": [2]}}"#
                ),
                ("g", "{}")
            ])
        );
        // `true` only counts as a whole argument; a set cannot be dumped.
        let nested = "<|tool_call_start|>f(a=[true])<|tool_call_end|>";
        assert_eq!(
            ToolFormat::Lfm2.extract(nested),
            Extracted::Text(nested.into())
        );
        assert_eq!(
            ToolFormat::Lfm2.try_extract("<|tool_call_start|>f(a={1})<|tool_call_end|>"),
            Err(NoResult::Raises("TypeError"))
        );
    }

    #[test]
    fn gemma4_string_markers() {
        let reply = "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:3}<tool_call|>";
        assert_eq!(
            ToolFormat::Gemma4.extract(reply),
            calls(&[("get_weather", r#"{"city": "Paris", "days": 3}"#)])
        );
    }
}
