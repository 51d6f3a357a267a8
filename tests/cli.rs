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
    let out = lmf(&["eval", "cfg.yaml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not implemented"), "{err}");
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
