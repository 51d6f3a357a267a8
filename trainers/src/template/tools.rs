//! Tool formats (LLaMA-Factory's `tool_utils.py`): how a template writes the list of tools into
//! the system prompt and how it writes the model's function calls. The prompt texts are
//! LLaMA-Factory's, verbatim, since a model fine-tuned with them expects exactly these tokens.

use super::pyjson::PyJson;
use super::{Error, Result};

/// One function call of the model: its name and its arguments as `json.dumps` text.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    /// The function name.
    pub name: String,
    /// The arguments, as Python's `json.dumps(arguments, ensure_ascii=False)`.
    pub arguments: String,
}

/// A tool format of LLaMA-Factory (`tool_format` argument, and each template's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolFormat {
    /// `Action: ...` / `Action Input: ...` (ReAct style).
    Default,
    /// Gemma 4 `declaration:...` / `<|tool_call>call:...`.
    Gemma4,
    /// GLM-4.
    Glm4,
    /// GLM-4.5 (MoE) `<arg_key>` / `<arg_value>`.
    Glm4Moe,
    /// LFM 2 Pythonic calls.
    Lfm2,
    /// Ling v2 (Qwen calls, own prompt).
    Ling,
    /// Llama 3.x JSON tool calling.
    Llama3,
    /// MiniMax-M1.
    Minimax1,
    /// MiniMax-M2.
    Minimax2,
    /// Mistral v0.3 `[AVAILABLE_TOOLS]`.
    Mistral,
    /// Qwen 2.5 `<tool_call>` JSON.
    Qwen,
    /// Qwen 3.5 `<function=...>` XML.
    Qwen35,
    /// Seed-OSS.
    SeedOss,
}

const DEFAULT_TOOL_PROMPT: &str = "You have access to the following tools:\n{tool_text}\
Use the following format if using a tool:\n```\n\
Action: tool name (one of [{tool_names}])\n\
Action Input: the input to the tool, in a JSON format representing the kwargs \
(e.g. ```{\"input\": \"hello world\", \"num_beams\": 5}```)\n```\n";

const GLM4_TOOL_PROMPT: &str =
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，\
你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具{tool_text}";

const GLM4_MOE_TOOL_PROMPT: &str = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}\
\n</tools>\n\nFor each function call, output the function name and arguments within the following XML format:\
\n<tool_call>{function-name}\
\n<arg_key>{arg-key-1}</arg_key>\
\n<arg_value>{arg-value-1}</arg_value>\
\n<arg_key>{arg-key-2}</arg_key>\
\n<arg_value>{arg-value-2}</arg_value>\
\n...\n</tool_call>\n";

const LLAMA3_TOOL_PROMPT: &str = "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n\
You have access to the following functions. To call a function, please respond with JSON for a function call. \
Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}. \
Do not use variables.\n\n{tool_text}";

const MINIMAX_M1_TOOL_PROMPT: &str = "You are provided with these tools:\n<tools>\n{tool_text}</tools>\n\n\
If you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and provide tool-name and \
json-object of arguments, following the format below:\n<tool_calls>\n\
{\"name\": <tool-name-1>, \"arguments\": <args-json-object-1>}\n...\n</tool_calls>";

const MINIMAX_M2_TOOL_PROMPT: &str = "\n\n# Tools\n\nYou may call one or more tools to assist with the user query.\n\
Here are the tools available in JSONSchema format:\n\n<tools>\n{tool_text}</tools>\n\n\
When making tool calls, use XML format to invoke tools and pass parameters:\n\
\n<minimax:tool_call>\n<invoke name=\"tool-name-1\">\n<parameter name=\"param-key-1\">param-value-1</parameter>\n\
<parameter name=\"param-key-2\">param-value-2</parameter>\n...\n</invoke>\n</minimax:tool_call>";

const QWEN_TOOL_PROMPT: &str =
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}\
\n</tools>\n\nFor each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \
\"arguments\": <args-json-object>}\n</tool_call>";

const QWEN35_TOOL_PROMPT: &str = "\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>{tool_text}\
\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n\
<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n\
<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n\
</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n\
- Function calls MUST follow the specified format: \
an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n\
- Required parameters MUST be specified\n\
- You may provide optional reasoning for your function call in natural language \
BEFORE the function call, but NOT after\n\
- If there is no function call available, answer the question like normal with your current knowledge \
and do not tell the user about function calls\n</IMPORTANT>";

