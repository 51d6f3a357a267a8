//! `lmf api` serving a reward model (`stage: rm`: a LoRA adapter with its value head) at
//! `POST /v1/score/evaluation`, LLaMA-Factory's reward-server route: each text's score equals
//! PPO's in-process reward model (`reward_model_type: lora`, the adapter unmerged on the base)
//! on that text's tokens; the chat route answers 405; bad bodies 400; and PPO with
//! `reward_model_type: api` trains against the server. (PPO's api and lora rewards differ in
//! general, in LLaMA-Factory too: the api re-tokenizes the decoded text, which need not give
//! back the sampled tokens.)

use lmf_models::{CausalLM, Tokenizer};
use lmf_runtime::{DType, Device};
use lmf_trainers::args::train::parse_train_args;
use lmf_trainers::train::ppo::reward::RewardModel;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "api/server.rs"]
mod server;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const LMF: &str = env!("CARGO_BIN_EXE_lmf");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lmf-api-score-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn lmf(args: &[String]) {
    let out = Command::new(LMF).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "lmf {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One HTTP/1.1 request without keep-alive: (status, JSON body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn log_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("trainer_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn reward_model_server_scores_and_feeds_ppo() {
    let model = format!("{ROOT}/tests/fixtures/hf/ppo/model");
    let rm = scratch("rm");
    lmf(&[
        "train".into(),
        format!("model_name_or_path={model}"),
        "stage=rm".into(),
        "do_train=true".into(),
        "finetuning_type=lora".into(),
        "lora_target=all".into(),
        "dataset=dpo_demo".into(),
        format!("dataset_dir={ROOT}/data"),
        "template=llama3".into(),
        "cutoff_len=64".into(),
        "max_samples=8".into(),
        format!("output_dir={}", rm.display()),
        "per_device_train_batch_size=4".into(),
        "max_steps=2".into(),
        "learning_rate=1.0e-2".into(),
        "report_to=none".into(),
    ]);
    let yaml = scratch("serve.yaml");
    std::fs::write(
        &yaml,
        format!(
            "model_name_or_path: {model}\nadapter_name_or_path: {}\nfinetuning_type: lora\n\
             stage: rm\ntemplate: llama3\n",
            rm.display()
        ),
    )
    .unwrap();
    let mut server = server::start(&yaml, &[]);
    let addr = server.addr.clone();
    // the server outlives a closed stdout
    drop(server.stdout.take());
    let texts = json!([
        "Hello there, how are you?",
        "A second, longer text to score here."
    ]);
    let (st, body) = http(
        &addr,
        "POST",
        "/v1/score/evaluation",
        &json!({"model": "model", "messages": texts}).to_string(),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["object"], "score.evaluation");
    let scores: Vec<f64> = body["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 2);
    assert!(
        scores.iter().all(|s| s.is_finite()) && scores[0] != scores[1],
        "{scores:?}"
    );
    // a text scores the same alone and beside another (one padded-free packed forward)
    let (_, alone) = http(
        &addr,
        "POST",
        "/v1/score/evaluation",
        &json!({"model": "model", "messages": [texts[1]]}).to_string(),
    );
    let a = alone["scores"][0].as_f64().unwrap();
    assert!(
        (a - scores[1]).abs() <= 1e-5 * (1.0 + a.abs()),
        "{a} vs {}",
        scores[1]
    );
    // a reward model does not chat; an empty list is refused
    let chat = json!({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        http(&addr, "POST", "/v1/chat/completions", &chat.to_string()).0,
        405
    );
    let empty = json!({"model": "model", "messages": []});
    assert_eq!(
        http(&addr, "POST", "/v1/score/evaluation", &empty.to_string()).0,
        400
    );

    // the same texts through PPO's in-process LoRA reward model
    let ppo_args = |out: &Path, kind: &str, reward: &str| -> Vec<String> {
        vec![
            format!("model_name_or_path={model}"),
            "stage=ppo".into(),
            "do_train=true".into(),
            "finetuning_type=lora".into(),
            "lora_target=all".into(),
            "dataset=alpaca_demo".into(),
            format!("dataset_dir={ROOT}/data"),
            "template=llama3".into(),
            "cutoff_len=64".into(),
            "max_samples=8".into(),
            format!("output_dir={}", out.display()),
            "per_device_train_batch_size=4".into(),
            "max_steps=2".into(),
            "logging_steps=1".into(),
            "learning_rate=1.0e-3".into(),
            "ppo_epochs=1".into(),
            "do_sample=false".into(),
            "max_new_tokens=6".into(),
            "report_to=none".into(),
            format!("reward_model_type={kind}"),
            format!("reward_model={reward}"),
        ]
    };
    let out = scratch("ppo");
    let args = parse_train_args(&ppo_args(&out, "lora", rm.to_str().unwrap())).unwrap();
    let dir = Path::new(&model);
    let policy = CausalLM::load(dir, DType::F32, Device::Cpu).unwrap();
    let tok = Tokenizer::from_dir(dir).unwrap();
    let reference = RewardModel::for_run(&args, &policy, &tok).unwrap();
    for (i, t) in texts.as_array().unwrap().iter().enumerate() {
        let ids = tok.encode(t.as_str().unwrap(), false).unwrap();
        let want = reference.scores(&tok, &[ids], &[vec![]]).unwrap()[0];
        assert!(
            (want - scores[i]).abs() <= 1e-4 * (1.0 + want.abs()),
            "text {i}: server {} vs in-process {want}",
            scores[i]
        );
    }

    // PPO with the server as its api reward
    let url = format!("http://{addr}/v1/score/evaluation");
    lmf(&[vec!["train".to_string()], ppo_args(&out, "api", &url)].concat());
    let log = log_lines(&out);
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|r| r["reward"].as_f64().is_some_and(f64::is_finite)),
        "{log:?}"
    );
    let (status, stderr) = server::stop(server);
    assert!(status.success(), "{stderr}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&rm);
    let _ = std::fs::remove_file(&yaml);
}
