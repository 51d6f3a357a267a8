//! Dataset rows → LLaMA-Factory's unified form (`converter.py`): `_prompt` (an odd number of
//! alternating user/observation and assistant/function messages), `_response` (one message;
//! two for ranking chosen/rejected; kto rows carry an empty partner), `_system`, `_tools`.
//! The alpaca, sharegpt and openai converters follow LF rule by rule: unset columns, history
//! pairs, role tags, tool calls, alternation checks. A row that breaks the alternation rules is
//! kept with empty prompt and response and a warning (LF skips it later); a row whose values have
//! the wrong JSON type is an error (LF crashes on it), returned as a one-line problem that the
//! caller prefixes with dataset, file and row index.

use super::dataset_info::{DatasetAttr, Formatting};
use crate::template::pyjson::PyJson;
use crate::template::{Message, Role};

/// One row in LLaMA-Factory's unified form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Converted {
    /// `_prompt`: the conversation before the response.
    pub prompt: Vec<Message>,
    /// `_response`: the answer (two for ranking rows: chosen then rejected).
    pub response: Vec<Message>,
    /// `_system`: the system prompt ("" = the template's default).
    pub system: String,
    /// `_tools`: the tool descriptions as JSON text ("" = none).
    pub tools: String,
}

/// A problem with one row (the caller adds dataset, file and row index).
pub type RowResult<T> = std::result::Result<T, String>;

/// Converts one row of a dataset laid out as `attr.formatting`.
pub fn convert_row(attr: &DatasetAttr, row: &PyJson) -> RowResult<Converted> {
    if !matches!(row, PyJson::Dict(_)) {
        return Err(format!("a row must be a JSON object, got {}", kind(row)));
    }
    for (kind, column) in [
        ("images", &attr.images),
        ("videos", &attr.videos),
        ("audios", &attr.audios),
    ] {
        if col(row, column).is_some_and(PyJson::truthy) {
            return Err(format!(
                "{kind} (column `{}`) are not implemented: lmf trains text-only models",
                column.as_deref().unwrap_or_default()
            ));
        }
    }
    match attr.formatting {
        Formatting::Alpaca => alpaca(attr, row),
        Formatting::Sharegpt => sharegpt(attr, row),
        Formatting::Openai => openai(attr, row),
    }
}

/// The JSON type of a value, for messages.
fn kind(v: &PyJson) -> &'static str {
    match v {
        PyJson::Null => "null",
        PyJson::Bool(_) => "a boolean",
        PyJson::Int(_) | PyJson::Float(_) => "a number",
        PyJson::Str(_) => "a string",
        PyJson::List(_) => "a list",
        PyJson::Dict(_) => "an object",
    }
}

/// `example[column]`: a column missing from the row reads as null (HF fills absent keys).
fn col<'a>(row: &'a PyJson, column: &Option<String>) -> Option<&'a PyJson> {
    column
        .as_deref()
        .map(|c| row.get(c).unwrap_or(&PyJson::Null))
}

/// A text value: a string, or null / absent (→ "").
fn text(row: &PyJson, column: &Option<String>) -> RowResult<String> {
    match col(row, column) {
        None | Some(PyJson::Null) => Ok(String::new()),
        Some(PyJson::Str(s)) => Ok(s.clone()),
        Some(v) => Err(format!(
            "column `{}` must be a string, got {}",
            column.as_deref().unwrap_or_default(),
            kind(v)
        )),
    }
}

/// A required string inside a structure.
fn string(v: &PyJson, what: &str) -> RowResult<String> {
    match v {
        PyJson::Str(s) => Ok(s.clone()),
        v => Err(format!("{what} must be a string, got {}", kind(v))),
    }
}

fn msg(role: Role, content: String) -> Message {
    Message { role, content }
}

