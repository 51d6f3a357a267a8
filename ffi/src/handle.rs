//! The handle table. A handle given to C is a number dressed as a pointer (`LmfTensor*`
//! etc.): the key of a live object in one process-wide table. Numbers only grow, so a freed
//! handle never comes back to life; looking up a freed, made-up or other-typed handle is an
//! error. Objects are cloned out of the table (cheap: `Var` and `Arc`s), so no call holds
//! the lock while it computes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use lmf_autograd::{Grads, Var};
use lmf_trainers::chat::ChatModel;

use crate::status::{FfiError, FfiResult, LmfStatus};

/// A live object behind a handle.
#[derive(Clone)]
pub(crate) enum Object {
    Tensor(Var),
    Grads(Arc<Grads>),
    Model(Arc<ChatModel>),
    Cancel(Arc<AtomicBool>),
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::Tensor(_) => "LmfTensor",
            Object::Grads(_) => "LmfGrads",
            Object::Model(_) => "LmfModel",
            Object::Cancel(_) => "LmfCancelToken",
        }
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1);

static TABLE: LazyLock<Mutex<HashMap<u64, Object>>> = LazyLock::new(Default::default);

fn table() -> MutexGuard<'static, HashMap<u64, Object>> {
    // A panic while the lock was held cannot leave the map half-written (every use is one
    // insert/get/remove), so a poisoned lock is still usable.
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stores `obj` and returns its handle. Handles are multiples of 16 (they look like aligned
/// pointers, and never collide with NULL).
pub(crate) fn insert<H>(obj: Object) -> *mut H {
    let id = NEXT.fetch_add(1, Ordering::Relaxed) << 4;
    table().insert(id, obj);
    id as usize as *mut H
}

fn lookup<H>(h: *const H, kind: &str) -> FfiResult<Object> {
    if h.is_null() {
        return Err(FfiError::new(
            LmfStatus::NullPointer,
            format!("the {kind} handle is NULL"),
        ));
    }
    let id = h as usize as u64;
    match table().get(&id) {
        Some(obj) if obj.kind() == kind => Ok(obj.clone()),
        Some(obj) => Err(FfiError::new(
            LmfStatus::InvalidHandle,
            format!("handle {h:p} is an {}, not an {kind}", obj.kind()),
        )),
        None => Err(FfiError::new(
            LmfStatus::InvalidHandle,
            format!("{h:p} is not a live {kind} handle (freed already, or never created)"),
        )),
    }
}

/// Removes the handle `h` of type `kind` (freeing the object when nothing else holds it).
pub(crate) fn remove<H>(h: *const H, kind: &str) -> FfiResult<()> {
    lookup(h, kind)?;
    table().remove(&(h as usize as u64));
    Ok(())
}

/// Replaces the object behind a live handle (same type).
pub(crate) fn replace<H>(h: *const H, obj: Object) -> FfiResult<()> {
    lookup(h, obj.kind())?;
    table().insert(h as usize as u64, obj);
    Ok(())
}

pub(crate) fn tensor<H>(h: *const H) -> FfiResult<Var> {
    match lookup(h, "LmfTensor")? {
        Object::Tensor(v) => Ok(v),
        _ => unreachable!("kind checked"),
    }
}

pub(crate) fn grads<H>(h: *const H) -> FfiResult<Arc<Grads>> {
    match lookup(h, "LmfGrads")? {
        Object::Grads(g) => Ok(g),
        _ => unreachable!("kind checked"),
    }
}

pub(crate) fn model<H>(h: *const H) -> FfiResult<Arc<ChatModel>> {
    match lookup(h, "LmfModel")? {
        Object::Model(m) => Ok(m),
        _ => unreachable!("kind checked"),
    }
}

pub(crate) fn cancel<H>(h: *const H) -> FfiResult<Arc<AtomicBool>> {
    match lookup(h, "LmfCancelToken")? {
        Object::Cancel(c) => Ok(c),
        _ => unreachable!("kind checked"),
    }
}

/// The number of live handles of every type: what a program has not freed yet.
#[no_mangle]
pub extern "C" fn lmf_live_handles() -> usize {
    table().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_never_reused_and_type_checked() {
        let flag = || Object::Cancel(Arc::new(AtomicBool::new(false)));
        let a: *mut u8 = insert(flag());
        assert!(!a.is_null() && (a as usize).is_multiple_of(16));
        assert!(cancel(a).is_ok());
        assert_eq!(tensor(a).unwrap_err().status, LmfStatus::InvalidHandle);
        remove(a, "LmfCancelToken").unwrap();
        let b: *mut u8 = insert(flag());
        assert_ne!(a, b, "a freed handle's number is not given out again");
        assert_eq!(
            remove(a, "LmfCancelToken").unwrap_err().status,
            LmfStatus::InvalidHandle
        );
        assert_eq!(
            cancel(std::ptr::null::<u8>()).unwrap_err().status,
            LmfStatus::NullPointer
        );
        remove(b, "LmfCancelToken").unwrap();
    }
}
