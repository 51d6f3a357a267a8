//! The progress bar of `lmf train` (indicatif): step / total, loss, learning rate, tokens/s.
//! indicatif draws nothing when stderr is not a terminal, so logs and CI stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A training progress bar (or nothing).
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar over `total` optimizer steps starting at `done`; `enabled` false draws nothing.
    pub fn new(enabled: bool, total: u64, done: u64) -> Progress {
        if !enabled {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_position(done);
        Progress { bar: Some(bar) }
    }

    /// Moves to step `step` and shows the running loss, lr and throughput.
    pub fn step(&mut self, step: u64, loss: f64, lr: f64, tokens_per_s: f64) {
        if let Some(b) = &self.bar {
            b.set_position(step);
            b.set_message(format!(
                "loss {loss:.4}  lr {lr:.3e}  {tokens_per_s:.0} tok/s"
            ));
        }
    }

    /// Leaves the bar in place at its final state.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}

/// The process-wide Ctrl-C flag, installing the handler on first use: the first Ctrl-C sets
/// the flag (the loop saves a checkpoint after the current step and stops), the second aborts
/// at once. Every run shares this one flag (a process has one SIGINT handler).
pub fn ctrlc_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let _ = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted twice: aborting without saving");
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to abort)");
        });
        flag
    })
    .clone()
}
