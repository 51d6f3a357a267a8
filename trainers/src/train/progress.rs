//! What `lmf train` shows while it runs: the progress bar (indicatif, on stderr when it is a
//! terminal: step / total, loss, learning rate, tokens/s) and, as transformers' Trainer prints
//! them, one line per log record on stdout (`{'loss': '1.234', 'grad_norm': ..., 'learning_rate':
//! ..., 'epoch': ...}`, floats as `.4g`), with the training throughput added. The lines are
//! printed above the bar on a terminal, and alone where stderr is a pipe or a file (CI logs),
//! so progress shows either way.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::template::pyjson::PyJson;
use crate::train::io::py_g4;

/// A training progress bar (or nothing) and the log lines.
pub struct Progress {
    bar: Option<ProgressBar>,
    tokens_per_s: Option<f64>,
}

impl Progress {
    /// No bar: log lines go to stdout (evaluation-only runs, and before training starts).
    pub fn hidden() -> Progress {
        Progress {
            bar: None,
            tokens_per_s: None,
        }
    }

    /// A bar over `total` optimizer steps starting at `done`; `enabled` false draws nothing.
    pub fn new(enabled: bool, total: u64, done: u64) -> Progress {
        if !enabled {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_position(done);
        Progress {
            // indicatif hides the bar where stderr is not a terminal.
            bar: (!bar.is_hidden()).then_some(bar),
            tokens_per_s: None,
        }
    }

    /// Moves to step `step` and shows the running loss, lr and throughput.
    pub fn step(&mut self, step: u64, loss: f64, lr: f64, tokens_per_s: f64) {
        self.tokens_per_s = Some(tokens_per_s);
        if let Some(b) = &self.bar {
            b.set_position(step);
            b.set_message(format!(
                "loss {loss:.4}  lr {lr:.3e}  {tokens_per_s:.0} tok/s"
            ));
        }
    }

    /// Prints one log record (transformers' `ProgressCallback.on_log` line): above the bar on a
    /// terminal, else on stdout.
    pub fn print_log(&self, logs: &[(String, PyJson)]) {
        self.println(&log_line(logs, self.tokens_per_s));
    }

    /// Prints a line above the bar on a terminal, else on stdout.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => println!("{line}"),
        }
    }

    /// Leaves the bar in place at its final state; later log lines go to stdout.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
        self.tokens_per_s = None;
    }
}

/// `str(logs)` with floats as `.4g` strings (transformers' form), then the training throughput
/// when there is one (a step has run) and the record is a training one.
pub fn log_line(logs: &[(String, PyJson)], tokens_per_s: Option<f64>) -> String {
    let mut items: Vec<(String, PyJson)> = logs
        .iter()
        .filter(|(k, _)| k != "total_flos")
        .map(|(k, v)| match v {
            PyJson::Float(f) => (k.clone(), PyJson::Str(py_g4(*f))),
            other => (k.clone(), other.clone()),
        })
        .collect();
    if let Some(tps) = tokens_per_s.filter(|_| logs.iter().any(|(k, _)| k == "loss")) {
        items.push(("tokens_per_second".into(), PyJson::Str(py_g4(tps))));
    }
    PyJson::Dict(items).py_repr()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_look_like_transformers() {
        let logs = vec![
            ("loss".to_string(), PyJson::Float(2.345678)),
            ("grad_norm".to_string(), PyJson::Float(1.5)),
            ("learning_rate".to_string(), PyJson::Float(5e-5)),
            ("epoch".to_string(), PyJson::Float(0.25)),
        ];
        assert_eq!(
            log_line(&logs, Some(1234.56)),
            "{'loss': '2.346', 'grad_norm': '1.5', 'learning_rate': '5e-05', 'epoch': '0.25', \
             'tokens_per_second': '1235'}"
        );
        let eval = vec![
            ("eval_loss".to_string(), PyJson::Float(3.0)),
            ("eval_steps_per_second".to_string(), PyJson::Float(12.3456)),
            ("total_flos".to_string(), PyJson::Float(1e9)),
            ("step".to_string(), PyJson::Int(10)),
        ];
        assert_eq!(
            log_line(&eval, Some(99.0)),
            "{'eval_loss': '3', 'eval_steps_per_second': '12.35', 'step': 10}"
        );
    }
}
