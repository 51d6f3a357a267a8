//! `echo "What is 2 plus 2?" | lmf chat --model_name_or_path DIR --template llama3
//! --do_sample false` prints what `llamafactory-cli chat` printed for the same model
//! (`tests/fixtures/hf/expected/chat_llama3.cli_stdout.txt`, LLaMA-Factory's log lines
//! removed), and history, `clear` and `exit` behave like LLaMA-Factory's.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf");

fn chat(stdin: &str, extra: &[&str]) -> (String, String, bool) {
    let model = format!("{FIXTURES}/models/llama3");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .args([
            "chat",
            "--model_name_or_path",
            &model,
            "--template",
            "llama3",
            "--do_sample",
            "false",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lmf");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

fn fixture() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/expected/chat_llama3.json")).unwrap(),
    )
    .unwrap()
}

fn reply(turn: usize) -> String {
    fixture()["turns"][turn]["response_text"]
        .as_str()
        .unwrap()
        .to_string()
}

const WELCOME: &str =
    "Welcome to the CLI application, use `clear` to remove the history, use `exit` to exit the application.\n";

#[test]
fn piped_question_prints_llamafactory_output() {
    let (stdout, stderr, ok) = chat("What is 2 plus 2?\n", &[]);
    assert!(ok, "{stderr}");
    let lf = std::fs::read(format!("{FIXTURES}/expected/chat_llama3.cli_stdout.txt")).unwrap();
    let lf = String::from_utf8(lf).unwrap();
    // LLaMA-Factory logs to stdout: drop its `[INFO|...]` / `[WARNING|...]` lines
    let lf: String = lf
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("[INFO|") && !l.starts_with("[WARNING|"))
        .collect();
    assert_eq!(stdout, lf);
}

#[test]
fn history_clear_and_exit() {
    let (stdout, stderr, ok) = chat(
        "What is 2 plus 2?\nAnd 3 plus 5?\nclear\nexit\nnever read\n",
        &[],
    );
    assert!(ok, "{stderr}");
    let want = format!(
        "{WELCOME}\nUser: Assistant: {}\n\nUser: Assistant: {}\n\nUser: History has been removed.\n\nUser: ",
        reply(0),
        reply(1)
    );
    assert_eq!(stdout, want);
}

#[test]
fn yaml_config_and_bad_key() {
    let dir = std::env::temp_dir().join(format!("lmf-chat-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = dir.join("chat.yaml");
    std::fs::write(
        &yaml,
        format!(
            "model_name_or_path: {FIXTURES}/models/llama3\ntemplate: llama3\ndo_sample: false\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .args(["chat", yaml.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{WELCOME}\nUser: ")
    );
    let (_, stderr, ok) = chat("", &["--temprature", "0.5"]);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("temprature") && stderr.contains("temperature"),
        "{stderr}"
    );
}

#[test]
fn missing_tokenizer_is_one_line_error() {
    let dir = std::env::temp_dir().join(format!("lmf-chat-notok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors.index.json"] {
        std::fs::copy(format!("{FIXTURES}/models/llama3/{f}"), dir.join(f)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .args([
            "chat",
            "--model_name_or_path",
            dir.to_str().unwrap(),
            "--template",
            "llama3",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("tokenizer.json") && err.contains(dir.to_str().unwrap()),
        "{err}"
    );
}

/// `template_file` (an lmf key): the `llama3` template as `lmf templates llama3` prints it,
/// renamed `my_llama3` and given as a template file, chats exactly as `template: llama3` does
/// (LLaMA-Factory's output); a template file that cannot be read is a one-line error naming it.
#[test]
fn template_file_template_chats_like_the_builtin() {
    let out = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .args(["templates", "llama3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("  - name: \"llama3\"\n"), "{text}");
    let dir = std::env::temp_dir().join(format!("lmf-chat-template-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("my_templates.yaml");
    std::fs::write(
        &file,
        text.replace("name: \"llama3\"", "name: \"my_llama3\""),
    )
    .unwrap();

    let path = file.to_str().unwrap();
    let extra = ["--template", "my_llama3", "--template_file", path];
    let (stdout, stderr, ok) = chat("What is 2 plus 2?\n", &extra);
    assert!(ok, "{stderr}");
    let lf = std::fs::read(format!("{FIXTURES}/expected/chat_llama3.cli_stdout.txt")).unwrap();
    let lf: String = String::from_utf8(lf)
        .unwrap()
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("[INFO|") && !l.starts_with("[WARNING|"))
        .collect();
    assert_eq!(stdout, lf);

    let missing = dir.join("missing.yaml");
    let missing = missing.to_str().unwrap();
    let (_, stderr, ok) = chat("", &["--template", "my_llama3", "--template_file", missing]);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("template_file `{missing}`: cannot read it")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
