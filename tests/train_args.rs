//! Training arguments where lmf follows LLaMA-Factory by refusing or by going past it:
//! - `lora_target` with one regular expression: LLaMA-Factory always hands PEFT a list, where
//!   such an entry matches nothing; lmf passes it as PEFT's regex form (full match on module
//!   names) and writes it so in `adapter_config.json`. A regex naming the same modules as a
//!   list trains exactly the same adapter.
//! - `pure_bf16` on a CPU: LLaMA-Factory's own refusal.
//! - `fp16` on a CPU: no fp16 CPU kernels (bf16 is the CPU's mixed precision).
//! - `lora_bias`: not an argument of LLaMA-Factory 0.9.5 (its parser refuses unknown keys).
//! - DoRA or PiSSA with LoRA on `embed_tokens` / `lm_head`: refused (PEFT has them; lmf builds
//!   plain LoRA and rsLoRA there), not silently trained without.
//! - `template_file` (lmf's own key): a template read from a file trains what the built-in
//!   template it copies trains.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const TRAIN_FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf/train");
const CASE: &str = "cases/lora_llama/lora_llama.yaml";

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lmf-train-args-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn lmf_train(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lmf"))
        .current_dir(TRAIN_FIX)
        .arg("train")
        .arg(CASE)
        .arg(format!("output_dir={}", out.display()))
        .args(["max_steps=4", "do_eval=false", "eval_strategy=no"])
        .args(extra)
        .output()
        .unwrap()
}

fn adapter(out: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_regex_lora_target_trains_what_the_same_list_trains() {
    let (a, b) = (out_dir("list"), out_dir("regex"));
    // A fresh adapter (no adapter_name_or_path): both runs draw the same initial A/B.
    for (out, target) in [
        (&a, "q_proj,v_proj"),
        (&b, r".*\.layers\.\d+\.self_attn\.(q_proj|v_proj)"),
    ] {
        let res = lmf_train(
            out,
            &[
                "adapter_name_or_path=null",
                &format!("lora_target={target}"),
            ],
        );
        assert!(
            res.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
    let (ta, tb) = (adapter(&a), adapter(&b));
    let names: Vec<&str> = tb.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.contains("q_proj") || n.contains("v_proj")),
        "{names:?}"
    );
    assert!(
        ta == tb,
        "the regex run trained other weights than the list run"
    );
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(
        cfg["target_modules"],
        r".*\.layers\.\d+\.self_attn\.(q_proj|v_proj)"
    );
    // A regex that matches nothing fails naming it.
    let c = out_dir("nomatch");
    let res = lmf_train(
        &c,
        &[
            "adapter_name_or_path=null",
            r"lora_target=.*\.nothing_(a|b)",
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(err.contains(r"`.*\.nothing_(a|b)` (a regex)"), "{err}");
    for d in [a, b, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn refused_arguments_fail_before_anything_is_written() {
    for (extra, msg) in [
        // PEFT's DoRA / PiSSA variants of the embedding adapters are not built
        (
            "lora_target=q_proj,embed_tokens use_dora=true",
            "DoRA on `embed_tokens` is not implemented",
        ),
        (
            "lora_target=.*lm_head pissa_init=true",
            "PiSSA on `lm_head` is not implemented",
        ),
        (
            "pure_bf16=true",
            "This device does not support `pure_bf16`.",
        ),
        ("lora_bias=true", "lora_bias"),
        // no fp16 CPU kernels: a clear refusal naming the key, not a silent fp32 run
        ("fp16=true", "`fp16: true` on the CPU"),
    ] {
        let out = out_dir("refused");
        // a new adapter (the case's YAML resumes one, whose targets are fixed)
        let mut args = vec!["use_cpu=true", "adapter_name_or_path=null"];
        args.extend(extra.split(' '));
        let res = lmf_train(&out, &args);
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{extra} trained");
        assert!(err.contains(msg), "{extra}: {err}");
        assert!(!out.exists(), "{extra}: wrote {}", out.display());
    }
}

#[test]
fn a_template_from_template_file_trains_what_the_builtin_trains() {
    let (a, b, files) = (out_dir("builtin"), out_dir("file"), out_dir("templates"));
    std::fs::create_dir_all(&files).unwrap();
    // The case's `llama3` template as a template file, under another name.
    let llama3 = lmf_trainers::template::get_template("llama3").unwrap();
    let text = lmf_trainers::template::template_file_yaml(&[llama3])
        .replace("name: \"llama3\"", "name: \"my_llama3\"");
    let file = files.join("templates.yaml");
    std::fs::write(&file, text).unwrap();
    let res = lmf_train(&a, &[]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let res = lmf_train(
        &b,
        &[
            &format!("template_file={}", file.display()),
            "template=my_llama3",
        ],
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        adapter(&a) == adapter(&b),
        "the template file trained another adapter"
    );
    // A template the file does not define (nor lmf) fails naming the file.
    let c = out_dir("file-unknown");
    let res = lmf_train(
        &c,
        &[
            &format!("template_file={}", file.display()),
            "template=my_llama",
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains("unknown template `my_llama` (neither built in nor in template_file")
            && err.contains("my_llama3"),
        "{err}"
    );
    for d in [a, b, c, files] {
        let _ = std::fs::remove_dir_all(d);
    }
}
