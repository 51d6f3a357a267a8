//! `lmf api` driven by the official `openai` Python client (`tests/api/openai_client.py`, run
//! with the venv of `ci/ffi-python-env.sh`): models, a greedy completion equal to `lmf chat`'s
//! reply (the same `ChatModel`, in-process), the same reply streamed, a tool call, `n: 2`,
//! `stop`, the error statuses, a client leaving mid-stream, 16 concurrent requests each equal
//! to its solo reply, and a clean exit on SIGTERM.
//!
//! The served model is the tiny llama3 fixture fine-tuned here by `lmf train` (full, a few
//! seconds) to answer one question with a tool call, so that a greedy reply is a real call.

use lmf_trainers::args::{parse_infer_args, GenerateRequest};
use lmf_trainers::chat::ChatModel;
use lmf_trainers::template::{Message, Role};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf");
const LMF: &str = env!("CARGO_BIN_EXE_lmf");

#[path = "api/server.rs"]
mod server;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lmf-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The tools, as JSON text in the key order a client sends (`name`, `description`,
/// `parameters`: the order LLaMA-Factory's api writes them into the prompt, so the training
/// data uses it too).
const TOOLS: &str = r#"[{"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]"#;

const TOOL_QUESTION: &str = "What is the weather in Paris?";

/// The llama3 fixture (with room for the tool prompt: 1024 positions) fine-tuned on one
/// conversation whose answer is a `get_weather` call.
fn tool_model(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    std::fs::create_dir_all(&base).unwrap();
    for e in std::fs::read_dir(format!("{FIX}/models/llama3")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), base.join(e.file_name())).unwrap();
    }
    let cfg_path = base.join("config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["max_position_embeddings"] = json!(1024);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let call = json!({"name": "get_weather", "arguments": {"city": "Paris"}}).to_string();
    let rows = json!([{
        "conversations": [{"from": "human", "value": TOOL_QUESTION}, {"from": "function_call", "value": call}],
        "tools": TOOLS,
    }]);
    std::fs::write(dir.join("toolcall.json"), rows.to_string()).unwrap();
    let info = json!({"toolcall": {"file_name": "toolcall.json", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "tools": "tools"}}});
    std::fs::write(dir.join("dataset_info.json"), info.to_string()).unwrap();
    let out = dir.join("out");
    let yaml = format!(
        "model_name_or_path: {}\nstage: sft\ndo_train: true\nfinetuning_type: full\n\
         dataset: toolcall\ndataset_dir: {}\ntemplate: llama3\ncutoff_len: 1024\n\
         output_dir: {}\nper_device_train_batch_size: 1\nlearning_rate: 0.01\n\
         num_train_epochs: 60\nlr_scheduler_type: constant\nlogging_steps: 20\n\
         save_strategy: \"no\"\nreport_to: none\n",
        base.display(),
        dir.display(),
        out.display()
    );
    std::fs::write(dir.join("train.yaml"), yaml).unwrap();
    let st = Command::new(LMF)
        .args(["train", dir.join("train.yaml").to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "lmf train of the tool model failed");
    out
}

/// The python of the test venv, or `None` to skip (unless the CI requires it).
fn python() -> Option<String> {
    match std::env::var("LMF_FFI_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var("LMF_REQUIRE_FFI_PYTHON").as_deref() != Ok("1"),
                "LMF_REQUIRE_FFI_PYTHON=1 but LMF_FFI_PYTHON is not set (source ci/ffi-python-env.sh)"
            );
            eprintln!("skipped: LMF_FFI_PYTHON is not set (source ci/ffi-python-env.sh)");
            None
        }
    }
}

/// `lmf chat`'s greedy reply to one user message (the same `ChatModel`).
fn chat_reply(cm: &ChatModel, text: &str, max_tokens: Option<i64>) -> (String, usize, usize) {
    let req = GenerateRequest {
        temperature: Some(0.0),
        max_new_tokens: max_tokens,
        ..Default::default()
    };
    let r = cm
        .stream_chat(&[Message::new(Role::User, text)], None, None, &req, |_| {})
        .unwrap();
    (r.response_text, r.prompt_length, r.response_length)
}

