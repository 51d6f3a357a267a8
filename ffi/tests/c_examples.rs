//! Builds the C and C++ examples in `ffi/examples/` against the liblmf that cargo built for
//! this test run (shared library, under AddressSanitizer + UBSan, and once against the static
//! library) with the system compiler, runs them, and checks what they print against lmf's
//! Rust API and the reference fixtures: the gradient of `tensors.c` against lmf_autograd's,
//! the greedy reply of `chat.c` / `example.cpp` against `ChatModel` (what `lmf chat` runs) and
//! LLaMA-Factory's reply in `tests/fixtures/hf/expected/chat_llama3.json`, and the log
//! records `train.c` receives against the run's `trainer_log.jsonl`. ASan's leak checker
//! runs at each program's exit: a leak or an invalid access fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use lmf_autograd::{DType, Device, Tensor, Var};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");
const MESSAGE: &str = "What is 2 plus 2?";

/// The folder holding the liblmf.so / liblmf.a of this build (`target/<profile>/deps`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps folder").to_path_buf();
    for dir in [
        deps.clone(),
        deps.parent().expect("profile folder").to_path_buf(),
    ] {
        if dir.join("liblmf.so").is_file() {
            return dir;
        }
    }
    panic!("liblmf.so not found next to {}", exe.display());
}

