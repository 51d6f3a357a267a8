//! `ChatModel` against LLaMA-Factory's own `ChatModel` (transformers engine) on the tiny
//! llama3 fixture: the same prompt ids, the same greedy tokens, the same reply text, over
//! two turns with history. Fixture: `tests/fixtures/hf/make_models.py`
//! (`expected/chat_llama3.json`).

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

#[test]
fn greedy_chat_matches_llamafactory() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/expected/chat_llama3.json")).unwrap(),
    )
    .unwrap();
    let argv: Vec<String> = [
        "--model_name_or_path",
        &format!("{FIXTURES}/models/llama3"),
        "--template",
        "llama3",
        "--do_sample",
        "false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let chat = ChatModel::from_args(&parse_infer_args(&argv).unwrap()).unwrap();
    let mut stop = chat.template.stop_token_ids(&chat.tokenizer);
    stop.sort();
    assert_eq!(stop, ids(&fixture["stop_token_ids"]));
    let turns = fixture["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    for (i, turn) in turns.iter().enumerate() {
        let messages: Vec<Message> = turn["messages"]
            .as_array()
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
            .collect();
        assert_eq!(
            chat.encode_prompt(&messages, None, None).unwrap(),
            ids(&turn["prompt_ids"]),
            "turn {i} prompt"
        );
        let mut streamed = String::new();
        let r = chat
            .stream_chat(&messages, None, None, &Default::default(), |t| {
                streamed.push_str(t)
            })
            .unwrap();
        assert_eq!(r.token_ids, ids(&turn["generated_ids"]), "turn {i} tokens");
        assert_eq!(
            r.response_text,
            turn["response_text"].as_str().unwrap(),
            "turn {i} text"
        );
        assert_eq!(streamed, r.response_text, "turn {i} stream");
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(
            r.response_length,
            turn["response_length"].as_u64().unwrap() as usize
        );
    }
}