const SEED_TOOL_PROMPT: &str = "system\nYou are Doubao, a helpful AI assistant. You may call one or more functions to assist with the user query.\
Tool List:\nYou are authorized to use the following tools (described in JSON Schema format). Before performing \
any task, you must decide how to call them based on the descriptions and parameters of these tools.{tool_text}\n\
工具调用请遵循如下格式:\n<seed:tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>value_1\
</parameter>\n<parameter=example_parameter_2>This is the value for the second parameter\nthat can span\nmultiple \
lines</parameter>\n</function>\n</seed:tool_call>\n";

const LING_TOOL_PROMPT: &str =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}\
\n</tools>\n\nFor each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \
\"arguments\": <args-json-object>}\n</tool_call>";

const LFM2_TOOL_PROMPT: &str = "List of tools: <|tool_list_start|>{tool_text}<|tool_list_end|>";

impl ToolFormat {
    /// The format called `name` in LLaMA-Factory.
    pub fn from_name(name: &str) -> Result<ToolFormat> {
        Ok(match name {
            "default" => ToolFormat::Default,
            "gemma4" => ToolFormat::Gemma4,
            "glm4" => ToolFormat::Glm4,
            "glm4_moe" => ToolFormat::Glm4Moe,
            "lfm2" => ToolFormat::Lfm2,
            "ling" => ToolFormat::Ling,
            "llama3" => ToolFormat::Llama3,
            "minimax1" => ToolFormat::Minimax1,
            "minimax2" => ToolFormat::Minimax2,
            "mistral" => ToolFormat::Mistral,
            "qwen" => ToolFormat::Qwen,
            "qwen3_5" => ToolFormat::Qwen35,
            "seed_oss" => ToolFormat::SeedOss,
            other => return Err(Error::UnknownToolFormat(other.to_string())),
        })
    }

    /// The tool formats, by their LLaMA-Factory names (`TOOLS` of `tool_utils.py`).
    pub const NAMES: [&'static str; 13] = [
        "default", "gemma4", "glm4", "glm4_moe", "lfm2", "ling", "llama3", "minimax1", "minimax2",
        "mistral", "qwen", "qwen3_5", "seed_oss",
    ];