/// `example[kto_tag]` when it is a boolean (LF's test for a kto row).
fn kto_tag(attr: &DatasetAttr, row: &PyJson) -> Option<bool> {
    match col(row, &attr.kto_tag) {
        Some(PyJson::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// KTO rows: the real answer plus an empty one, in the order that encodes the tag.
fn kto_response(answer: Message, tag: bool) -> Vec<Message> {
    let empty = msg(Role::Assistant, String::new());
    if tag {
        vec![answer, empty]
    } else {
        vec![empty, answer]
    }
}

fn alpaca(attr: &DatasetAttr, row: &PyJson) -> RowResult<Converted> {
    let mut prompt = Vec::new();
    if let Some(PyJson::List(pairs)) = col(row, &attr.history) {
        for (i, pair) in pairs.iter().enumerate() {
            let PyJson::List(pair) = pair else {
                return Err(format!("history[{i}] must be a [prompt, response] pair"));
            };
            let [old_prompt, old_response] = pair.as_slice() else {
                return Err(format!(
                    "history[{i}] must be a [prompt, response] pair, got {} items",
                    pair.len()
                ));
            };
            prompt.push(msg(Role::User, string(old_prompt, "a history prompt")?));
            prompt.push(msg(
                Role::Assistant,
                string(old_response, "a history response")?,
            ));
        }
    }
    let mut query = Vec::new();
    for column in [&attr.prompt, &attr.query] {
        if let Some(v) = col(row, column) {
            if v.truthy() {
                query.push(string(
                    v,
                    &format!("column `{}`", column.as_deref().unwrap_or_default()),
                )?);
            }
        }
    }
    prompt.push(msg(Role::User, query.join("\n")));

    let response = if let Some(tag) = kto_tag(attr, row) {
        let answer = string(
            col(row, &attr.response).unwrap_or(&PyJson::Null),
            "the kto response",
        )?;
        kto_response(msg(Role::Assistant, answer), tag)
    } else if let (true, Some(PyJson::Str(c)), Some(PyJson::Str(r))) = (
        attr.ranking,
        col(row, &attr.chosen),
        col(row, &attr.rejected),
    ) {
        vec![
            msg(Role::Assistant, c.clone()),
            msg(Role::Assistant, r.clone()),
        ]
    } else if let Some(PyJson::Str(r)) = col(row, &attr.response) {
        vec![msg(Role::Assistant, r.clone())]
    } else {
        vec![] // unsupervised
    };
    Ok(Converted {
        prompt,
        response,
        system: text(row, &attr.system)?,
        tools: tools_text(row, &attr.tools, false)?,
    })
}

/// `_tools`: a string; openai rows also accept an object or list (dumped as Python would).
fn tools_text(row: &PyJson, column: &Option<String>, dump: bool) -> RowResult<String> {
    match col(row, column) {
        Some(v @ (PyJson::Dict(_) | PyJson::List(_))) if dump => Ok(v.dumps()),
        _ => text(row, column),
    }
}

/// The role → LF role map of a dataset's tags (later tags win on a clash, like a Python dict).
fn tag_role(attr: &DatasetAttr, tag: Option<&str>) -> Option<Role> {
    let pairs = [
        (&attr.user_tag, Role::User),
        (&attr.assistant_tag, Role::Assistant),
        (&attr.observation_tag, Role::Observation),
        (&attr.function_tag, Role::Function),
        (&attr.system_tag, Role::System),
    ];
    pairs
        .iter()
        .rev()
        .find(|(t, _)| t.as_deref() == tag)
        .map(|(_, r)| *r)
}

/// One turn: (role tag, content), both read with the dataset's tags.
fn turn<'a>(attr: &DatasetAttr, m: &'a PyJson, what: &str) -> RowResult<(Option<&'a str>, String)> {
    if !matches!(m, PyJson::Dict(_)) {
        return Err(format!("{what} must be an object, got {}", kind(m)));
    }
    let role_key = attr.role_tag.as_deref().unwrap_or_default();
    let content_key = attr.content_tag.as_deref().unwrap_or_default();
    let role = match m.get(role_key) {
        Some(PyJson::Str(s)) => Some(s.as_str()),
        Some(PyJson::Null) => None,
        Some(v) => {
            return Err(format!(
                "{what}: `{role_key}` must be a string, got {}",
                kind(v)
            ))
        }
        None => return Err(format!("{what} has no `{role_key}` key")),
    };
    let content = match m.get(content_key) {
        Some(v) => string(v, &format!("{what}: `{content_key}`"))?,
        None => return Err(format!("{what} has no `{content_key}` key")),
    };
    Ok((role, content))
}

/// The turns column: a list of objects.
fn messages<'a>(attr: &DatasetAttr, row: &'a PyJson) -> RowResult<&'a [PyJson]> {
    let column = attr.messages.as_deref().unwrap_or_default();
    match col(row, &attr.messages) {
        Some(PyJson::List(l)) => Ok(l),
        Some(v) => Err(format!(
            "column `{column}` must be a list of messages, got {}",
            kind(v)
        )),
        None => Err("the dataset has no `messages` column".into()),
    }
}