#[test]
fn openai_client_against_lmf_api() {
    let Some(python) = python() else { return };
    let dir = scratch("openai");
    let model = tool_model(&dir);
    let yaml = dir.join("infer.yaml");
    std::fs::write(
        &yaml,
        format!(
            "model_name_or_path: {}\ntemplate: llama3\nmax_new_tokens: 40\n",
            model.display()
        ),
    )
    .unwrap();
    let server = server::start(
        &yaml,
        &[
            ("API_KEY", "sk-lmf-test"),
            ("API_MODEL_NAME", "lmf-test"),
            ("MAX_CONCURRENT", "16"),
        ],
    );
    let addr = format!("http://{}", server.addr);
    let plain = "What is 2 plus 2?";
    let batch: Vec<(String, i64)> = (0..16)
        .map(|i| {
            (
                format!("Question {i}: {}", "tell me more ".repeat(i % 5 + 1)),
                4 + (i as i64 * 5) % 37,
            )
        })
        .collect();
    // written by hand around TOOLS: serde_json would sort the tools' keys
    let prompts = format!(
        r#"{{"plain": {}, "tool": {}, "batch": {}, "tools": {TOOLS}}}"#,
        json!(plain),
        json!(TOOL_QUESTION),
        json!(batch)
    );
    let prompts_path = dir.join("prompts.json");
    std::fs::write(&prompts_path, prompts).unwrap();
    let out = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/api/openai_client.py"
        ))
        .arg(format!("{addr}/v1"))
        .args(["sk-lmf-test", "lmf-test", prompts_path.to_str().unwrap()])
        .output()
        .unwrap();
    // stop the server either way, then look at the client's report
    let (status, stderr) = server::stop(server);
    assert!(
        out.status.success(),
        "client failed:\n{}\nserver stderr:\n{stderr}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        status.success(),
        "lmf api did not exit cleanly on SIGTERM: {status:?}\n{stderr}"
    );
    assert!(stderr.contains("shutting down"), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    let cm =
        ChatModel::from_args(&parse_infer_args(&[yaml.to_str().unwrap().to_string()]).unwrap())
            .unwrap();
    assert_eq!(r["models"], json!(["lmf-test"]));

    // greedy = lmf chat's reply; streamed = the same text
    let (want, prompt_len, n_tokens) = chat_reply(&cm, plain, None);
    assert_eq!(r["plain"]["content"], json!(want));
    assert_eq!(
        r["plain"]["usage"],
        json!([prompt_len, n_tokens, prompt_len + n_tokens])
    );
    let finish = if n_tokens == 40 { "length" } else { "stop" };
    assert_eq!(r["plain"]["finish_reason"], json!(finish));
    assert_eq!(r["stream"]["text"], json!(want));
    assert_eq!(r["stream"]["finishes"], json!([finish]));
    assert_eq!(r["stream"]["roles"], json!(["assistant"]));
    assert!(
        r["stream"]["chunks"].as_u64().unwrap() >= 1,
        "{}",
        r["stream"]
    );

    // the tool call
    let tool = &r["tool"];
    assert_eq!(tool["finish_reason"], json!("tool_calls"), "{tool}");
    assert_eq!(tool["calls"].as_array().unwrap().len(), 1, "{tool}");
    assert_eq!(tool["calls"][0]["name"], json!("get_weather"));
    assert_eq!(tool["calls"][0]["type"], json!("function"));
    let args: Value =
        serde_json::from_str(tool["calls"][0]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    assert!(tool["calls"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("call_"));

    // n = 2: two sampled replies, indices 0 and 1, reproducible with the seed
    let n2 = r["n2"].as_array().unwrap();
    assert_eq!(n2.len(), 2);
    assert_eq!((n2[0][0].as_u64(), n2[1][0].as_u64()), (Some(0), Some(1)));
    assert_eq!(r["n2"], r["n2_again"], "same seed, same replies");
    assert!(r["n2_tokens"].as_u64().unwrap() >= 2);

    // stop: the greedy reply cut before the stop string, streamed or not
    let stop = r["stop"]["stop"].as_str().unwrap();
    assert!(!stop.is_empty());
    let cut = &want[..want.find(stop).unwrap()];
    assert_eq!(r["stop"]["content"], json!(cut));
    assert_eq!(r["stop"]["finish_reason"], json!("stop"));
    assert_eq!(r["stop_stream"], json!(cut));

    // errors: status and OpenAI's error shape
    assert_eq!(r["wrong_key"][0], json!(401), "{}", r["wrong_key"]);
    assert_eq!(r["wrong_key"][1], json!("AuthenticationError"));
    assert_eq!(r["wrong_key_chat"][0], json!(401));
    assert_eq!(r["unknown_model"][0], json!(404));
    assert_eq!(r["bad_role"][0], json!(400));
    assert_eq!(r["even_turns"][0], json!(400));
    assert_eq!(r["too_long"][0], json!(400));
    assert_eq!(r["stream_n2"][0], json!(400));
    let shape = json!(["code", "message", "param", "type"]);
    assert_eq!(r["raw_errors"]["not_json"], json!([400, shape]));
    assert_eq!(r["raw_errors"]["messages_not_list"], json!([422, shape]));
    assert_eq!(r["raw_errors"]["missing_messages"], json!([422, shape]));

    // a client leaving mid-stream does not stop the server
    assert_eq!(r["after_disconnect"]["content"], json!(want));

    // 16 concurrent requests: each exactly its solo reply, which is lmf chat's
    assert_eq!(r["batch_together"], r["batch_solo"]);
    for (i, (text, m)) in batch.iter().enumerate() {
        let (want, _, _) = chat_reply(&cm, text, Some(*m));
        assert_eq!(r["batch_solo"][i]["content"], json!(want), "request {i}");
    }
    let peak: usize = stderr
        .split("at most ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no engine summary in:\n{stderr}"));
    assert!(peak >= 2, "requests never decoded together (peak {peak})");
    let _ = std::fs::remove_dir_all(&dir);
}