    /// The LLaMA-Factory name of this format (what [`ToolFormat::from_name`] reads).
    pub fn name(self) -> &'static str {
        match self {
            ToolFormat::Default => "default",
            ToolFormat::Gemma4 => "gemma4",
            ToolFormat::Glm4 => "glm4",
            ToolFormat::Glm4Moe => "glm4_moe",
            ToolFormat::Lfm2 => "lfm2",
            ToolFormat::Ling => "ling",
            ToolFormat::Llama3 => "llama3",
            ToolFormat::Minimax1 => "minimax1",
            ToolFormat::Minimax2 => "minimax2",
            ToolFormat::Mistral => "mistral",
            ToolFormat::Qwen => "qwen",
            ToolFormat::Qwen35 => "qwen3_5",
            ToolFormat::SeedOss => "seed_oss",
        }
    }

    /// The system-prompt text describing `tools` (a parsed JSON list). `date` is the
    /// "Today Date" of the Llama 3 prompt (`%d %b %Y`).
    pub fn format_tools(self, tools: &[PyJson], date: &str) -> Result<String> {
        let fill = |prompt: &str, text: &str| prompt.replacen("{tool_text}", text, 1);
        Ok(match self {
            ToolFormat::Default => default_tools(tools)?,
            ToolFormat::Gemma4 => gemma4_tools(tools)?,
            ToolFormat::Glm4 => {
                let mut text = String::new();
                for tool in tools {
                    let tool = unwrap_function(tool, false)?;
                    text.push_str(&format!(
                        "\n\n## {}\n\n{}\n在调用上述函数时，请使用 Json 格式表示调用的参数。",
                        tool_name(tool)?,
                        tool.dumps_indent(4)
                    ));
                }
                fill(GLM4_TOOL_PROMPT, &text)
            }
            ToolFormat::Llama3 => {
                let mut text = String::new();
                for tool in tools {
                    text.push_str(&wrap_function(tool).dumps_indent(4));
                    text.push_str("\n\n");
                }
                LLAMA3_TOOL_PROMPT
                    .replacen("{date}", date, 1)
                    .replacen("{tool_text}", &text, 1)
            }
            ToolFormat::Minimax1 | ToolFormat::Minimax2 => {
                let mut text = String::new();
                for tool in tools {
                    let tool = unwrap_function(tool, false)?;
                    if self == ToolFormat::Minimax1 {
                        text.push_str(&tool.dumps());
                        text.push('\n');
                    } else {
                        text.push_str(&format!("<tool>{}</tool>\n", tool.dumps()));
                    }
                }
                let prompt = if self == ToolFormat::Minimax1 {
                    MINIMAX_M1_TOOL_PROMPT
                } else {
                    MINIMAX_M2_TOOL_PROMPT
                };
                fill(prompt, &text)
            }
            ToolFormat::Mistral => {
                let wrapped = PyJson::List(tools.iter().map(wrap_function).collect());
                format!("[AVAILABLE_TOOLS] {}[/AVAILABLE_TOOLS]", wrapped.dumps())
            }
            ToolFormat::Qwen | ToolFormat::Glm4Moe | ToolFormat::Ling => {
                let text: String = tools
                    .iter()
                    .map(|t| format!("\n{}", wrap_function(t).dumps()))
                    .collect();
                match self {
                    ToolFormat::Qwen => fill(QWEN_TOOL_PROMPT, &text),
                    ToolFormat::Glm4Moe => fill(GLM4_MOE_TOOL_PROMPT, &text),
                    _ => fill(LING_TOOL_PROMPT, &text) + "\n" + "detailed thinking off",
                }
            }
            ToolFormat::Qwen35 => {
                let mut text = String::new();
                for tool in tools {
                    text.push('\n');
                    text.push_str(&unwrap_function(tool, true)?.dumps());
                }
                fill(QWEN35_TOOL_PROMPT, &text)
            }
            ToolFormat::SeedOss => {
                let text = format!("\n{}", PyJson::List(tools.to_vec()).dumps());
                fill(SEED_TOOL_PROMPT, &text)
            }
            ToolFormat::Lfm2 => {
                let list: Result<Vec<PyJson>> = tools
                    .iter()
                    .map(|t| unwrap_function(t, true).cloned())
                    .collect();
                fill(LFM2_TOOL_PROMPT, &PyJson::List(list?).dumps())
            }
        })
    }

    /// The assistant text of the function calls `calls`.
    pub fn format_calls(self, calls: &[FunctionCall]) -> Result<String> {
        let args = |c: &FunctionCall| {
            PyJson::parse(&c.arguments)
                .map_err(|e| Error::Message(format!("function `{}`: bad arguments: {e}", c.name)))
        };
        let pairs = |c: &FunctionCall, key: &str| -> Result<PyJson> {
            Ok(PyJson::Dict(vec![
                ("name".into(), PyJson::Str(c.name.clone())),
                (key.into(), args(c)?),
            ]))
        };
        Ok(match self {
            ToolFormat::Default => calls
                .iter()
                .map(|c| format!("Action: {}\nAction Input: {}", c.name, c.arguments))
                .collect::<Vec<_>>()
                .join("\n"),
            ToolFormat::Glm4 => {
                if calls.len() > 1 {
                    return Err(Error::Message(
                        "GLM-4 does not support parallel functions".into(),
                    ));
                }
                match calls.first() {
                    Some(c) => format!("{}\n{}", c.name, c.arguments),
                    None => return Err(Error::Message("empty function call list".into())),
                }
            }
            ToolFormat::Llama3 => {
                let objects: Result<Vec<PyJson>> =
                    calls.iter().map(|c| pairs(c, "parameters")).collect();
                let mut objects = objects?;
                if objects.len() == 1 {
                    objects.remove(0).dumps()
                } else {
                    PyJson::List(objects).dumps()
                }
            }
            ToolFormat::Mistral => {
                let objects: Result<Vec<PyJson>> =
                    calls.iter().map(|c| pairs(c, "arguments")).collect();
                PyJson::List(objects?).dumps()
            }
            ToolFormat::Qwen | ToolFormat::Ling => {
                let texts: Result<Vec<String>> = calls
                    .iter()
                    .map(|c| {
                        Ok(format!(
                            "<tool_call>\n{}\n</tool_call>",
                            pairs(c, "arguments")?.dumps()
                        ))
                    })
                    .collect();
                texts?.join("\n")
            }
            ToolFormat::Minimax1 => {
                let texts: Result<Vec<String>> = calls
                    .iter()
                    .map(|c| Ok(pairs(c, "arguments")?.dumps()))
                    .collect();
                format!("<tool_calls>\n{}\n</tool_calls>", texts?.join("\n"))
            }
            ToolFormat::Minimax2
            | ToolFormat::Qwen35
            | ToolFormat::Glm4Moe
            | ToolFormat::SeedOss => {
                let mut texts = Vec::with_capacity(calls.len());
                for c in calls {
                    let parsed = args(c)?;
                    let items = dict_items(&parsed, &c.name)?;
                    let mut text = match self {
                        ToolFormat::Minimax2 => format!("<invoke name=\"{}\">", c.name),
                        ToolFormat::Qwen35 => format!("<tool_call>\n<function={}>", c.name),
                        ToolFormat::Glm4Moe => format!("\n<tool_call>{}", c.name),
                        _ => format!("\n<seed:tool_call>\n<function={}", c.name),
                    };
                    for (key, value) in items {
                        let value = match value {
                            PyJson::Str(s) => s.clone(),
                            other => other.dumps(),
                        };
                        text.push_str(&match self {
                            ToolFormat::Minimax2 => {
                                format!("\n<parameter name=\"{key}\">{value}</parameter>")
                            }
                            ToolFormat::Qwen35 => {
                                format!("\n<parameter={key}>\n{value}\n</parameter>")
                            }
                            ToolFormat::Glm4Moe => {
                                format!(
                                    "\n<arg_key>{key}</arg_key>\n<arg_value>{value}</arg_value>"
                                )
                            }
                            _ => format!("\n<parameter={key}>{value}</parameter>"),
                        });
                    }
                    text.push_str(match self {
                        ToolFormat::Minimax2 => "\n</invoke>",
                        ToolFormat::Qwen35 => "\n</function>\n</tool_call>",
                        ToolFormat::Glm4Moe => "",
                        _ => "\n</function>\n</seed:tool_call>",
                    });
                    texts.push(text);
                }
                texts.join("\n")
            }
            ToolFormat::Lfm2 => {
                let mut texts = Vec::with_capacity(calls.len());
                for c in calls {
                    let parsed = args(c)?;
                    let parts: Vec<String> = dict_items(&parsed, &c.name)?
                        .iter()
                        .map(|(k, v)| match v {
                            PyJson::Str(s) => format!("{k}=\"{s}\""),
                            other => format!("{k}={}", other.dumps()),
                        })
                        .collect();
                    texts.push(format!("{}({})", c.name, parts.join(", ")));
                }
                format!("<|tool_call_start|>[{}]<|tool_call_end|>", texts.join(", "))
            }
            ToolFormat::Gemma4 => {
                let mut out = String::new();
                for c in calls {
                    // The arguments are json.dumps text, so they always parse.
                    let parsed =
                        PyJson::parse(&c.arguments).unwrap_or(PyJson::Str(c.arguments.clone()));
                    out.push_str(&format!("<|tool_call>call:{}{{", c.name));
                    match &parsed {
                        PyJson::Dict(items) => {
                            let mut sorted: Vec<&(String, PyJson)> = items.iter().collect();
                            sorted.sort_by(|a, b| a.0.cmp(&b.0));
                            let parts: Vec<String> = sorted
                                .iter()
                                .map(|(k, v)| format!("{k}:{}", gemma4_argument(v, false)))
                                .collect();
                            out.push_str(&parts.join(","));
                        }
                        PyJson::Str(s) => out.push_str(s),
                        other => out.push_str(&gemma4_argument(other, false)),
                    }
                    out.push_str("}<tool_call|>");
                }
                out
            }
        })
    }
}

