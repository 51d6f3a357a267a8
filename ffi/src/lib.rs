//! liblmf: the C ABI over lmf's runtime, autograd, models and trainer, so that C, C++, Python
//! (`ffi/python`) or any language with a C FFI can link lmf as a library. The header
//! `ffi/include/lmf.h` is generated from this crate by cbindgen (`build.rs`).
//!
//! The rules every function follows:
//! - Every function returns an [`LmfStatus`] (except the few that cannot fail: version,
//!   last error, default parameters); results come back through out-pointers, written only
//!   on success. `lmf_last_error()` gives the message of the last failure on the calling
//!   thread.
//! - Nothing panics across the boundary: a panic inside lmf becomes `LMF_STATUS_PANIC` with
//!   its message.
//! - Objects are opaque handles (`LmfTensor*`, `LmfGrads*`, `LmfModel*`, `LmfCancelToken*`)
//!   that the caller frees with their `_free` function. A handle is a token, never a pointer
//!   to memory: handles are numbered and never reused, so a freed, foreign or made-up handle
//!   (double free included) is `LMF_STATUS_INVALID_HANDLE`, not a crash.
//! - Strings that lmf returns (`char**` out-parameters) are freed with `lmf_string_free`;
//!   strings passed in are UTF-8 and NUL-terminated and only borrowed for the call.
//!
//! What lives where: `status` (codes, last error, the panic guard), `handle` (the handle
//! table), `tensor` (create, inspect, copy out, views, device), `ops` (the runtime's ops),
//! `autograd` (requires_grad, backward, gradients, grad mode), `model` (load, forward,
//! tokenizer, chat template, generation), `train` (training from a YAML, cancel tokens).

#![allow(clippy::missing_safety_doc)]

mod autograd;
mod handle;
mod model;
mod ops;
mod status;
mod tensor;
mod train;

pub use autograd::*;
pub use model::*;
pub use ops::*;
pub use status::*;
pub use tensor::*;
pub use train::*;

use std::ffi::c_char;

/// The ABI version: bumped whenever a signature, struct layout or enum value of `lmf.h`
/// changes incompatibly. Compare with [`lmf_abi_version`] at run time.
pub const LMF_ABI_VERSION: u32 = 1;

/// lmf's version (`"0.1.0"`), a static string.
#[no_mangle]
pub extern "C" fn lmf_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version the library was built with ([`LMF_ABI_VERSION`] of its header).
#[no_mangle]
pub extern "C" fn lmf_abi_version() -> u32 {
    LMF_ABI_VERSION
}