/// Is `role` one of the accepted tags (by position: user/observation, then assistant/function)?
fn accepted(attr: &DatasetAttr, role: Option<&str>, odd: bool) -> bool {
    let tags = if odd {
        [&attr.assistant_tag, &attr.function_tag]
    } else {
        [&attr.user_tag, &attr.observation_tag]
    };
    tags.iter().any(|t| t.as_deref() == role)
}

/// Warns like LF and returns the row LF keeps for a broken example.
fn broken(system: String, tools: String, why: &str) -> Converted {
    eprintln!("[WARNING] {why}; skipping this abnormal example.");
    Converted {
        prompt: vec![],
        response: vec![],
        system,
        tools,
    }
}

/// Ranking rows: chosen and rejected as turns. A role other than assistant/function is warned
/// about but kept with its mapped role, as LF does (LF sets its `broken_data` flag after the
/// check that would skip the row); a role that maps to nothing is an error (LF's KeyError).
fn ranking_pair(attr: &DatasetAttr, row: &PyJson) -> RowResult<Option<(Message, Message)>> {
    if !attr.ranking {
        return Ok(None);
    }
    let (Some(c @ PyJson::Dict(_)), Some(r @ PyJson::Dict(_))) =
        (col(row, &attr.chosen), col(row, &attr.rejected))
    else {
        return Ok(None);
    };
    let (c_role, c_text) = turn(attr, c, "the chosen message")?;
    let (r_role, r_text) = turn(attr, r, "the rejected message")?;
    if !accepted(attr, c_role, true) || !accepted(attr, r_role, true) {
        eprintln!("[WARNING] Invalid role tag in the chosen/rejected messages.");
    }
    let role = |tag: Option<&str>, what: &str| {
        tag_role(attr, tag).ok_or_else(|| {
            format!(
                "{what}: role {:?} is none of the dataset's tags",
                tag.unwrap_or("null")
            )
        })
    };
    Ok(Some((
        msg(role(c_role, "the chosen message")?, c_text),
        msg(role(r_role, "the rejected message")?, r_text),
    )))
}

/// The prompt/response split shared by sharegpt and openai once turns are aligned.
fn finish(
    attr: &DatasetAttr,
    row: &PyJson,
    aligned: Vec<Message>,
    system: String,
    tools: String,
) -> RowResult<Converted> {
    let (prompt, response) = if let Some(tag) = kto_tag(attr, row) {
        let mut prompt = aligned;
        let last = prompt
            .pop()
            .unwrap_or_else(|| msg(Role::Assistant, String::new()));
        (prompt, kto_response(last, tag))
    } else if let Some((chosen, rejected)) = ranking_pair(attr, row)? {
        (aligned, vec![chosen, rejected])
    } else {
        let mut prompt = aligned;
        let response: Vec<Message> = prompt.pop().into_iter().collect();
        (prompt, response)
    };
    Ok(Converted {
        prompt,
        response,
        system,
        tools,
    })
}

fn sharegpt(attr: &DatasetAttr, row: &PyJson) -> RowResult<Converted> {
    let mut turns = messages(attr, row)?;
    let mut system = text(row, &attr.system)?;
    if let (Some(tag), Some(first)) = (&attr.system_tag, turns.first()) {
        let (role, content) = turn(attr, first, "message 0")?;
        if role == Some(tag.as_str()) {
            system = content;
            turns = &turns[1..];
        }
    }
    let tools = tools_text(row, &attr.tools, false)?;
    let mut aligned = Vec::with_capacity(turns.len());
    for (i, m) in turns.iter().enumerate() {
        let (role, content) = turn(attr, m, &format!("message {i}"))?;
        if !accepted(attr, role, i % 2 == 1) {
            return Ok(broken(system, tools, "Invalid role tag"));
        }
        let role = tag_role(attr, role).unwrap_or(Role::User);
        aligned.push(msg(role, content));
    }
    if (aligned.len() % 2 == 0) == attr.ranking {
        return Ok(broken(system, tools, "Invalid message count"));
    }
    finish(attr, row, aligned, system, tools)
}

