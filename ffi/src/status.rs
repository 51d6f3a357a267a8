//! Status codes, the thread-local last error, and [`guard`]: the wrapper every exported
//! function runs its body in (catches panics, records the error message).

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a call did. `LMF_STATUS_OK` is 0; every other value is a failure whose message
/// `lmf_last_error()` returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmfStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// A handle that is not live: freed already, never created, or of another type.
    InvalidHandle = 2,
    /// An argument out of range or malformed (bad dim, bad JSON, bad UTF-8, bad key).
    InvalidArgument = 3,
    /// A dtype the operation does not take, or a buffer size that does not match it.
    Dtype = 4,
    /// Shapes that do not fit the operation.
    Shape = 5,
    /// A file or folder could not be read or written.
    Io = 6,
    /// Anything else that failed inside lmf (device errors, model errors, training errors).
    Runtime = 7,
    /// lmf panicked: a bug in lmf; the message says where.
    Panic = 8,
}

/// An error on its way to the caller: a status and a message.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub status: LmfStatus,
    pub message: String,
}

impl FfiError {
    pub fn new(status: LmfStatus, message: impl Into<String>) -> FfiError {
        FfiError {
            status,
            message: message.into(),
        }
    }

    pub fn arg(message: impl Into<String>) -> FfiError {
        FfiError::new(LmfStatus::InvalidArgument, message)
    }
}

pub(crate) type FfiResult<T> = std::result::Result<T, FfiError>;

impl From<lmf_runtime::Error> for FfiError {
    fn from(e: lmf_runtime::Error) -> FfiError {
        use lmf_runtime::Error as E;
        let status = match &e {
            E::Shape { .. } => LmfStatus::Shape,
            E::DType { .. } => LmfStatus::Dtype,
            E::Index { .. } | E::Invalid { .. } => LmfStatus::InvalidArgument,
            _ => LmfStatus::Runtime,
        };
        FfiError::new(status, e.to_string())
    }
}

impl From<lmf_models::Error> for FfiError {
    fn from(e: lmf_models::Error) -> FfiError {
        use lmf_models::Error as E;
        match e {
            E::Runtime(r) => r.into(),
            E::Io { .. } | E::Missing { .. } | E::File { .. } => {
                FfiError::new(LmfStatus::Io, e.to_string())
            }
            other => FfiError::new(LmfStatus::Runtime, other.to_string()),
        }
    }
}

impl From<lmf_trainers::Error> for FfiError {
    fn from(e: lmf_trainers::Error) -> FfiError {
        use lmf_trainers::Error as E;
        match e {
            E::Model(m) => m.into(),
            E::Args(a) => FfiError::arg(a.to_string()),
            other => FfiError::new(LmfStatus::Runtime, other.to_string()),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // An interior NUL would cut the message short: show it instead.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// The message of the last failed call on this thread (empty when none failed yet). The
/// pointer stays valid until the next failing call on this thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn lmf_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs `f`: a returned error or a panic becomes its status and the thread's last error.
pub(crate) fn guard(f: impl FnOnce() -> FfiResult<()>) -> LmfStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => LmfStatus::Ok,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("lmf panicked: {what}"));
            LmfStatus::Panic
        }
    }
}

/// Writes `value` to the out-pointer `out` (named `what` in the error when NULL).
pub(crate) fn write_out<T>(out: *mut T, what: &str, value: T) -> FfiResult<()> {
    if out.is_null() {
        return Err(FfiError::new(
            LmfStatus::NullPointer,
            format!("`{what}` is NULL"),
        ));
    }
    unsafe { out.write(value) };
    Ok(())
}

/// Fails with `NullPointer` when `p` is NULL.
pub(crate) fn non_null<T>(p: *const T, what: &str) -> FfiResult<()> {
    if p.is_null() {
        Err(FfiError::new(
            LmfStatus::NullPointer,
            format!("`{what}` is NULL"),
        ))
    } else {
        Ok(())
    }
}

/// A borrowed C string as UTF-8 (`what` names it in errors); NULL is an error.
pub(crate) fn str_arg<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    non_null(p, what)?;
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| FfiError::arg(format!("`{what}` is not valid UTF-8")))
}

/// An optional C string: NULL is `None`.
pub(crate) fn opt_str_arg<'a>(p: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p, what).map(Some)
    }
}

/// A borrowed C array of `n` elements (NULL allowed when `n` is 0).
pub(crate) fn slice_arg<'a, T>(p: *const T, n: usize, what: &str) -> FfiResult<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    non_null(p, what)?;
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// An array of `n` C strings (`argv`-style) as owned Strings.
pub(crate) fn strings_arg(p: *const *const c_char, n: usize, what: &str) -> FfiResult<Vec<String>> {
    slice_arg(p, n, what)?
        .iter()
        .enumerate()
        .map(|(i, &s)| str_arg(s, &format!("{what}[{i}]")).map(str::to_string))
        .collect()
}

/// A string for the caller to free with `lmf_string_free`.
pub(crate) fn out_string(out: *mut *mut c_char, what: &str, text: &str) -> FfiResult<()> {
    non_null(out, what)?;
    let c = CString::new(text.replace('\0', "\\0"))
        .map_err(|_| FfiError::new(LmfStatus::Runtime, "string with NUL"))?;
    write_out(out, what, c.into_raw())
}

/// Frees a string that lmf returned. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn lmf_string_free(s: *mut c_char) {
    if !s.is_null() {
        drop(unsafe { CString::from_raw(s) });
    }
}
