//! The registered templates: every `register_template(...)` of LLaMA-Factory 0.9.5's
//! `llamafactory/data/template.py` (121 templates), transcribed as data. Only the settings that
//! differ from `register_template`'s defaults are written; [`Def::build`] applies the defaults
//! the way `register_template` does. The strings are LLaMA-Factory's, verbatim: a model
//! fine-tuned through one of them expects exactly these tokens. Multimodal templates encode
//! text only here (their `mm_plugin` is recorded, not ported).
//!
//! `trainers/tests/templates.rs` checks every template against LLaMA-Factory itself.

use super::formatter::{Formatter, Slot};
use super::template::{Template, TemplateKind};
use super::tools::ToolFormat;
use super::{Error, Result};
use crate::args::closest::edit_distance;
use std::path::Path;

/// The names of all registered templates, sorted.
const NAMES: [&str; 121] = [
    "aeva",
    "alpaca",
    "bailing",
    "bailing_v2",
    "breeze",
    "chatglm3",
    "chatml",
    "chatml_de",
    "cohere",
    "cpm4",
    "dbrx",
    "deepseek",
    "deepseek3",
    "deepseekcoder",
    "deepseekr1",
    "default",
    "dots_ocr",
    "empty",
    "ernie",
    "ernie_nothink",
    "ernie_vl",
    "exaone",
    "falcon",
    "falcon_h1",
    "fewshot",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4n",
    "glm4",
    "glm4_5v",
    "glm4_7",
    "glm4_moe",
    "glm4v",
    "glm_ocr",
    "glmz1",
    "gpt_oss",
    "granite3",
    "granite3_vision",
    "granite4",
    "hunyuan",
    "hunyuan_small",
    "hy3",
    "index",
    "intern2",
    "intern_s1",
    "intern_vl",
    "keye_vl",
    "kimi_vl",
    "lfm2",
    "lfm2_vl",
    "llama2",
    "llama2_zh",
    "llama3",
    "llama4",
    "llava",
    "llava_next",
    "llava_next_llama3",
    "llava_next_mistral",
    "llava_next_qwen",
    "llava_next_video",
    "llava_next_video_mistral",
    "llava_next_video_yi",
    "llava_next_yi",
    "mimo",
    "mimo_v2",
    "mimo_vl",
    "minicpm_o",
    "minicpm_v",
    "minicpm_v_4_6",
    "minimax1",
    "minimax2",
    "ministral",
    "ministral3",
    "mistral",
    "mistral_small",
    "mllama",
    "moonlight",
    "olmo",
    "openchat",
    "openchat-3.6",
    "opencoder",
    "paligemma",
    "paligemma_chat",
    "phi",
    "phi4",
    "phi4_mini",
    "phi_small",
    "pixtral",
    "qwen",
    "qwen2_audio",
    "qwen2_omni",
    "qwen2_vl",
    "qwen3",
    "qwen3_5",
    "qwen3_5_nothink",
    "qwen3_6",
    "qwen3_nothink",
    "qwen3_omni",
    "qwen3_omni_nothink",
    "qwen3_vl",
    "qwen3_vl_nothink",
    "sailor",
    "seed_coder",
    "seed_oss",
    "smollm",
    "smollm2",
    "solar",
    "starchat",
    "telechat2",
    "vicuna",
    "video_llava",
    "xuanyuan",
    "yi",
    "yi_vl",
    "youtu",
    "youtu_vl",
    "yuan",
    "zephyr",
];

/// The names of all registered templates, sorted.
pub fn template_names() -> &'static [&'static str] {
    &NAMES
}

/// A fresh copy of the registered template `name`; an unknown name is an error listing the
/// registered names closest to it.
pub fn get_template(name: &str) -> Result<Template> {
    find_template(name, &[], None)
}

/// The template `name`: one of `custom` (templates read from a template file; they replace a
/// built-in template of the same name), else the built-in one. An unknown name is an error
/// listing the names closest to it, those of `custom` included; `file` (where `custom` came
/// from) is named in it.
pub fn find_template(name: &str, custom: &[Template], file: Option<&Path>) -> Result<Template> {
    if let Some(template) = custom.iter().find(|t| t.name == name) {
        return Ok(template.clone());
    }
    define(name)
        .map(|def| def.build(name))
        .ok_or_else(|| Error::UnknownTemplate {
            name: name.to_string(),
            close: close_names(name, custom.iter().map(|t| t.name.as_str())),
            file: file.map(|f| f.display().to_string()),
        })
}

/// The registered names (and `extra` ones) closest to `name`: those that contain it (or the
/// other way round) first, then by edit distance; five at most, and always some, so an error
/// can name them.
fn close_names<'a>(name: &str, extra: impl Iterator<Item = &'a str>) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut names: Vec<&str> = NAMES.iter().copied().chain(extra).collect();
    names.sort_unstable();
    names.dedup();
    let mut scored: Vec<(usize, &str)> = names
        .into_iter()
        .map(|n| {
            let related = !lower.is_empty() && (n.contains(lower.as_str()) || lower.contains(n));
            (if related { 0 } else { edit_distance(&lower, n) }, n)
        })
        .collect();
    scored.sort();
    let best = scored.first().map_or(0, |&(d, _)| d);
    // Names as near as the nearest (or within two edits of it): a typo gives its one or two
    // candidates, a name from nowhere gives the few least far.
    scored
        .into_iter()
        .take_while(|&(d, _)| d <= best + 2)
        .take(if best <= 2.max(lower.len() / 3) { 5 } else { 3 })
        .map(|(_, n)| n.to_string())
        .collect()
}

fn t(s: &str) -> Slot {
    Slot::text(s)
}
fn bos() -> Slot {
    Slot::bos()
}
fn eos() -> Slot {
    Slot::eos()
}
fn token(s: &str) -> Slot {
    Slot::token(s)
}
fn set(s: &str) -> Slot {
    Slot::Special(s.to_string())
}

/// The arguments of one `register_template` call.
#[derive(Default)]
struct Def {
    kind: Option<TemplateKind>,
    user: Option<Vec<Slot>>,
    assistant: Option<Vec<Slot>>,
    system: Option<Vec<Slot>>,
    function: Option<(Vec<Slot>, &'static str)>,
    observation: Option<Vec<Slot>>,
    tools: Option<Formatter>,
    prefix: Vec<Slot>,
    default_system: &'static str,
    stop_words: &'static [&'static str],
    thought_words: Option<(&'static str, &'static str)>,
    tool_call_words: Option<(&'static str, &'static str)>,
    efficient_eos: bool,
    replace_eos: bool,
    replace_jinja_template: bool,
    mm_plugin: Option<&'static str>,
}