fn openai(attr: &DatasetAttr, row: &PyJson) -> RowResult<Converted> {
    let mut turns = messages(attr, row)?;
    let mut system = match col(row, &attr.system) {
        None => String::new(),
        Some(_) => text(row, &attr.system)?,
    };
    if let (Some(tag), Some(first)) = (&attr.system_tag, turns.first()) {
        let (role, content) = turn(attr, first, "message 0")?;
        if role == Some(tag.as_str()) {
            system = content;
            turns = &turns[1..];
        }
    }
    let is = |role: Option<&str>, tag: &Option<String>| {
        tag.as_deref().is_some() && role == tag.as_deref()
    };
    let mut aligned = Vec::with_capacity(turns.len());
    let mut tool_responses: Vec<String> = Vec::new();
    for (i, m) in turns.iter().enumerate() {
        let what = format!("message {i}");
        let role_key = attr.role_tag.as_deref().unwrap_or_default();
        let mut role = match m.get(role_key) {
            Some(PyJson::Str(s)) => Some(s.clone()),
            _ => turn(attr, m, &what)?.0.map(str::to_string),
        };
        // assistant turns with `tool_calls` become function turns holding the calls as JSON
        let tool_calls = m.get("tool_calls").filter(|t| t.truthy());
        let is_answer =
            is(role.as_deref(), &attr.assistant_tag) || is(role.as_deref(), &attr.function_tag);
        let content = match tool_calls {
            Some(PyJson::List(calls)) if is_answer => {
                let functions = calls
                    .iter()
                    .map(|c| {
                        c.get("function").cloned().ok_or_else(|| {
                            format!("{what}: every tool call needs a `function` object")
                        })
                    })
                    .collect::<RowResult<Vec<_>>>()?;
                role = attr.function_tag.clone();
                PyJson::List(functions).dumps()
            }
            Some(v) if is_answer => {
                return Err(format!(
                    "{what}: `tool_calls` must be a list, got {}",
                    kind(v)
                ))
            }
            _ => turn(attr, m, &what)?.1,
        };
        if is(role.as_deref(), &attr.observation_tag) {
            tool_responses.push(content);
            continue;
        }
        if !tool_responses.is_empty() {
            let joined = tool_responses.join("\n</tool_response>\n<tool_response>\n");
            aligned.push(msg(Role::Observation, joined));
            tool_responses.clear();
        }
        let mapped = tag_role(attr, role.as_deref()).ok_or_else(|| {
            format!(
                "{what}: unknown role {:?}",
                role.as_deref().unwrap_or("null")
            )
        })?;
        aligned.push(msg(mapped, content));
    }
    let tools = tools_text(row, &attr.tools, true)?;
    let position_ok = aligned.iter().enumerate().all(|(i, m)| {
        if i % 2 == 0 {
            matches!(m.role, Role::User | Role::Observation)
        } else {
            matches!(m.role, Role::Assistant | Role::Function)
        }
    });
    // LF's fixed "detailed thinking" system suffix for openai rows
    const SHORT: &str = "detailed thinking off";
    let system = if system.is_empty() {
        if tools.is_empty() {
            SHORT.to_string()
        } else {
            system
        }
    } else if tools.is_empty() {
        if system.contains("detailed thinking on") || system.contains(SHORT) {
            system
        } else {
            format!("{system}\n{SHORT}")
        }
    } else {
        format!("{system}\n")
    };
    if !position_ok {
        return Ok(broken(system, tools, "Invalid role tag"));
    }
    if (aligned.len() % 2 == 0) == attr.ranking {
        return Ok(broken(system, tools, "Invalid message count"));
    }
    finish(attr, row, aligned, system, tools)
}