/// A scratch folder for this test process.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lmf-ffi-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles `ffi/examples/{name}` (C or C++ by extension) into the scratch folder; `asan`
/// links the shared library with the sanitizers, otherwise the static library.
fn build(name: &str, asan: bool) -> PathBuf {
    let src = Path::new(ROOT).join("ffi/examples").join(name);
    let cpp = name.ends_with(".cpp");
    let suffix = if asan { "" } else { "_static" };
    let exe = scratch().join(format!("{}{suffix}", name.replace('.', "_")));
    let lib = lib_dir();
    let mut cmd = Command::new(if cpp { "c++" } else { "cc" });
    cmd.arg(if cpp { "-std=c++17" } else { "-std=c11" })
        .args(["-Wall", "-Wextra", "-Werror", "-g", "-O1"])
        .arg(format!("-I{ROOT}/ffi/include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe);
    if asan {
        cmd.args([
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
        ])
        .arg(format!("-L{}", lib.display()))
        .arg("-llmf")
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    } else {
        cmd.arg(lib.join("liblmf.a")).args(["-lpthread", "-ldl"]);
    }
    cmd.arg("-lm");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running the C compiler for {name}: {e}"));
    assert!(
        out.status.success(),
        "compiling {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Runs `exe` with `args`; asserts success (a sanitizer report fails it) and returns stdout.
fn run(exe: &Path, args: &[&str]) -> String {
    let out = Command::new(exe)
        .args(args)
        .env("ASAN_OPTIONS", "detect_leaks=1:exitcode=23")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The numbers after `{label}:` on the line that starts with it.
fn numbers(stdout: &str, label: &str) -> Vec<f64> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no `{label}:` line in\n{stdout}"));
    line.split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

#[test]
fn tensors_gradient_equals_the_rust_api() {
    let stdout = run(&build("tensors.c", true), &[]);
    // The same inputs and loss as tensors.c, through lmf_autograd.
    let a: Vec<f64> = (0..6).map(|i| 0.3 * i as f64 - 0.7).collect();
    let b: Vec<f64> = (0..12).map(|i| 0.2 * ((i * 7) % 5) as f64 - 0.4).collect();
    let c: Vec<f64> = (0..8).map(|i| ((i * 3) % 4) as f64 - 1.5).collect();
    let leaf = |v: &[f64], s: &[usize]| Var::param(Tensor::from_slice(v, s, Device::Cpu).unwrap());
    let (va, vb) = (leaf(&a, &[2, 3]), leaf(&b, &[3, 4]));
    let vc = Var::constant(Tensor::from_slice(&c, &[2, 4], Device::Cpu).unwrap());
    let probs = va.matmul(&vb).unwrap().softmax(1).unwrap();
    let loss = probs.mul(&vc).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let (ga, gb) = (grads.get(&va).unwrap(), grads.get(&vb).unwrap());
    assert_eq!(ga.dtype(), DType::F64);
    assert_eq!(
        numbers(&stdout, "dA"),
        ga.to_vec::<f64>().unwrap(),
        "dA from C vs Rust"
    );
    assert_eq!(
        numbers(&stdout, "dB"),
        gb.to_vec::<f64>().unwrap(),
        "dB from C vs Rust"
    );
    assert!(stdout.contains("tensors: all checks passed"));
}

#[test]
fn errors_are_statuses_not_crashes() {
    let stdout = run(&build("errors.c", true), &[]);
    assert!(stdout.contains("errors: all checks passed"), "{stdout}");
    // each expected failure printed its status and a message naming the problem
    assert!(stdout.contains("not a live LmfTensor handle"), "{stdout}");
    assert!(stdout.contains("inner dims"), "{stdout}");
}

/// LLaMA-Factory's greedy reply and prompt ids for MESSAGE on the tiny llama3 model.
fn reference_turn() -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/expected/chat_llama3.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let turn = v["turns"][0].clone();
    assert_eq!(turn["messages"][0]["content"], MESSAGE);
    turn
}

/// The reply `lmf chat` gives: its `ChatModel`, greedy, for MESSAGE.
fn lmf_chat_reply() -> &'static str {
    static REPLY: OnceLock<String> = OnceLock::new();
    REPLY.get_or_init(|| {
        use lmf_trainers::args::{parse_infer_args, GenerateRequest};
        use lmf_trainers::chat::ChatModel;
        use lmf_trainers::template::{Message, Role};
        let argv: Vec<String> = vec![
            format!("model_name_or_path={FIXTURES}/models/llama3"),
            "template=llama3".into(),
            "do_sample=false".into(),
        ];
        let chat = ChatModel::from_args(&parse_infer_args(&argv).unwrap()).unwrap();
        let msgs = [Message::new(Role::User, MESSAGE)];
        chat.stream_chat(&msgs, None, None, &GenerateRequest::default(), |_| {})
            .unwrap()
            .response_text
    })
}

#[test]
fn c_chat_matches_lmf_chat_and_the_reference() {
    let reply_file = scratch().join("reply_c.txt");
    let model = format!("{FIXTURES}/models/llama3");
    let stdout = run(
        &build("chat.c", true),
        &[&model, "llama3", MESSAGE, reply_file.to_str().unwrap()],
    );
    let turn = reference_turn();
    let want_ids: Vec<f64> = turn["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(numbers(&stdout, "prompt_ids"), want_ids);
    let reply = std::fs::read_to_string(&reply_file).unwrap();
    assert_eq!(reply, lmf_chat_reply(), "C reply vs lmf chat's");
    assert_eq!(
        reply,
        turn["response_text"].as_str().unwrap(),
        "C reply vs LLaMA-Factory's"
    );
}

#[test]
fn cpp_example_with_shared_and_static_library() {
    let model = format!("{FIXTURES}/models/llama3");
    for asan in [true, false] {
        let reply_file = scratch().join(format!("reply_cpp_{asan}.txt"));
        let stdout = run(
            &build("example.cpp", asan),
            &[&model, "llama3", MESSAGE, reply_file.to_str().unwrap()],
        );
        assert!(
            stdout.contains("grad ok") && stdout.contains("c++: all checks passed"),
            "{stdout}"
        );
        let reply = std::fs::read_to_string(&reply_file).unwrap();
        assert_eq!(
            reply,
            lmf_chat_reply(),
            "C++ reply (asan {asan}) vs lmf chat's"
        );
    }
}

/// A 3-step LoRA sft YAML on the tiny model, writing into `out`.
fn train_yaml(out: &Path) -> PathBuf {
    let yaml = format!(
        "model_name_or_path: {FIXTURES}/models/llama3\nstage: sft\ndo_train: true\n\
         finetuning_type: lora\nlora_target: all\ndataset: alpaca_demo\ndataset_dir: {ROOT}/data\n\
         template: llama3\ncutoff_len: 64\nmax_samples: 16\noutput_dir: {}\n\
         overwrite_output_dir: true\nper_device_train_batch_size: 2\nmax_steps: 3\n\
         logging_steps: 1\nlearning_rate: 1.0e-3\nreport_to: none\ndisable_tqdm: true\n",
        out.display()
    );
    let path = out.with_extension("yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The log records train.c printed, and its result.
fn train_output(stdout: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let records = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("log: "))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("result: "))
        .unwrap_or_else(|| panic!("no result line in\n{stdout}"));
    (records, serde_json::from_str(result).unwrap())
}

#[test]
fn c_training_run_with_log_callback_and_cancel() {
    let exe = build("train.c", true);
    let out = scratch().join("train_out");
    let yaml = train_yaml(&out);
    let (records, result) = train_output(&run(&exe, &[yaml.to_str().unwrap()]));
    let losses: Vec<(u64, f64)> = records
        .iter()
        .filter(|r| r.get("loss").is_some())
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap()))
        .collect();
    assert_eq!(losses.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2, 3]);
    // the callback saw exactly what trainer_log.jsonl recorded
    let log = std::fs::read_to_string(out.join("trainer_log.jsonl")).unwrap();
    let file_losses: Vec<f64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|r| r.get("loss").and_then(|x| x.as_f64()))
        .collect();
    let cb_losses: Vec<f64> = losses.iter().map(|l| l.1).collect();
    assert_eq!(cb_losses, file_losses);
    assert!(out.join("adapter_model.safetensors").is_file());
    assert_eq!(result["global_step"], 3);
    assert_eq!(result["interrupted"], false);
    assert!(result["train"]["train_loss"].as_f64().unwrap().is_finite());

    // cancelled from the callback at the first record: stops early and saves a checkpoint
    let out2 = scratch().join("train_cancel");
    let yaml2 = train_yaml(&out2);
    let stdout = run(
        &exe,
        &[yaml2.to_str().unwrap(), "max_steps=50", "cancel_after=1"],
    );
    let (_, result) = train_output(&stdout);
    assert_eq!(result["interrupted"], true, "{stdout}");
    let steps = result["global_step"].as_u64().unwrap();
    assert!((1..50).contains(&steps), "{stdout}");
    assert!(out2.join(format!("checkpoint-{steps}")).is_dir());
}
