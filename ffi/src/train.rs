//! Training from C: `lmf_train_from_yaml` runs what `lmf train` runs (a LLaMA-Factory YAML and
//! `key=value` overrides), hands each log record to a callback, and stops when a cancel token
//! is set (after the current optimizer step, saving a checkpoint, as Ctrl-C does for the
//! CLI). No signal handler is installed in the calling program.

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lmf_trainers::template::pyjson::PyJson;
use lmf_trainers::train::{run_with_hooks, RunHooks};

use crate::handle::{self, Object};
use crate::status::{guard, out_string, strings_arg, write_out, LmfStatus};

/// An opaque cancel flag (free with `lmf_cancel_token_free`); setting it from any thread
/// stops the training run that was given it.
pub struct LmfCancelToken {
    _private: [u8; 0],
}

/// Receives each log record of a training run as a JSON object (`loss`, `grad_norm`,
/// `learning_rate`, `epoch`, `step`, or the `eval_*` metrics), on the thread that called
/// `lmf_train_from_yaml`; the string is valid only during the call.
pub type LmfLogCallback = Option<unsafe extern "C" fn(json: *const c_char, user_data: *mut c_void)>;

/// A new, unset cancel token.
#[no_mangle]
pub unsafe extern "C" fn lmf_cancel_token_new(out: *mut *mut LmfCancelToken) -> LmfStatus {
    guard(|| {
        let flag = Arc::new(AtomicBool::new(false));
        write_out(out, "out", handle::insert(Object::Cancel(flag)))
    })
}

/// Sets the token (thread-safe). The run stops at the end of the optimizer step in progress
/// and saves a checkpoint; set from the log callback (which runs once a step has finished),
/// that is the end of the next step.
#[no_mangle]
pub unsafe extern "C" fn lmf_cancel_token_cancel(token: *const LmfCancelToken) -> LmfStatus {
    guard(|| {
        handle::cancel(token)?.store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// Frees a cancel token (a run using it keeps its own reference). NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn lmf_cancel_token_free(token: *mut LmfCancelToken) -> LmfStatus {
    if token.is_null() {
        return LmfStatus::Ok;
    }
    guard(|| handle::remove(token, "LmfCancelToken"))
}

/// Runs `lmf train` with `nargs` arguments `args` (a YAML/JSON file and/or `key=value`
/// overrides), writing the same output folder. `callback` (may be NULL) gets every log
/// record; `cancel` (may be NULL) stops the run early. `*result_json` (may be NULL; free it
/// with `lmf_string_free`) gets `{"interrupted": bool, "global_step": n, "train": {...},
/// "eval": {...}, "predict": {...}}` with the metrics of `train_results.json` etc.
#[no_mangle]
pub unsafe extern "C" fn lmf_train_from_yaml(
    args: *const *const c_char,
    nargs: usize,
    callback: LmfLogCallback,
    user_data: *mut c_void,
    cancel: *const LmfCancelToken,
    result_json: *mut *mut c_char,
) -> LmfStatus {
    guard(|| {
        let argv = strings_arg(args, nargs, "args")?;
        let stop = if cancel.is_null() {
            Arc::new(AtomicBool::new(false))
        } else {
            handle::cancel(cancel)?
        };
        // The raw user pointer travels inside the closure; it is only used on this thread.
        let user = user_data as usize;
        let on_log = callback.map(|cb| {
            Box::new(move |json: &str| {
                if let Ok(c) = CString::new(json) {
                    unsafe { cb(c.as_ptr(), user as *mut c_void) };
                }
            }) as Box<dyn FnMut(&str)>
        });
        let outcome = run_with_hooks(
            &argv,
            RunHooks {
                stop: Some(stop),
                on_log,
            },
        )?;
        if result_json.is_null() {
            return Ok(());
        }
        let train = outcome.train.as_ref();
        let section = |m: Option<&Vec<(String, PyJson)>>| match m {
            Some(items) => PyJson::Dict(items.clone()),
            None => PyJson::Null,
        };
        let result = PyJson::Dict(vec![
            (
                "interrupted".into(),
                PyJson::Bool(train.is_some_and(|t| t.interrupted)),
            ),
            (
                "global_step".into(),
                PyJson::Int(train.map_or(0, |t| t.global_step) as i128),
            ),
            ("train".into(), section(train.map(|t| &t.metrics))),
            ("eval".into(), section(outcome.eval.as_ref())),
            ("predict".into(), section(outcome.predict.as_ref())),
        ]);
        out_string(result_json, "result_json", &result.dumps())
    })
}
