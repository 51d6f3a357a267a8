//! What a program that links lmf as a library hooks into a training run: a log callback (each
//! record the trainer logs, as JSON) and its own stop flag instead of the process-wide Ctrl-C
//! handler. The hooks are set for the duration of [`run_with_hooks`] on the calling thread
//! (the trainer logs and checks its stop flag on the thread that runs it), so the stages and
//! the trainer need no extra parameter.

use std::cell::RefCell;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::train::WorkflowOutcome;
use crate::Result;

/// A callback that receives each log record of the run as one JSON object (the entries of
/// `trainer_state.json`'s `log_history`: `loss`, `grad_norm`, `learning_rate`, `epoch`,
/// `step`, or the `eval_*` metrics).
pub type LogFn = Box<dyn FnMut(&str)>;

/// The hooks of one training run.
#[derive(Default)]
pub struct RunHooks {
    /// Stops training after the current optimizer step (a checkpoint is saved), as Ctrl-C
    /// does. `None`: the process-wide Ctrl-C flag (the CLI).
    pub stop: Option<Arc<AtomicBool>>,
    /// Called with every log record.
    pub on_log: Option<LogFn>,
}

thread_local! {
    static HOOKS: RefCell<Option<RunHooks>> = const { RefCell::new(None) };
}

/// Clears the thread's hooks when the run ends, however it ends.
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        HOOKS.with(|h| h.borrow_mut().take());
    }
}

/// [`crate::train::run`] with `hooks`: `argv` is what `lmf train` takes (a YAML/JSON file and
/// `key=value` overrides). No signal handler is installed when `hooks.stop` is given.
pub fn run_with_hooks(argv: &[String], hooks: RunHooks) -> Result<WorkflowOutcome> {
    if HOOKS.with(|h| h.borrow().is_some()) {
        return Err(crate::Error::Msg(
            "a training run is already in progress on this thread".into(),
        ));
    }
    HOOKS.with(|h| *h.borrow_mut() = Some(hooks));
    let _reset = Reset;
    crate::train::run(argv)
}

/// The flag a run stops on: the hooks' flag, else the process-wide Ctrl-C flag (cleared).
pub(crate) fn stop_flag() -> Arc<AtomicBool> {
    let own = HOOKS.with(|h| h.borrow().as_ref().and_then(|h| h.stop.clone()));
    own.unwrap_or_else(|| {
        let flag = super::progress::ctrlc_flag();
        flag.store(false, std::sync::atomic::Ordering::SeqCst);
        flag
    })
}

/// Whether a log callback receives the records (then the trainer does not also print them:
/// a library's host owns its stdout).
pub(crate) fn has_log_callback() -> bool {
    HOOKS.with(|h| h.borrow().as_ref().is_some_and(|h| h.on_log.is_some()))
}

/// Hands one log record to the hooks' callback, if any. The callback is taken out while it
/// runs, so a callback that itself calls into lmf cannot hit a held borrow.
pub(crate) fn emit_log(json: &str) {
    let Some(mut f) = HOOKS.with(|h| h.borrow_mut().as_mut().and_then(|h| h.on_log.take())) else {
        return;
    };
    f(json);
    HOOKS.with(|h| {
        if let Some(h) = h.borrow_mut().as_mut() {
            h.on_log = Some(f);
        }
    });
}
