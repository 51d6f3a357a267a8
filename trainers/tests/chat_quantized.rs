//! `ChatModel` on a quantized model against LLaMA-Factory 0.9.5's own `ChatModel` with
//! bitsandbytes 0.50.2 (fixture `tests/fixtures/hf/quant/chat/`, `make_chat.py`): the tiny
//! llama with its LoRA adapter (kept unmerged, as LF keeps it on a quantized model),
//! `quantization_bit: 8` (LLM.int8 in eval mode: int8 activations, outlier columns apart; the
//! prompt in one forward, then one token per forward, whose outlier columns depend on the rows
//! of that forward) and `quantization_bit: 4` (nf4, bitsandbytes' portable f32 path): the same
//! prompt ids, the same 24 greedy tokens, the same text.

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
fn quantized_greedy_chat_matches_llamafactory() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/quant/chat/expected.json")).unwrap(),
    )
    .unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for (variant, bits) in [("int8", "8"), ("nf4", "4")] {
        let argv: Vec<String> = [
            "--model_name_or_path",
            &format!("{FIXTURES}/train/models/llama"),
            "--adapter_name_or_path",
            &format!("{FIXTURES}/train/adapters/llama_lora"),
            "--template",
            "llama3",
            "--do_sample",
            "false",
            "--max_new_tokens",
            "24",
            "--quantization_bit",
            bits,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let chat = ChatModel::from_args(&parse_infer_args(&argv).unwrap()).unwrap();
        for case in cases.iter().filter(|c| c["variant"] == variant) {
            let messages = vec![Message::new(Role::User, case["prompt"].as_str().unwrap())];
            assert_eq!(
                chat.encode_prompt(&messages, None, None).unwrap(),
                ids(&case["prompt_ids"]),
                "{variant}: prompt"
            );
            let r = chat.chat(&messages, None, None).unwrap();
            assert_eq!(
                r.token_ids,
                ids(&case["generated_ids"]),
                "{variant}: tokens"
            );
            assert_eq!(
                r.response_text,
                case["response_text"].as_str().unwrap(),
                "{variant}"
            );
            assert_eq!(r.finish_reason, FinishReason::Length, "{variant}");
        }
    }
}