/// `json.loads` of a function message: one call or a list of calls, each with a `name` and
/// `arguments` (LLaMA-Factory's `_parse_functions`).
pub fn parse_function_calls(json_text: &str, original: &str) -> Result<Vec<FunctionCall>> {
    let bad = || {
        Error::Message(format!(
            "invalid JSON format in function message: {:?}",
            original
        ))
    };
    let value = PyJson::parse(json_text).map_err(|_| bad())?;
    let calls = match value {
        PyJson::List(items) => items,
        other => vec![other],
    };
    calls
        .iter()
        .map(|c| {
            let name = c.get("name").ok_or_else(bad)?;
            let name = match name {
                PyJson::Str(s) => s.clone(),
                other => other.py_str(),
            };
            let arguments = c.get("arguments").ok_or_else(bad)?.dumps();
            Ok(FunctionCall { name, arguments })
        })
        .collect()
}

/// `tool.get("function", <default>) if tool.get("type") == "function" else tool`; the default
/// is `""` in most formats (an error later) and the tool itself in a few (`keep`).
fn unwrap_function(tool: &PyJson, keep: bool) -> Result<&PyJson> {
    if tool.get("type").and_then(PyJson::as_str) == Some("function") {
        match tool.get("function") {
            Some(f) => Ok(f),
            None if keep => Ok(tool),
            None => Err(Error::Tools(
                "a tool of type `function` has no `function` object".into(),
            )),
        }
    } else {
        Ok(tool)
    }
}