impl Def {
    fn new() -> Def {
        Def::default()
    }
    fn llama2(mut self) -> Def {
        self.kind = Some(TemplateKind::Llama2);
        self
    }
    fn reasoning(mut self) -> Def {
        self.kind = Some(TemplateKind::Reasoning);
        self
    }
    fn glm47_reasoning(mut self) -> Def {
        self.kind = Some(TemplateKind::Glm47Reasoning);
        self
    }
    fn user(mut self, slots: &[Slot]) -> Def {
        self.user = Some(slots.to_vec());
        self
    }
    fn assistant(mut self, slots: &[Slot]) -> Def {
        self.assistant = Some(slots.to_vec());
        self
    }
    fn system(mut self, slots: &[Slot]) -> Def {
        self.system = Some(slots.to_vec());
        self
    }
    fn function(mut self, slots: &[Slot], tool_format: &'static str) -> Def {
        self.function = Some((slots.to_vec(), tool_format));
        self
    }
    fn observation(mut self, slots: &[Slot]) -> Def {
        self.observation = Some(slots.to_vec());
        self
    }
    fn tools(mut self, tool_format: &'static str) -> Def {
        self.tools = Some(Formatter::Tool(tool_format_of(tool_format)));
        self
    }
    fn tools_string(mut self, slots: &[Slot]) -> Def {
        self.tools = Some(Formatter::String(slots.to_vec()));
        self
    }
    fn prefix(mut self, slots: &[Slot]) -> Def {
        self.prefix = slots.to_vec();
        self
    }
    fn default_system(mut self, system: &'static str) -> Def {
        self.default_system = system;
        self
    }
    fn stop_words(mut self, words: &'static [&'static str]) -> Def {
        self.stop_words = words;
        self
    }
    fn thought_words(mut self, open: &'static str, close: &'static str) -> Def {
        self.thought_words = Some((open, close));
        self
    }
    fn tool_call_words(mut self, open: &'static str, close: &'static str) -> Def {
        self.tool_call_words = Some((open, close));
        self
    }
    fn efficient_eos(mut self) -> Def {
        self.efficient_eos = true;
        self
    }
    fn replace_eos(mut self) -> Def {
        self.replace_eos = true;
        self
    }
    fn replace_jinja_template(mut self) -> Def {
        self.replace_jinja_template = true;
        self
    }
    fn mm_plugin(mut self, name: &'static str) -> Def {
        self.mm_plugin = Some(name);
        self
    }

    /// The template this call registers ([`TemplateSpec::build`] applies the defaults).
    fn build(self, name: &str) -> Template {
        let slots = |s: Option<Vec<Slot>>| s.map(Formatter::String);
        let words = |w: Option<(&str, &str)>| w.map(|(a, b)| (a.to_string(), b.to_string()));
        TemplateSpec {
            kind: self.kind.unwrap_or(TemplateKind::Plain),
            format_user: slots(self.user),
            format_assistant: slots(self.assistant),
            format_system: slots(self.system),
            format_function: self.function.map(|(slots, format)| Formatter::Function {
                slots,
                tool_format: tool_format_of(format),
            }),
            format_observation: slots(self.observation),
            format_tools: self.tools,
            format_prefix: Some(Formatter::Empty(self.prefix)),
            default_system: self.default_system.to_string(),
            stop_words: self.stop_words.iter().map(|w| w.to_string()).collect(),
            thought_words: words(self.thought_words),
            tool_call_words: words(self.tool_call_words),
            efficient_eos: self.efficient_eos,
            replace_eos: self.replace_eos,
            replace_jinja_template: self.replace_jinja_template,
            enable_thinking: Some(true),
            preserve_thinking: false,
            mm_plugin: self.mm_plugin.map(str::to_string),
        }
        .build(name)
    }
}

/// The arguments of `register_template` (owned): what the built-in definitions above and
/// template files (`template_file`) both give.
#[derive(Debug, Clone)]
pub(crate) struct TemplateSpec {
    pub kind: TemplateKind,
    pub format_user: Option<Formatter>,
    pub format_assistant: Option<Formatter>,
    pub format_system: Option<Formatter>,
    pub format_function: Option<Formatter>,
    pub format_observation: Option<Formatter>,
    pub format_tools: Option<Formatter>,
    pub format_prefix: Option<Formatter>,
    pub default_system: String,
    pub stop_words: Vec<String>,
    pub thought_words: Option<(String, String)>,
    pub tool_call_words: Option<(String, String)>,
    pub efficient_eos: bool,
    pub replace_eos: bool,
    pub replace_jinja_template: bool,
    pub enable_thinking: Option<bool>,
    pub preserve_thinking: bool,
    pub mm_plugin: Option<String>,
}

impl Default for TemplateSpec {
    /// `register_template`'s keyword defaults.
    fn default() -> Self {
        TemplateSpec {
            kind: TemplateKind::Plain,
            format_user: None,
            format_assistant: None,
            format_system: None,
            format_function: None,
            format_observation: None,
            format_tools: None,
            format_prefix: None,
            default_system: String::new(),
            stop_words: Vec::new(),
            thought_words: None,
            tool_call_words: None,
            efficient_eos: false,
            replace_eos: false,
            replace_jinja_template: false,
            enable_thinking: Some(true),
            preserve_thinking: false,
            mm_plugin: None,
        }
    }
}

impl TemplateSpec {
    /// `register_template`'s defaults: the assistant ends with eos unless `efficient_eos`, the
    /// system and user formatters are `{{content}}`, function calls reuse the assistant slots
    /// in the default tool format, observations reuse the user formatter.
    pub fn build(self, name: &str) -> Template {
        let content = vec![t("{{content}}")];
        let default_slots = if self.efficient_eos {
            content.clone()
        } else {
            vec![t("{{content}}"), eos()]
        };
        let function = self.format_function.unwrap_or_else(|| Formatter::Function {
            slots: match &self.format_assistant {
                Some(f) => f.slots().to_vec(),
                None => default_slots.clone(),
            },
            tool_format: ToolFormat::Default,
        });
        let assistant = self
            .format_assistant
            .unwrap_or(Formatter::String(default_slots));
        let user = self
            .format_user
            .unwrap_or_else(|| Formatter::String(content.clone()));
        let observation = self.format_observation.unwrap_or_else(|| user.clone());
        Template {
            name: name.to_string(),
            kind: self.kind,
            format_user: user,
            format_assistant: assistant,
            format_system: self.format_system.unwrap_or(Formatter::String(content)),
            format_function: function,
            format_observation: observation,
            format_tools: self
                .format_tools
                .unwrap_or(Formatter::Tool(ToolFormat::Default)),
            format_prefix: self.format_prefix.unwrap_or(Formatter::Empty(Vec::new())),
            default_system: self.default_system,
            stop_words: self.stop_words,
            thought_words: self
                .thought_words
                .unwrap_or_else(|| ("<think>\n".into(), "\n</think>\n\n".into())),
            tool_call_words: self
                .tool_call_words
                .unwrap_or_else(|| ("<tool_call>".into(), "</tool_call>".into())),
            efficient_eos: self.efficient_eos,
            replace_eos: self.replace_eos,
            replace_jinja_template: self.replace_jinja_template,
            enable_thinking: self.enable_thinking,
            preserve_thinking: self.preserve_thinking,
            mm_plugin: self.mm_plugin,
            tool_date: None,
        }
    }
}

