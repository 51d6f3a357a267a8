//! `ChatModel` against LLaMA-Factory's own `ChatModel` (transformers engine): the same prompt ids,
//! the same greedy tokens, the same reply text, over two turns with history, each tiny model with
//! its own template. Fixtures: `tests/fixtures/hf/make_models.py` (`expected/chat_llama3.json`)
//! and `tests/fixtures/hf/make_chat.py` (`expected/chat_<case>.json`: gpt_oss with the `gpt_oss`
//! reasoning template, thinking on and off; qwen3_moe with `qwen3`; gemma3 with `gemma`; phi3
//! with `phi`). Reasoning cases also pin the prompt of conversations whose history answers
//! carry a thought (`prompt_checks`).

use lmf_trainers::args::parse_infer_args;
use lmf_trainers::chat::{ChatModel, FinishReason};
use lmf_trainers::template::{Message, Role};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn messages(v: &Value) -> Vec<Message> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let role = match m["role"].as_str().unwrap() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                r => panic!("role {r}"),
            };
            Message::new(role, m["content"].as_str().unwrap())
        })
        .collect()
}

/// The command-line words of a fixture: its model, template, greedy decoding, and the extra
/// `ChatModel` arguments LLaMA-Factory was given (`chat_args`, e.g. `enable_thinking: false`).
fn chat_argv(fixture: &Value) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "--model_name_or_path".into(),
        format!("{FIXTURES}/{}", fixture["model"].as_str().unwrap()),
        "--template".into(),
        fixture["template"].as_str().unwrap().into(),
        "--do_sample".into(),
        "false".into(),
    ];
    if let Some(args) = fixture.get("chat_args").and_then(Value::as_object) {
        for (key, value) in args {
            argv.push(format!("--{key}"));
            argv.push(match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
    }
    argv
}

/// Replays one LLaMA-Factory chat transcript `expected/chat_<case>.json` on lmf.
fn check_chat_fixture(case: &str) {
    let path = format!("{FIXTURES}/expected/chat_{case}.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let argv = chat_argv(&fixture);
    let chat = ChatModel::from_args(&parse_infer_args(&argv).unwrap()).unwrap();
    assert_eq!(
        chat.template.name(),
        fixture["template"].as_str().unwrap(),
        "{case}"
    );
    if let Some(reasoning) = fixture.get("reasoning_template").and_then(Value::as_bool) {
        assert_eq!(chat.template.is_reasoning(), reasoning, "{case} reasoning");
        let words = fixture["thought_words"].as_array().unwrap();
        let (open, close) = chat.template.thought_words();
        assert_eq!(
            (open, close),
            (words[0].as_str().unwrap(), words[1].as_str().unwrap()),
            "{case} thought words"
        );
        if reasoning {
            assert_eq!(
                chat.template.enable_thinking(),
                fixture["enable_thinking"].as_bool(),
                "{case} enable_thinking"
            );
        }
    }
    let mut stop = chat.template.stop_token_ids(&chat.tokenizer);
    stop.sort();
    assert_eq!(stop, ids(&fixture["stop_token_ids"]), "{case} stop ids");

    let turns = fixture["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{case}");
    for (i, turn) in turns.iter().enumerate() {
        let messages = messages(&turn["messages"]);
        assert_eq!(messages.len(), 2 * i + 1, "{case} turn {i} history");
        assert_eq!(
            chat.encode_prompt(&messages, None, None).unwrap(),
            ids(&turn["prompt_ids"]),
            "{case} turn {i} prompt"
        );
        let mut streamed = String::new();
        let r = chat
            .stream_chat(&messages, None, None, &Default::default(), |t| {
                streamed.push_str(t)
            })
            .unwrap();
        assert_eq!(
            r.token_ids,
            ids(&turn["generated_ids"]),
            "{case} turn {i} tokens"
        );
        assert_eq!(
            r.response_text,
            turn["response_text"].as_str().unwrap(),
            "{case} turn {i} text"
        );
        assert_eq!(streamed, r.response_text, "{case} turn {i} stream");
        let finish = match turn["finish_reason"].as_str().unwrap() {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            f => panic!("finish reason {f}"),
        };
        assert_eq!(r.finish_reason, finish, "{case} turn {i} finish reason");
        assert_eq!(
            r.response_length,
            turn["response_length"].as_u64().unwrap() as usize,
            "{case} turn {i} length"
        );
        assert_eq!(
            r.prompt_length,
            turn["prompt_ids"].as_array().unwrap().len(),
            "{case} turn {i} prompt length"
        );
    }

    // History answers with a thought: the prompt LF generated from (thoughts of history answers
    // dropped, the empty thought at the end of the prompt when thinking is off).
    let checks = fixture
        .get("prompt_checks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if fixture["reasoning_template"].as_bool() == Some(true) {
        assert!(
            !checks.is_empty(),
            "{case}: reasoning fixture without prompt checks"
        );
    }
    for (i, check) in checks.iter().enumerate() {
        assert_eq!(
            chat.encode_prompt(&messages(&check["messages"]), None, None)
                .unwrap(),
            ids(&check["prompt_ids"]),
            "{case} prompt check {i}"
        );
    }
}

#[test]
fn greedy_chat_matches_llamafactory() {
    check_chat_fixture("llama3");
}

#[test]
fn gpt_oss_chat_matches_llamafactory() {
    check_chat_fixture("gpt_oss");
}

#[test]
fn gpt_oss_chat_without_thinking_matches_llamafactory() {
    check_chat_fixture("gpt_oss_nothink");
}

#[test]
fn qwen3_moe_chat_matches_llamafactory() {
    check_chat_fixture("qwen3_moe");
}

#[test]
fn gemma3_chat_matches_llamafactory() {
    check_chat_fixture("gemma3");
}

#[test]
fn phi3_chat_matches_llamafactory() {
    check_chat_fixture("phi3");
}

/// The two gpt_oss fixtures differ exactly where LLaMA-Factory's thinking switch acts: with
/// thinking off the prompt of the same conversation ends with the empty thought
/// `<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final<|message|>`, with
/// thinking on it ends at `<|start|>assistant`; lmf gives each.
#[test]
fn gpt_oss_thinking_switch_appends_the_empty_thought() {
    let read = |case: &str| -> Value {
        let path = format!("{FIXTURES}/expected/chat_{case}.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (think, nothink) = (read("gpt_oss"), read("gpt_oss_nothink"));
    let thought = {
        let chat = ChatModel::from_args(&parse_infer_args(&chat_argv(&think)).unwrap()).unwrap();
        let (open, close) = chat.template.thought_words();
        chat.tokenizer
            .encode(&format!("{open}{close}"), false)
            .unwrap()
    };
    assert!(thought.len() >= 8, "{thought:?}");
    let think_checks = think["prompt_checks"].as_array().unwrap();
    let nothink_checks = nothink["prompt_checks"].as_array().unwrap();
    assert_eq!(think_checks.len(), nothink_checks.len());
    for (a, b) in think_checks.iter().zip(nothink_checks) {
        assert_eq!(a["messages"], b["messages"]);
        let (a, b) = (ids(&a["prompt_ids"]), ids(&b["prompt_ids"]));
        assert_eq!(b, [a.clone(), thought.clone()].concat());
        assert!(!a.ends_with(&thought));
    }
    let chat = ChatModel::from_args(&parse_infer_args(&chat_argv(&nothink)).unwrap()).unwrap();
    let conversation = messages(&think_checks[0]["messages"]);
    assert!(chat
        .encode_prompt(&conversation, None, None)
        .unwrap()
        .ends_with(&thought));
}

/// `infer_dtype: bfloat16` on the CPU keeps the linears and the head in bf16 (LLaMA-Factory's
/// `auto` there is float32, which stays dense), and the model still chats: the reply has the
/// asked number of tokens and decodes to text.
#[test]
fn bfloat16_infer_dtype_keeps_bf16_weights() {
    let model = format!("{FIXTURES}/train/models/llama");
    let chat_with = |dtype: &str| {
        let argv: Vec<String> = [
            "--model_name_or_path",
            &model,
            "--template",
            "llama3",
            "--do_sample",
            "false",
            "--max_new_tokens",
            "12",
            "--infer_dtype",
            dtype,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        ChatModel::from_args(&parse_infer_args(&argv).unwrap()).unwrap()
    };
    let messages = vec![Message::new(Role::User, "Name three colours.")];
    for dtype in ["auto", "float32"] {
        assert!(chat_with(dtype).model.head_bf16.is_none(), "{dtype}");
    }
    let chat = chat_with("bfloat16");
    assert!(chat.model.head_bf16.is_some());
    let o_proj = &chat.model.layers[0].self_attn.o_proj;
    assert!(o_proj.quant.as_ref().is_some_and(|q| q.is_bf16()));
    assert!(!chat.model.is_quantized());
    let r = chat.chat(&messages, None, None).unwrap();
    assert_eq!(r.token_ids.len(), 12);
    assert_eq!(r.finish_reason, FinishReason::Length);
    assert_eq!(
        r.response_text,
        chat.tokenizer.decode(&r.token_ids, true).unwrap()
    );
}