/// `tool if tool.get("type") == "function" else {"type": "function", "function": tool}`.
fn wrap_function(tool: &PyJson) -> PyJson {
    if tool.get("type").and_then(PyJson::as_str) == Some("function") {
        tool.clone()
    } else {
        PyJson::Dict(vec![
            ("type".into(), PyJson::Str("function".into())),
            ("function".into(), tool.clone()),
        ])
    }
}

fn tool_name(tool: &PyJson) -> Result<String> {
    match tool.get("name") {
        Some(name) => Ok(name.py_str()),
        None => Err(Error::Tools(format!(
            "a tool has no `name`: {}",
            tool.dumps()
        ))),
    }
}

fn dict_items<'a>(args: &'a PyJson, name: &str) -> Result<&'a [(String, PyJson)]> {
    match args {
        PyJson::Dict(items) => Ok(items),
        _ => Err(Error::Message(format!(
            "function `{name}`: arguments must be a JSON object for this tool format"
        ))),
    }
}

/// LLaMA-Factory's `DefaultToolUtils.tool_formatter`. Where it would crash (a tool without
/// `parameters`, an `enum` of numbers) this prints what is there instead.
fn default_tools(tools: &[PyJson]) -> Result<String> {
    let mut tool_text = String::new();
    let mut names = Vec::with_capacity(tools.len());
    let empty = PyJson::Dict(Vec::new());
    for tool in tools {
        let tool = unwrap_function(tool, false)?;
        let params = tool.get("parameters").unwrap_or(&empty);
        let required = params.get("required");
        let mut param_text = String::new();
        if let Some(PyJson::Dict(props)) = params.get("properties") {
            for (name, param) in props {
                let is_required = matches!(required, Some(PyJson::List(r)) if r.iter().any(|x| x.as_str() == Some(name)));
                let mut enum_text = String::new();
                if let Some(values) = param.get("enum").filter(|v| v.truthy()) {
                    let items: Vec<String> = match values {
                        PyJson::List(items) => items.iter().map(PyJson::py_str).collect(),
                        other => vec![other.py_str()],
                    };
                    enum_text = format!(", should be one of [{}]", items.join(", "));
                }
                let mut items_text = String::new();
                if let Some(items) = param.get("items").filter(|v| v.truthy()) {
                    let ty = items.get("type").map(PyJson::py_str).unwrap_or_default();
                    items_text = format!(", where each item should be {ty}");
                }
                param_text.push_str(&format!(
                    "  - {name} ({}{}): {}{enum_text}{items_text}\n",
                    param.get("type").map(PyJson::py_str).unwrap_or_default(),
                    if is_required { ", required" } else { "" },
                    param
                        .get("description")
                        .map(PyJson::py_str)
                        .unwrap_or_default(),
                ));
            }
        }
        let name = tool_name(tool)?;
        tool_text.push_str(&format!(
            "> Tool Name: {name}\nTool Description: {}\nTool Args:\n{param_text}\n",
            tool.get("description")
                .map(PyJson::py_str)
                .unwrap_or_default()
        ));
        names.push(name);
    }
    Ok(DEFAULT_TOOL_PROMPT
        .replacen("{tool_text}", &tool_text, 1)
        .replacen("{tool_names}", &names.join(", "), 1))
}

