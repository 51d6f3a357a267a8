//! SIGKILL during checkpoint saves never leaves a corrupt checkpoint that resume accepts: a
//! child process (this test binary re-run with `LMF_CRASH_CHILD` set) trains with a checkpoint
//! after every step and is killed at several moments; every `checkpoint-N` left behind must be
//! complete, and resuming from the last one must continue with the losses of a run that was
//! never killed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lmf_autograd::{DType, Device};
use lmf_models::{CausalLM, Weights};
use lmf_trainers::data::Example;
use lmf_trainers::train::state::TrainerState;
use lmf_trainers::train::{get_last_checkpoint, HfModelIo, TrainConfig, Trainer};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/hf/models/llama"
);

fn rows() -> Vec<Example> {
    (0..8)
        .map(|i| {
            let ids: Vec<u32> = (0..9)
                .map(|t| ((i * 31 + t * 17) % 250 + 4) as u32)
                .collect();
            let labels = ids.iter().map(|&x| x as i64).collect();
            Example::single(ids, labels)
        })
        .collect()
}

fn config(dir: &Path, max_steps: i64) -> TrainConfig {
    let mut c = TrainConfig::new(dir);
    c.train_batch_size = 2;
    c.max_steps = max_steps;
    c.save_steps = 1.0;
    c.save_total_limit = Some(2);
    c.learning_rate = 1e-3;
    // A constant rate and a log line per step: a resumed run with a smaller max_steps then
    // sees the same rates as the killed one, so its losses can be compared step by step.
    c.lr_scheduler_type = "constant".into();
    c.logging_steps = 1.0;
    c.progress_bar = false;
    c
}

/// Losses of an uninterrupted run of `steps` steps, by step.
fn reference_losses(steps: i64) -> Vec<(u64, f64)> {
    let dir = std::env::temp_dir().join(format!("lmf-crash-ref-{}-{steps}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = config(&dir, steps);
    c.save_steps = 1e9;
    let mut m = CausalLM::load(Path::new(MODEL), DType::F32, Device::Cpu).unwrap();
    let data = rows();
    let io = HfModelIo::new(None);
    let out = Trainer::new(&mut m, &c, &io, &data, &[])
        .unwrap()
        .train()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out.losses
}

/// The child: trains "forever", checkpointing every step.
fn child(dir: &Path) {
    let mut m = CausalLM::load(Path::new(MODEL), DType::F32, Device::Cpu).unwrap();
    let c = config(dir, 100_000);
    let data = rows();
    let io = HfModelIo::new(Some(PathBuf::from(MODEL)));
    let mut t = Trainer::new(&mut m, &c, &io, &data, &[]).unwrap();
    t.train().unwrap();
}

#[test]
fn killed_saves_leave_only_complete_checkpoints() {
    if let Ok(dir) = std::env::var("LMF_CRASH_CHILD") {
        child(Path::new(&dir));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut resumed = 0;
    for (i, delay_ms) in [0u64, 37, 91].iter().enumerate() {
        let dir = std::env::temp_dir().join(format!("lmf-crash-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut proc = Command::new(&exe)
            .args([
                "--exact",
                "killed_saves_leave_only_complete_checkpoints",
                "--nocapture",
            ])
            .env("LMF_CRASH_CHILD", &dir)
            .spawn()
            .unwrap();
        // Wait for the first checkpoint (the child is saving one per step from then on), then
        // kill at an arbitrary moment of the save cycle.
        for _ in 0..400 {
            if dir.join("checkpoint-1").exists() || dir.join("checkpoint-2").exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(*delay_ms));
        proc.kill().unwrap(); // SIGKILL
        proc.wait().unwrap();
        // Every checkpoint-N that resume could pick is complete.
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("checkpoint-") {
                continue;
            }
            let state = TrainerState::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(format!("checkpoint-{}", state.global_step), name);
            Weights::from_dir(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(p.join("optimizer.safetensors").is_file(), "{name}");
            assert!(p.join("scheduler.json").is_file(), "{name}");
        }
        // And resuming from the last one trains on.
        if let Some(last) = get_last_checkpoint(&dir).unwrap() {
            let done = TrainerState::load(&last).unwrap().global_step;
            let mut c = config(&dir, done as i64 + 2);
            c.resume_from_checkpoint = Some(last);
            let mut m = CausalLM::load(Path::new(MODEL), DType::F32, Device::Cpu).unwrap();
            let data = rows();
            let io = HfModelIo::new(None);
            let mut t = Trainer::new(&mut m, &c, &io, &data, &[]).unwrap();
            let out = t.train().unwrap();
            assert_eq!(out.global_step, done + 2);
            // ... with exactly the losses of a run that was never killed.
            let reference = reference_losses(done as i64 + 2);
            let after: Vec<(u64, f64)> = out
                .losses
                .iter()
                .filter(|(s, _)| *s > done)
                .copied()
                .collect();
            let expected: Vec<(u64, f64)> = reference
                .iter()
                .filter(|(s, _)| *s > done)
                .copied()
                .collect();
            assert_eq!(after.len(), 2, "{after:?}");
            assert_eq!(
                after, expected,
                "resumed losses differ from the uninterrupted run"
            );
            resumed += 1;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The kills must have landed while checkpoints were being written (else this proves
    // nothing).
    assert!(
        resumed == 3,
        "only {resumed} runs got as far as a checkpoint"
    );
}