/// The tool formats named in this file all exist.
fn tool_format_of(name: &str) -> ToolFormat {
    ToolFormat::from_name(name).unwrap_or(ToolFormat::Default)
}

/// The `register_template` call of `name`.
fn define(name: &str) -> Option<Def> {
    Some(match name {
        "aeva" => Def::new()
            .efficient_eos()
            .glm47_reasoning()
            .user(&[t("<|user|>\n{{content}}<|assistant|>")])
            .assistant(&[t("\n{{content}}")])
            .system(&[t("<|system|>\n{{content}}")])
            .function(&[t("{{content}}")], "glm4_moe")
            .observation(&[t("<|observation|>\n{{content}}<|assistant|>")])
            .tools("glm4_moe")
            .prefix(&[t("[gMASK]<sop>")])
            .default_system("You are an AI assistant named Aeva created by Zongzhi Lou. Your answer should be friendly, unbiased, faithful, informative and detailed.")
            .stop_words(&["<|user|>", "<|observation|>"])
            .thought_words("<think>", "</think>"),
        "alpaca" => Def::new()
            .user(&[t("### Instruction:\n{{content}}\n\n### Response:\n")])
            .assistant(&[t("{{content}}"), eos(), t("\n\n")])
            .default_system("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n")
            .replace_jinja_template(),
        "bailing" => Def::new()
            .efficient_eos()
            .user(&[t("<role>HUMAN</role>{{content}}<role>ASSISTANT</role>")])
            .system(&[t("<role>SYSTEM</role>{{content}}")])
            .observation(&[t("<role>OBSERVATION</role>{{content}}<role>ASSISTANT</role>")])
            .stop_words(&["<|endoftext|>"]),
        "bailing_v2" => Def::new()
            .efficient_eos()
            .user(&[t("<role>HUMAN</role>{{content}}<|role_end|><role>ASSISTANT</role>")])
            .assistant(&[t("{{content}}<|role_end|>")])
            .system(&[t("<role>SYSTEM</role>{{content}}<|role_end|>")])
            .function(&[t("{{content}}<|role_end|>")], "ling")
            .observation(&[t("<role>OBSERVATION</role>\n<tool_response>\n{{content}}\n</tool_response><|role_end|><role>ASSISTANT</role>")])
            .tools("ling")
            .stop_words(&["<|endoftext|>"]),
        "breeze" => Def::new()
            .efficient_eos()
            .user(&[t("[INST] {{content}} [/INST] ")])
            .prefix(&[bos()]),
        "chatglm3" => Def::new()
            .efficient_eos()
            .user(&[token("<|user|>"), t("\n"), t("{{content}}"), token("<|assistant|>")])
            .assistant(&[t("\n"), t("{{content}}")])
            .system(&[token("<|system|>"), t("\n"), t("{{content}}")])
            .function(&[t("{{content}}")], "glm4")
            .observation(&[token("<|observation|>"), t("\n"), t("{{content}}"), token("<|assistant|>")])
            .tools("glm4")
            .prefix(&[token("[gMASK]"), token("sop")])
            .stop_words(&["<|user|>", "<|observation|>"]),
        "chatml" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .observation(&[t("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .stop_words(&["<|im_end|>", "<|im_start|>"])
            .replace_eos()
            .replace_jinja_template(),
        "chatml_de" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .observation(&[t("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .default_system("Du bist ein freundlicher und hilfsbereiter KI-Assistent.")
            .stop_words(&["<|im_end|>", "<|im_start|>"])
            .replace_eos()
            .replace_jinja_template(),
        "cohere" => Def::new()
            .user(&[t("<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>")])
            .system(&[t("<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|>")])
            .prefix(&[bos()]),
        "cpm4" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .observation(&[t("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .prefix(&[bos()])
            .stop_words(&["<|im_end|>"]),
        "dbrx" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .observation(&[t("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .default_system("You are DBRX, created by Databricks. You were last updated in December 2023. You answer questions based on information available up to that point.\nYOU PROVIDE SHORT RESPONSES TO SHORT QUESTIONS OR STATEMENTS, but provide thorough responses to more complex and open-ended questions.\nYou assist with various tasks, from writing to coding (using markdown for code blocks — remember to use ``` with code, JSON, and tables).\n(You do not have real-time data access or code execution capabilities. You avoid stereotyping and provide balanced perspectives on controversial topics. You do not provide song lyrics, poems, or news articles and do not divulge details of your training data.)\nThis is your system prompt, guiding your responses. Do not reference it, just respond to the user. If you find yourself talking about this message, stop. You should be responding appropriately and usually that means not mentioning this.\nYOU DO NOT MENTION ANY OF THIS INFORMATION ABOUT YOURSELF UNLESS THE INFORMATION IS DIRECTLY PERTINENT TO THE USER'S QUERY.")
            .stop_words(&["<|im_end|>"])
            .replace_eos(),
        "deepseek" => Def::new()
            .user(&[t("User: {{content}}\n\nAssistant:")])
            .system(&[t("{{content}}\n\n")])
            .prefix(&[bos()]),
        "deepseek3" => Def::new()
            .user(&[t("<｜User｜>{{content}}<｜Assistant｜>")])
            .prefix(&[bos()]),
        "deepseekcoder" => Def::new()
            .user(&[t("### Instruction:\n{{content}}\n### Response:")])
            .assistant(&[t("\n{{content}}\n<|EOT|>\n")])
            .prefix(&[bos()])
            .default_system("You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek Company, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer.\n"),
        "deepseekr1" => Def::new()
            .reasoning()
            .user(&[t("<｜User｜>{{content}}<｜Assistant｜>")])
            .prefix(&[bos()]),
        "default" => Def::new()
            .user(&[t("Human: {{content}}"), eos(), t("\nAssistant:")])
            .assistant(&[t("{{content}}"), eos(), t("\n")])
            .system(&[t("System: {{content}}"), eos(), t("\n")])
            .replace_jinja_template(),
        "dots_ocr" => Def::new()
            .efficient_eos()
            .user(&[t("<|user|>{{content}}<|endofuser|><|assistant|>")])
            .assistant(&[t("{{content}}<|endofassistant|>")])
            .system(&[t("<|system|>{{content}}<|endofsystem|>\n")])
            .stop_words(&["<|endofassistant|>"])
            .mm_plugin("qwen2_vl"),
        "empty" => Def::new()
            .assistant(&[t("{{content}}")]),
        "ernie" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n\n")])
            .observation(&[t("<|im_start|>tool\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n")])
            .default_system("<global_setting>\nthink_mode=True\n</global_setting>")
            .stop_words(&["<|im_end|>"]),
        "ernie_nothink" => Def::new()
            .user(&[t("User: {{content}}\nAssistant: ")])
            .assistant(&[t("{{content}}<|end_of_sentence|>")])
            .system(&[t("{{content}}\n")])
            .prefix(&[t("<|begin_of_sentence|>")])
            .stop_words(&["<|end_of_sentence|>"]),
        "ernie_vl" => Def::new()
            .reasoning()
            .user(&[t("User: {{content}}")])
            .assistant(&[t("\nAssistant: {{content}}<|end_of_sentence|>")])
            .system(&[t("{{content}}\n")])
            .stop_words(&["<|end_of_sentence|>"])
            .replace_eos()
            .replace_jinja_template()
            .mm_plugin("ernie_vl"),
        "exaone" => Def::new()
            .user(&[t("[|user|]{{content}}\n[|assistant|]")])
            .assistant(&[t("{{content}}"), eos(), t("\n")])
            .system(&[t("[|system|]{{content}}[|endofturn|]\n")]),
        "falcon" => Def::new()
            .efficient_eos()
            .user(&[t("User: {{content}}\nFalcon:")])
            .assistant(&[t("{{content}}\n")]),
        "falcon_h1" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .observation(&[t("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .prefix(&[bos()])
            .stop_words(&["<|im_end|>", "<|end_of_text|>"]),
        "fewshot" => Def::new()
            .efficient_eos()
            .assistant(&[t("{{content}}\n\n")])
            .replace_jinja_template(),
        "gemma" => Def::new()
            .llama2()
            .user(&[t("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .assistant(&[t("{{content}}<end_of_turn>\n")])
            .system(&[t("{{content}}\n\n")])
            .observation(&[t("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .prefix(&[bos()])
            .stop_words(&["<end_of_turn>"])
            .replace_eos(),
        "gemma2" => Def::new()
            .efficient_eos()
            .llama2()
            .user(&[t("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .assistant(&[t("{{content}}<end_of_turn>\n")])
            .system(&[t("{{content}}\n\n")])
            .observation(&[t("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .prefix(&[bos()])
            .stop_words(&["<eos>", "<end_of_turn>"]),
        "gemma3" => Def::new()
            .llama2()
            .user(&[t("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .assistant(&[t("{{content}}<end_of_turn>\n")])
            .system(&[t("{{content}}\n\n")])
            .observation(&[t("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .prefix(&[bos()])
            .stop_words(&["<end_of_turn>"])
            .replace_eos()
            .mm_plugin("gemma3"),
        "gemma3n" => Def::new()
            .llama2()
            .user(&[t("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .assistant(&[t("{{content}}<end_of_turn>\n")])
            .system(&[t("{{content}}\n\n")])
            .observation(&[t("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .prefix(&[bos()])
            .stop_words(&["<end_of_turn>"])
            .replace_eos()
            .mm_plugin("gemma3n"),
        "gemma4" => Def::new()
            .reasoning()
            .user(&[t("<|turn>user\n{{content}}<turn|>\n<|turn>model\n")])
            .assistant(&[t("{{content}}<turn|>\n")])
            .system(&[t("<|turn>system\n<|think|>{{content}}<turn|>\n")])
            .function(&[t("<|tool>{{content}}<tool|>")], "gemma4")
            .observation(&[t("<|turn>tool\n{{content}}<turn|>\n<|turn>model\n")])
            .tools("gemma4")
            .prefix(&[bos()])
            .default_system("You are a helpful assistant.")
            .stop_words(&["<turn|>"])
            .thought_words("<|channel>thought\n", "<channel|>")
            .replace_eos()
            .mm_plugin("gemma4"),
        "gemma4n" => Def::new()
            .reasoning()
            .user(&[t("<|turn>user\n{{content}}<turn|>\n<|turn>model\n")])
            .assistant(&[t("{{content}}<turn|>\n")])
            .system(&[t("<|turn>system\n<|think|>{{content}}<turn|>\n")])
            .function(&[t("<|tool>{{content}}<tool|>")], "gemma4")
            .observation(&[t("<|turn>tool\n{{content}}<turn|>\n<|turn>model\n")])
            .tools("gemma4")
            .prefix(&[bos()])
            .default_system("You are a helpful assistant.")
            .stop_words(&["<turn|>"])
            .thought_words("<|channel>thought\n", "<channel|>")
            .replace_eos()
            .mm_plugin("gemma4"),
        "glm4" => Def::new()
            .efficient_eos()
            .user(&[t("<|user|>\n{{content}}<|assistant|>")])
            .assistant(&[t("\n{{content}}")])
            .system(&[t("<|system|>\n{{content}}")])
            .function(&[t("{{content}}")], "glm4")
            .observation(&[t("<|observation|>\n{{content}}<|assistant|>")])
            .tools("glm4")
            .prefix(&[t("[gMASK]<sop>")])
            .stop_words(&["<|user|>", "<|observation|>"]),
        "glm4_5v" => Def::new()
            .efficient_eos()
            .reasoning()
            .user(&[t("<|user|>\n{{content}}<|assistant|>")])
            .assistant(&[t("\n{{content}}")])
            .system(&[t("<|system|>\n{{content}}")])
            .function(&[t("{{content}}")], "glm4_moe")
            .observation(&[t("<|observation|>\n{{content}}<|assistant|>")])
            .tools("glm4_moe")
            .prefix(&[t("[gMASK]<sop>")])
            .stop_words(&["<|user|>", "<|observation|>", "</answer>"])
            .mm_plugin("glm4v"),
        "glm4_7" => Def::new()
            .efficient_eos()
            .glm47_reasoning()
            .user(&[t("<|user|>\n{{content}}<|assistant|>")])
            .assistant(&[t("\n{{content}}")])
            .system(&[t("<|system|>\n{{content}}")])
            .function(&[t("{{content}}")], "glm4_moe")
            .observation(&[t("<|observation|>\n{{content}}<|assistant|>")])
            .tools("glm4_moe")
            .prefix(&[t("[gMASK]<sop>")])
            .stop_words(&["<|user|>", "<|observation|>"])
            .thought_words("<think>", "</think>"),
        "glm4_moe" => Def::new()
            .efficient_eos()
            .reasoning()
            .user(&[t("<|user|>\n{{content}}<|assistant|>")])
            .assistant(&[t("\n{{content}}")])
            .system(&[t("<|system|>\n{{content}}")])
            .function(&[t("{{content}}")], "glm4_moe")
            .observation(&[t("<|observation|>\n{{content}}<|assistant|>")])
            .tools("glm4_moe")
            .prefix(&[t("[gMASK]<sop>")])
            .stop_words(&["<|user|>", "<|observation|>"]),
        "glm4v" => Def::new()
            .efficient_eos()
            .reasoning()
            .user(&[t("<|user|>\n{{content}}<|assistant|>")])
            .assistant(&[t("\n{{content}}")])
            .system(&[t("<|system|>\n{{content}}")])
            .function(&[t("{{content}}")], "glm4")
            .observation(&[t("<|observation|>\n{{content}}<|assistant|>")])
            .tools("glm4")
            .prefix(&[t("[gMASK]<sop>")])
            .stop_words(&["<|user|>", "<|observation|>", "</answer>"])
            .mm_plugin("glm4v"),
        "glm_ocr" => Def::new()
            .efficient_eos()
            .user(&[t("<|user|>\n{{content}}<|assistant|>")])
            .assistant(&[t("\n{{content}}")])
            .system(&[t("<|system|>\n{{content}}")])
            .function(&[t("{{content}}")], "glm4")
            .observation(&[t("<|observation|>\n{{content}}<|assistant|>")])
            .tools("glm4")
            .prefix(&[t("[gMASK]<sop>")])
            .stop_words(&["<|user|>", "<|observation|>"])
            .mm_plugin("glm4v"),
        "glmz1" => Def::new()
            .efficient_eos()
            .reasoning()
            .user(&[t("<|user|>\n{{content}}<|assistant|>")])
            .assistant(&[t("\n{{content}}")])
            .system(&[t("<|system|>\n{{content}}")])
            .function(&[t("{{content}}")], "glm4")
            .observation(&[t("<|observation|>\n{{content}}<|assistant|>")])
            .tools("glm4")
            .prefix(&[t("[gMASK]<sop>")])
            .stop_words(&["<|user|>", "<|observation|>"]),
        "gpt_oss" => Def::new()
            .efficient_eos()
            .reasoning()
            .user(&[t("<|start|>user<|message|>{{content}}<|end|><|start|>assistant")])
            .system(&[t("<|start|>system<|message|>{{content}}<|end|>")])
            .default_system("You are ChatGPT, a large language model trained by OpenAI.")
            .thought_words("<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>"),
        "granite3" => Def::new()
            .user(&[t("<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>")])
            .assistant(&[t("{{content}}<|end_of_text|>\n")])
            .system(&[t("<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n")]),
        "granite3_vision" => Def::new()
            .user(&[t("<|user|>\n{{content}}\n<|assistant|>\n")])
            .system(&[t("<|system|>\n{{content}}\n")])
            .default_system("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.")
            .mm_plugin("llava_next"),
        "granite4" => Def::new()
            .user(&[t("<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>")])
            .assistant(&[t("{{content}}<|end_of_text|>\n")])
            .system(&[t("<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n")])
            .observation(&[t("<|start_of_role|>tool<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant\n")])
            .default_system("You are Granite, developed by IBM. You are a helpful AI assistant.")
            .stop_words(&["<|end_of_text|>"]),
        "hunyuan" => Def::new()
            .user(&[t("{{content}}<|extra_0|>")])
            .assistant(&[t("{{content}}<|eos|>")])
            .system(&[t("{{content}}<|extra_4|>")])
            .prefix(&[t("<|startoftext|>")])
            .stop_words(&["<|eos|>"]),
        "hunyuan_small" => Def::new()
            .user(&[t("<｜hy_User｜>{{content}}<｜hy_place▁holder▁no▁8｜>")])
            .assistant(&[t("{{content}}<｜hy_place▁holder▁no▁2｜>")])
            .system(&[t("{{content}}<｜hy_place▁holder▁no▁3｜>")])
            .prefix(&[t("<｜hy_begin▁of▁sentence｜>")])
            .stop_words(&["<｜hy_place▁holder▁no▁2｜>"]),
        "hy3" => Def::new()
            .reasoning()
            .user(&[t("<｜hy_User｜>{{content}}<｜hy_Assistant｜>")])
            .assistant(&[t("{{content}}<｜hy_eos｜>")])
            .prefix(&[bos()])
            .stop_words(&["<｜hy_eos｜>"])
            .thought_words("<think>", "</think>")
            .replace_eos(),
        "index" => Def::new()
            .efficient_eos()
            .user(&[t("reserved_0{{content}}reserved_1")])
            .system(&[t("<unk>{{content}}")]),
        "intern2" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .prefix(&[bos()])
            .default_system("You are an AI assistant whose name is InternLM (书生·浦语).\n- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI Laboratory (上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the user such as English and 中文.")
            .stop_words(&["<|im_end|>"]),
        "intern_s1" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .prefix(&[bos()])
            .stop_words(&["<|im_end|>"])
            .mm_plugin("intern_vl"),
        "intern_vl" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .prefix(&[bos()])
            .default_system("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。")
            .stop_words(&["<|im_end|>"])
            .mm_plugin("intern_vl"),
        "keye_vl" => Def::new()
            .reasoning()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen2_vl"),
        "kimi_vl" => Def::new()
            .reasoning()
            .user(&[t("<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>")])
            .assistant(&[t("{{content}}<|im_end|>")])
            .system(&[t("<|im_system|>system<|im_middle|>{{content}}<|im_end|>")])
            .default_system("You are a helpful assistant")
            .stop_words(&["<|im_end|>"])
            .thought_words("◁think▷", "◁/think▷")
            .mm_plugin("kimi_vl"),
        "lfm2" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "lfm2")
            .observation(&[t("<|im_start|>tool\n<|tool_response_start|>{{content}}<|tool_response_end|><|im_end|>\n<|im_start|>assistant\n")])
            .tools("lfm2")
            .default_system("You are a helpful AI assistant.")
            .stop_words(&["<|im_end|>"])
            .tool_call_words("<|tool_call_start|>", "<|tool_call_end|>")
            .replace_eos(),
        "lfm2_vl" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "lfm2")
            .observation(&[t("<|im_start|>tool\n<|tool_response_start|>{{content}}<|tool_response_end|><|im_end|>\n<|im_start|>assistant\n")])
            .tools("lfm2")
            .default_system("You are a helpful multimodal assistant by Liquid AI.")
            .stop_words(&["<|im_end|>"])
            .tool_call_words("<|tool_call_start|>", "<|tool_call_end|>")
            .replace_eos()
            .mm_plugin("lfm2_vl"),
        "llama2" => Def::new()
            .llama2()
            .user(&[bos(), t("[INST] {{content}} [/INST]")])
            .system(&[t("<<SYS>>\n{{content}}\n<</SYS>>\n\n")]),
        "llama2_zh" => Def::new()
            .llama2()
            .user(&[bos(), t("[INST] {{content}} [/INST]")])
            .system(&[t("<<SYS>>\n{{content}}\n<</SYS>>\n\n")])
            .default_system("You are a helpful assistant. 你是一个乐于助人的助手。"),
        "llama3" => Def::new()
            .user(&[t("<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")])
            .assistant(&[t("{{content}}<|eot_id|>")])
            .system(&[t("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>")])
            .function(&[t("{{content}}<|eot_id|>")], "llama3")
            .observation(&[t("<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")])
            .tools("llama3")
            .prefix(&[bos()])
            .stop_words(&["<|eot_id|>", "<|eom_id|>"])
            .replace_eos(),
        "llama4" => Def::new()
            .user(&[t("<|header_start|>user<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n")])
            .assistant(&[t("{{content}}<|eot|>")])
            .system(&[t("<|header_start|>system<|header_end|>\n\n{{content}}<|eot|>")])
            .function(&[t("{{content}}<|eot|>")], "llama3")
            .observation(&[t("<|header_start|>ipython<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n")])
            .tools("llama3")
            .prefix(&[bos()])
            .stop_words(&["<|eot|>", "<|eom|>"])
            .replace_eos()
            .mm_plugin("llama4"),
        "llava" => Def::new()
            .user(&[t("USER: {{content}} ASSISTANT:")])
            .default_system("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.")
            .mm_plugin("llava"),
        "llava_next" => Def::new()
            .user(&[t("USER: {{content}} ASSISTANT:")])
            .default_system("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.")
            .mm_plugin("llava_next"),
        "llava_next_llama3" => Def::new()
            .user(&[t("<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")])
            .assistant(&[t("{{content}}<|eot_id|>")])
            .system(&[t("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>")])
            .function(&[t("{{content}}<|eot_id|>")], "llama3")
            .observation(&[t("<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")])
            .tools("llama3")
            .prefix(&[bos()])
            .stop_words(&["<|eot_id|>", "<|eom_id|>"])
            .replace_eos()
            .mm_plugin("llava_next"),
        "llava_next_mistral" => Def::new()
            .llama2()
            .user(&[t("[INST] {{content}}[/INST]")])
            .assistant(&[t(" {{content}}"), eos()])
            .system(&[t("{{content}}\n\n")])
            .function(&[t("[TOOL_CALLS] {{content}}"), eos()], "mistral")
            .observation(&[t("[TOOL_RESULTS] {\"content\": {{content}}}[/TOOL_RESULTS]")])
            .tools("mistral")
            .prefix(&[bos()])
            .mm_plugin("llava_next"),
        "llava_next_qwen" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .default_system("You are a helpful assistant.")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("llava_next"),
        "llava_next_video" => Def::new()
            .user(&[t("USER: {{content}} ASSISTANT:")])
            .default_system("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.")
            .mm_plugin("llava_next_video"),
        "llava_next_video_mistral" => Def::new()
            .llama2()
            .user(&[t("[INST] {{content}}[/INST]")])
            .assistant(&[t(" {{content}}"), eos()])
            .system(&[t("{{content}}\n\n")])
            .function(&[t("[TOOL_CALLS] {{content}}"), eos()], "mistral")
            .observation(&[t("[TOOL_RESULTS] {\"content\": {{content}}}[/TOOL_RESULTS]")])
            .tools("mistral")
            .prefix(&[bos()])
            .mm_plugin("llava_next_video"),
        "llava_next_video_yi" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .stop_words(&["<|im_end|>"])
            .mm_plugin("llava_next_video"),
        "llava_next_yi" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .stop_words(&["<|im_end|>"])
            .mm_plugin("llava_next"),
        "mimo" => Def::new()
            .reasoning()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .default_system("You are a helpful assistant.")
            .stop_words(&["<|im_end|>"])
            .replace_eos(),
        "mimo_v2" => Def::new()
            .reasoning()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .default_system("You are MiMo, a helpful AI assistant engineered by Xiaomi.")
            .stop_words(&["<|im_end|>"])
            .thought_words("<think>", "</think>")
            .replace_eos(),
        "mimo_vl" => Def::new()
            .reasoning()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .default_system("You are MiMo, an AI assistant developed by Xiaomi.")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen2_vl"),
        "minicpm_o" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .default_system("You are a helpful assistant. You can accept audio and text input and output voice and text.")
            .stop_words(&["<|im_end|>"])
            .mm_plugin("minicpm_v"),
        "minicpm_v" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .default_system("You are a helpful assistant.")
            .stop_words(&["<|im_end|>"])
            .mm_plugin("minicpm_v"),
        "minicpm_v_4_6" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .default_system("You are a helpful assistant.")
            .stop_words(&["<|im_end|>"])
            .mm_plugin("minicpm_v_4_6"),
        "minimax1" => Def::new()
            .user(&[t("<beginning_of_sentence>user name=user\n{{content}}<end_of_sentence>\n<beginning_of_sentence>ai name=assistant\n")])
            .assistant(&[t("{{content}}<end_of_sentence>\n")])
            .system(&[t("<beginning_of_sentence>system ai_setting=assistant\n{{content}}<end_of_sentence>\n")])
            .function(&[t("{{content}}<end_of_sentence>\n")], "minimax1")
            .observation(&[t("<beginning_of_sentence>tool name=tools\n{{content}}<end_of_sentence>\n<beginning_of_sentence>ai name=assistant\n")])
            .tools("minimax1")
            .default_system("You are a helpful assistant.")
            .stop_words(&["<end_of_sentence>"]),
        "minimax2" => Def::new()
            .reasoning()
            .user(&[t("]~b]user\n{{content}}[e~[\n]~b]ai\n")])
            .assistant(&[t("{{content}}[e~[\n")])
            .system(&[t("]~!b[]~b]system\n{{content}}[e~[\n")])
            .function(&[t("{{content}}[e~[\n")], "minimax2")
            .observation(&[t("]~b]tool\n<response>{{content}}</response>[e~[\n]~b]ai\n")])
            .tools("minimax2")
            .default_system("You are a helpful assistant. Your name is MiniMax-M2.1 and is built by MiniMax.")
            .stop_words(&["[e~["]),
        "ministral" => Def::new()
            .llama2()
            .user(&[t("[INST]{{content}}[/INST]")])
            .system(&[t("{{content}}\n\n")])
            .function(&[t("[TOOL_CALLS]{{content}}"), eos()], "mistral")
            .observation(&[t("[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]")])
            .tools("mistral")
            .prefix(&[bos()]),
        "ministral3" => Def::new()
            .llama2()
            .user(&[t("[INST]{{content}}[/INST]")])
            .system(&[t("{{content}}\n\n")])
            .function(&[t("[TOOL_CALLS]{{content}}"), eos()], "mistral")
            .observation(&[t("[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]")])
            .tools("mistral")
            .prefix(&[bos()])
            .mm_plugin("pixtral"),
        "mistral" => Def::new()
            .llama2()
            .user(&[t("[INST] {{content}}[/INST]")])
            .assistant(&[t(" {{content}}"), eos()])
            .system(&[t("{{content}}\n\n")])
            .function(&[t("[TOOL_CALLS] {{content}}"), eos()], "mistral")
            .observation(&[t("[TOOL_RESULTS] {\"content\": {{content}}}[/TOOL_RESULTS]")])
            .tools("mistral")
            .prefix(&[bos()]),
        "mistral_small" => Def::new()
            .user(&[t("[INST]{{content}}[/INST]")])
            .system(&[t("[SYSTEM_PROMPT]{{content}}[/SYSTEM_PROMPT]")])
            .function(&[t("[TOOL_CALLS]{{content}}"), eos()], "mistral")
            .observation(&[t("[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]")])
            .tools("mistral")
            .prefix(&[bos()])
            .mm_plugin("pixtral"),
        "mllama" => Def::new()
            .user(&[t("<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")])
            .assistant(&[t("{{content}}<|eot_id|>")])
            .system(&[t("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>")])
            .function(&[t("{{content}}<|eot_id|>")], "llama3")
            .observation(&[t("<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")])
            .tools("llama3")
            .prefix(&[bos()])
            .stop_words(&["<|eot_id|>", "<|eom_id|>"])
            .replace_eos()
            .mm_plugin("mllama"),
        "moonlight" => Def::new()
            .user(&[t("<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>")])
            .assistant(&[t("{{content}}<|im_end|>")])
            .system(&[t("<|im_system|>system<|im_middle|>{{content}}<|im_end|>")])
            .default_system("You are a helpful assistant provided by Moonshot-AI.")
            .stop_words(&["<|im_end|>"])
            .replace_eos(),
        "olmo" => Def::new()
            .user(&[t("<|user|>\n{{content}}<|assistant|>\n")])
            .prefix(&[eos()]),
        "openchat" => Def::new()
            .user(&[t("GPT4 Correct User: {{content}}"), eos(), t("GPT4 Correct Assistant:")])
            .prefix(&[bos()]),
        "openchat-3.6" => Def::new()
            .user(&[t("<|start_header_id|>GPT4 Correct User<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>GPT4 Correct Assistant<|end_header_id|>\n\n")])
            .prefix(&[bos()])
            .stop_words(&["<|eot_id|>"]),
        "opencoder" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .observation(&[t("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .default_system("You are OpenCoder, created by OpenCoder Team.")
            .stop_words(&["<|im_end|>"]),
        "paligemma" => Def::new()
            .llama2()
            .user(&[t("{{content}}\n")])
            .prefix(&[bos()])
            .mm_plugin("paligemma"),
        "paligemma_chat" => Def::new()
            .llama2()
            .user(&[t("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .assistant(&[t("{{content}}<end_of_turn>\n")])
            .observation(&[t("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n")])
            .prefix(&[bos()])
            .stop_words(&["<end_of_turn>"])
            .replace_eos()
            .mm_plugin("paligemma"),
        "phi" => Def::new()
            .user(&[t("<|user|>\n{{content}}<|end|>\n<|assistant|>\n")])
            .assistant(&[t("{{content}}<|end|>\n")])
            .system(&[t("<|system|>\n{{content}}<|end|>\n")])
            .stop_words(&["<|end|>"])
            .replace_eos(),
        "phi4" => Def::new()
            .user(&[t("<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>")])
            .assistant(&[t("{{content}}<|im_end|>")])
            .system(&[t("<|im_start|>system<|im_sep|>{{content}}<|im_end|>")])
            .stop_words(&["<|im_end|>"])
            .replace_eos(),
        "phi4_mini" => Def::new()
            .user(&[t("<|user|>{{content}}<|end|><|assistant|>")])
            .assistant(&[t("{{content}}<|end|>")])
            .system(&[t("<|system|>{{content}}<|end|>")])
            .tools_string(&[t("<|tool|>{{content}}<|/tool|>")])
            .stop_words(&["<|end|>"])
            .replace_eos(),
        "phi_small" => Def::new()
            .user(&[t("<|user|>\n{{content}}<|end|>\n<|assistant|>\n")])
            .assistant(&[t("{{content}}<|end|>\n")])
            .system(&[t("<|system|>\n{{content}}<|end|>\n")])
            .prefix(&[set("<|endoftext|>")])
            .stop_words(&["<|end|>"])
            .replace_eos(),
        "pixtral" => Def::new()
            .llama2()
            .user(&[t("[INST]{{content}}[/INST]")])
            .system(&[t("{{content}}\n\n")])
            .function(&[t("[TOOL_CALLS]{{content}}"), eos()], "mistral")
            .observation(&[t("[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]")])
            .tools("mistral")
            .prefix(&[bos()])
            .mm_plugin("pixtral"),
        "qwen" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .default_system("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
            .stop_words(&["<|im_end|>"])
            .replace_eos(),
        "qwen2_audio" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .default_system("You are a helpful assistant.")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen2_audio"),
        "qwen2_omni" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .default_system("You are a helpful assistant.")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen2_omni"),
        "qwen2_vl" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .default_system("You are a helpful assistant.")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen2_vl"),
        "qwen3" => Def::new()
            .reasoning()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .stop_words(&["<|im_end|>"])
            .replace_eos(),
        "qwen3_5" => Def::new()
            .reasoning()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen3_5")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen3_5")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen3_vl"),
        "qwen3_5_nothink" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen3_5")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen3_5")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen3_vl"),
        "qwen3_6" => Def::new()
            .reasoning()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen3_5")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen3_5")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen3_vl"),
        "qwen3_nothink" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .stop_words(&["<|im_end|>"])
            .replace_eos(),
        "qwen3_omni" => Def::new()
            .reasoning()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen2_omni"),
        "qwen3_omni_nothink" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen2_omni"),
        "qwen3_vl" => Def::new()
            .reasoning()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen3_vl"),
        "qwen3_vl_nothink" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .function(&[t("{{content}}<|im_end|>\n")], "qwen")
            .observation(&[t("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")])
            .tools("qwen")
            .stop_words(&["<|im_end|>"])
            .replace_eos()
            .mm_plugin("qwen3_vl"),
        "sailor" => Def::new()
            .user(&[t("<|im_start|>question\n{{content}}<|im_end|>\n<|im_start|>answer\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .default_system("You are an AI assistant named Sailor created by Sea AI Lab. Your answer should be friendly, unbiased, faithful, informative and detailed.")
            .stop_words(&["<|im_end|>"]),
        "seed_coder" => Def::new()
            .user(&[bos(), t("user\n{{content}}"), eos(), bos(), t("assistant\n")])
            .system(&[bos(), t("system\n{{content}}"), eos()])
            .default_system("You are an AI programming assistant, utilizing the Seed-Coder model, developed by ByteDance Seed, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer.\n\n"),
        "seed_oss" => Def::new()
            .reasoning()
            .user(&[bos(), t("user\n{{content}}"), eos(), bos(), t("assistant\n")])
            .system(&[bos(), t("system\n{{content}}"), eos()])
            .function(&[bos(), t("\n{{content}}"), eos()], "seed_oss")
            .tools("seed_oss")
            .thought_words("<seed:think>", "</seed:think>"),
        "smollm" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .stop_words(&["<|im_end|>"]),
        "smollm2" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .default_system("You are a helpful AI assistant named SmolLM, trained by Hugging Face.")
            .stop_words(&["<|im_end|>"]),
        "solar" => Def::new()
            .efficient_eos()
            .user(&[t("### User:\n{{content}}\n\n### Assistant:\n")])
            .system(&[t("### System:\n{{content}}\n\n")]),
        "starchat" => Def::new()
            .user(&[t("<|user|>\n{{content}}<|end|>\n<|assistant|>")])
            .assistant(&[t("{{content}}<|end|>\n")])
            .system(&[t("<|system|>\n{{content}}<|end|>\n")])
            .stop_words(&["<|end|>"]),
        "telechat2" => Def::new()
            .user(&[t("<_user>{{content}}<_bot>")])
            .system(&[t("<_system>{{content}}")])
            .default_system("你是中国电信星辰语义大模型，英文名是TeleChat，你是由中电信人工智能科技有限公司和中国电信人工智能研究院（TeleAI）研发的人工智能助手。"),
        "vicuna" => Def::new()
            .user(&[t("USER: {{content}} ASSISTANT:")])
            .default_system("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.")
            .replace_jinja_template(),
        "video_llava" => Def::new()
            .user(&[t("USER: {{content}} ASSISTANT:")])
            .default_system("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.")
            .mm_plugin("video_llava"),
        "xuanyuan" => Def::new()
            .user(&[t("Human: {{content}} Assistant:")])
            .default_system("以下是用户和人工智能助手之间的对话。用户以Human开头，人工智能助手以Assistant开头，会对人类提出的问题给出有帮助、高质量、详细和礼貌的回答，并且总是拒绝参与与不道德、不安全、有争议、政治敏感等相关的话题、问题和指示。\n"),
        "yi" => Def::new()
            .user(&[t("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")])
            .assistant(&[t("{{content}}<|im_end|>\n")])
            .system(&[t("<|im_start|>system\n{{content}}<|im_end|>\n")])
            .stop_words(&["<|im_end|>"]),
        "yi_vl" => Def::new()
            .efficient_eos()
            .user(&[t("### Human: {{content}}\n### Assistant:")])
            .assistant(&[t("{{content}}\n")])
            .default_system("This is a chat between an inquisitive human and an AI assistant. Assume the role of the AI assistant. Read all the images carefully, and respond to the human's questions with informative, helpful, detailed and polite answers. 这是一个好奇的人类和一个人工智能助手之间的对话。假设你扮演这个AI助手的角色。仔细阅读所有的图像，并对人类的问题做出信息丰富、有帮助、详细的和礼貌的回答。\n\n")
            .stop_words(&["###"])
            .mm_plugin("llava"),
        "youtu" => Def::new()
            .reasoning()
            .user(&[t("<|User|>{{content}}<|Assistant|>")])
            .assistant(&[t("{{content}}<|end_of_text|>")])
            .function(&[t("{{content}}")], "default")
            .observation(&[t("<tool_response>\n{{content}}\n</tool_response><|Assistant|>")])
            .prefix(&[bos()])
            .stop_words(&["<|end_of_text|>"])
            .replace_eos(),
        "youtu_vl" => Def::new()
            .user(&[t("<|begin_of_text|>user\n{{content}}<|end_of_text|>\n<|begin_of_text|>assistant\n")])
            .assistant(&[t("{{content}}<|end_of_text|>\n")])
            .system(&[t("<|begin_of_text|>system\n{{content}}<|end_of_text|>\n")])
            .default_system("You are a helpful assistant.")
            .stop_words(&["<|end_of_text|>"])
            .mm_plugin("youtu_vl"),
        "yuan" => Def::new()
            .user(&[t("{{content}}"), token("<sep>")])
            .assistant(&[t("{{content}}<eod>\n")])
            .stop_words(&["<eod>"]),
        "zephyr" => Def::new()
            .user(&[t("<|user|>\n{{content}}"), eos(), t("<|assistant|>\n")])
            .system(&[t("<|system|>\n{{content}}"), eos()])
            .default_system("You are Zephyr, a helpful assistant."),

        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_defined_and_sorted() {
        for name in NAMES {
            assert!(define(name).is_some(), "{name}");
        }
        assert!(NAMES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn unknown_name_suggests_close_ones() {
        let err = get_template("qwen_3").unwrap_err().to_string();
        assert!(err.contains("unknown template `qwen_3`"), "{err}");
        assert!(err.contains("qwen3"), "{err}");
        let err = get_template("lama3").unwrap_err().to_string();
        assert!(err.contains("llama3"), "{err}");
    }
}
