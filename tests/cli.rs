//! The `lmf` binary: `env` and `version` work, unimplemented commands fail with one clear line.

use std::process::Command;

fn lmf(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lmf"))
        .args(args)
        .output()
        .expect("run lmf")
}

#[test]
fn env_reports_version_platform_and_cuda_state() {
    let out = lmf(&["env"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("- Architectures (model_type): llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, qwen3_moe, mixtral, gpt_oss, phi3\n"),
        "lmf env lists the supported architectures"
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("- lmf version: {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("- Platform: "), "{text}");
    // Without a driver: one `CUDA` line saying why; with one: LLaMA-Factory's GPU lines.
    assert!(
        text.contains("- CUDA: ") || text.contains("- GPU number: "),
        "{text}"
    );
    assert!(text.contains("- lmf CUDA device: "), "{text}");
    assert!(text.contains("- NVRTC: "), "{text}");
}

#[test]
fn unimplemented_command_is_one_line_error() {
    let out = lmf(&["webui"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not implemented"), "{err}");
}

#[test]
fn api_with_bad_environment_names_the_variable() {
    for (var, value) in [("API_PORT", "eighty"), ("MAX_CONCURRENT", "0")] {
        let out = Command::new(env!("CARGO_BIN_EXE_lmf"))
            .args(["api", "model_name_or_path=x", "template=llama3"])
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(var), "{err}");
    }
}

#[test]
fn eval_without_a_task_folder_says_where_to_put_it() {
    let dir = std::env::temp_dir().join(format!("lmf-cli-eval-{}", std::process::id()));
    let out = lmf(&[
        "eval",
        "model_name_or_path=x",
        "template=llama3",
        "task=mmlu_test",
        &format!("task_dir={}", dir.display()),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("mmlu/mapping.json") && err.contains("evaluation/"),
        "{err}"
    );
}

#[test]
fn train_with_a_missing_config_names_the_file() {
    let out = lmf(&["train", "no-such-config.yaml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no-such-config.yaml"), "{err}");
}

#[test]
fn train_on_a_missing_gpu_is_one_clear_line() {
    if lmf_kernels::cuda::device_count() > 0 {
        return; // this machine has a GPU: nothing to check here
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .args([
            "train",
            "model_name_or_path=no-such-model",
            "output_dir=no-such-out",
        ])
        .env("LMF_DEVICE", "cuda:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("LMF_DEVICE=cuda:0"), "{err}");
    assert!(
        err.contains("no CUDA driver") || err.contains("no CUDA device"),
        "{err}"
    );
}

#[test]
fn lmf_now_fixes_the_date_and_a_bad_one_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .arg("env")
        .env("LMF_NOW", "2024-07-26T10:20:30")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("- Date (UTC): 2024-07-26 10:20:30 (fixed by LMF_NOW="),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .arg("env")
        .env("LMF_NOW", "next tuesday")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("LMF_NOW=\"next tuesday\""), "{err}");
}

#[test]
fn templates_lists_every_template_name() {
    let out = lmf(&["templates"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = text.lines().collect();
    assert_eq!(names, lmf_trainers::template::template_names());
    assert!(names.contains(&"llama3") && names.contains(&"qwen3"));
}

/// `lmf train` with `args` on a model folder that does not exist: argument errors come first.
fn train_error(args: &[&str]) -> String {
    let mut argv = vec![
        "train",
        "model_name_or_path=no-such-model",
        "output_dir=no-such-out",
    ];
    argv.extend_from_slice(args);
    let out = Command::new(env!("CARGO_BIN_EXE_lmf"))
        .args(&argv)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run lmf");
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

#[test]
fn new_user_mistakes_get_messages_that_say_what_to_do() {
    let err = train_error(&["cutoff_len=-5"]);
    assert!(
        err.contains("bad value for `cutoff_len` (in command line): -5 is not a positive integer"),
        "{err}"
    );
    // `use_cpu` is accepted: the run gets past the arguments to the (missing) model folder.
    let err = train_error(&["use_cpu=true"]);
    assert!(!err.contains("use_cpu"), "{err}");
    assert!(err.contains("no-such-model"), "{err}");
}

/// `lmf train -h` lists every LLaMA-Factory training argument (the five groups of
/// `llamafactory-cli train -h`), each with its type, default, help and what lmf does with it.
#[test]
fn train_help_lists_every_argument_and_its_status() {
    for flag in ["-h", "--help"] {
        let out = lmf(&["train", flag]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let fields = lmf_trainers::args::train::train_fields();
        for f in &fields {
            assert!(
                text.contains(&format!("  --{} {} (default: ", f.name, f.kind)),
                "{}",
                f.name
            );
        }
        let listed = text
            .lines()
            .filter(|l| l.starts_with("  --") && !l.starts_with("  --no_"))
            .count();
        assert_eq!(listed, fields.len());
        for group in [
            "ModelArguments:",
            "DataArguments:",
            "TrainingArguments:",
            "FinetuningArguments:",
            "GeneratingArguments:",
        ] {
            assert!(text.contains(group), "{group}");
        }
        assert!(
            text.contains("  --use_galore bool (default: false) [lmf: yes]"),
            "{text}"
        );
        assert!(text.contains("  --use_adam_mini bool (default: false) [lmf: not implemented yet"));
        assert!(text.contains(
            "  --learning_rate float (default: 0.00005) [lmf: yes]\n      Peak learning rate."
        ));
    }
}

/// The keys README's section `heading` lists, each bullet `- **Group** (why): `key`, ...`.
fn readme_keys(heading: &str) -> std::collections::BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find(heading).expect("README section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut listed = std::collections::BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("- **")) {
        let (_, keys) = line.split_once("): ").expect("bullet with a reason");
        for k in keys.split('`').skip(1).step_by(2) {
            assert!(listed.insert(k.to_string()), "{k} listed twice");
        }
    }
    listed
}

/// README's "Arguments lmf does not take yet" lists exactly the training arguments whose
/// status is "not implemented yet" (each bullet: `- **Group** (why): `key`, ...`).
#[test]
fn readme_lists_every_refused_training_argument() {
    let listed = readme_keys("## Arguments lmf does not take yet");
    let refused: std::collections::BTreeSet<String> = lmf_trainers::args::train::train_fields()
        .into_iter()
        .filter(|f| f.status == lmf_trainers::args::spec::Status::NotImplemented)
        .map(|f| f.name.to_string())
        .collect();
    let missing: Vec<_> = refused.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&refused).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README misses {missing:?}, lists implemented {stale:?}"
    );
}

/// README's "Arguments lmf adds" lists exactly the arguments that are lmf's own (not
/// LLaMA-Factory's), and `lmf train -h` marks them.
#[test]
fn readme_lists_every_lmf_only_argument() {
    let listed = readme_keys("## Arguments lmf adds");
    let ours: std::collections::BTreeSet<String> = lmf_trainers::args::train::train_fields()
        .into_iter()
        .filter(|f| f.status == lmf_trainers::args::spec::Status::LmfOnly)
        .map(|f| f.name.to_string())
        .collect();
    assert!(ours.contains("template_file"));
    assert_eq!(listed, ours);
    let help = String::from_utf8(lmf(&["train", "-h"]).stdout).unwrap();
    for key in &ours {
        assert!(
            help.contains(&format!("  --{key} ")) && help.contains("[lmf only: "),
            "{key}"
        );
    }
}

/// `lmf templates NAME...` prints those templates as a template file that reads back as them;
/// an unknown name is a one-line error.
#[test]
fn templates_prints_named_templates_as_a_template_file() {
    let out = lmf(&["templates", "llama4", "qwen3", "phi4_mini"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let path = std::env::temp_dir().join(format!("lmf-templates-{}.yaml", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let back = lmf_trainers::template::load_template_file(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let want: Vec<_> = ["llama4", "qwen3", "phi4_mini"]
        .iter()
        .map(|n| lmf_trainers::template::get_template(n).unwrap())
        .collect();
    assert_eq!(back, want);
    let out = lmf(&["templates", "llama9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown template `llama9`"), "{err}");
}