/// LLaMA-Factory's `Gemma4ToolUtils.tool_formatter`.
fn gemma4_tools(tools: &[PyJson]) -> Result<String> {
    const Q: &str = "<|\"|>";
    let upper = |v: &PyJson| v.py_str().to_uppercase();
    let mut declarations = Vec::with_capacity(tools.len());
    for tool in tools {
        let f = unwrap_function(tool, true)?;
        let mut decl = format!(
            "declaration:{}{{description:{Q}{}{Q}",
            tool_name(f)?,
            f.get("description").map(PyJson::py_str).unwrap_or_default()
        );
        if let Some(params) = f.get("parameters").filter(|p| p.truthy()) {
            let mut parts = Vec::new();
            if let Some(props) = params.get("properties").filter(|p| p.truthy()) {
                let mut items = Vec::new();
                if let PyJson::Dict(props) = props {
                    for (name, schema) in props {
                        let mut item = Vec::new();
                        if let Some(d) = schema.get("description").filter(|d| d.truthy()) {
                            item.push(format!("description:{Q}{}{Q}", d.py_str()));
                        }
                        if let Some(t) = schema.get("type").filter(|t| t.truthy()) {
                            item.push(format!("type:{Q}{}{Q}", upper(t)));
                        }
                        items.push(format!("{name}:{{{}}}", item.join(",")));
                    }
                }
                parts.push(format!("properties:{{{}}}", items.join(",")));
            }
            if let Some(required) = params.get("required").filter(|r| r.truthy()) {
                let names: Vec<String> = match required {
                    PyJson::List(items) => items
                        .iter()
                        .map(|i| format!("{Q}{}{Q}", i.py_str()))
                        .collect(),
                    other => vec![format!("{Q}{}{Q}", other.py_str())],
                };
                parts.push(format!("required:[{}]", names.join(",")));
            }
            if let Some(t) = params.get("type").filter(|t| t.truthy()) {
                parts.push(format!("type:{Q}{}{Q}", upper(t)));
            }
            decl.push_str(&format!(",parameters:{{{}}}", parts.join(",")));
        }
        if let Some(resp) = f.get("response").filter(|r| r.truthy()) {
            let mut parts = Vec::new();
            if let Some(d) = resp.get("description").filter(|d| d.truthy()) {
                parts.push(format!("description:{Q}{}{Q}", d.py_str()));
            }
            let ty = resp.get("type").map(upper).unwrap_or_default();
            if ty == "OBJECT" {
                parts.push(format!("type:{Q}{ty}{Q}"));
            }
            decl.push_str(&format!(",response:{{{}}}", parts.join(",")));
        }
        decl.push('}');
        declarations.push(decl);
    }
    Ok(declarations.join("\n"))
}

/// Gemma 4's `_format_argument`: strings quoted with `<|"|>`, dict keys sorted.
fn gemma4_argument(v: &PyJson, escape_keys: bool) -> String {
    const Q: &str = "<|\"|>";
    match v {
        PyJson::Str(s) => format!("{Q}{s}{Q}"),
        PyJson::Bool(b) => if *b { "true" } else { "false" }.into(),
        PyJson::Dict(items) => {
            let mut sorted: Vec<&(String, PyJson)> = items.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            let parts: Vec<String> = sorted
                .iter()
                .map(|(k, v)| {
                    let key = if escape_keys {
                        format!("{Q}{k}{Q}")
                    } else {
                        k.clone()
                    };
                    format!("{key}:{}", gemma4_argument(v, escape_keys))
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        PyJson::List(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| gemma4_argument(i, escape_keys))
                .collect();
            format!("[{}]", parts.join(","))
        }
        PyJson::Null => "null".into(),
        other => other.py_str(),
    }
}

/// Today's date as `%d %b %Y` (UTC, from [`crate::clock`]), for the Llama 3 tool prompt.
pub fn today() -> String {
    crate::clock::now("%d %b %Y")
}
