//! Autograd from C: mark leaf tensors as requiring grad, run backward from an output, read
//! each input's gradient from the returned `LmfGrads`, and turn recording off and on (the
//! no-grad scope; per thread, like PyTorch's).

use lmf_autograd::{Grads, Var};
use std::sync::Arc;

use crate::handle::{self, Object};
use crate::status::{guard, write_out, FfiError, LmfStatus};
use crate::tensor::{out_tensor, with_out, LmfTensor};

/// An opaque set of gradients from one backward pass (free with `lmf_grads_free`).
pub struct LmfGrads {
    _private: [u8; 0],
}

/// Sets whether a leaf tensor requires grad (the handle stays the same; set it before using
/// the tensor in ops). A tensor computed by ops is not a leaf: `LMF_STATUS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_set_requires_grad(
    t: *mut LmfTensor,
    requires_grad: bool,
) -> LmfStatus {
    guard(|| {
        let v = handle::tensor(t)?;
        if !v.is_leaf() {
            return Err(FfiError::arg(format!(
                "requires_grad can only be set on a leaf tensor; this one is the output of `{}` (use lmf_tensor_detach first)",
                v.op_name().unwrap_or("an op")
            )));
        }
        if v.requires_grad() != requires_grad {
            handle::replace(
                t,
                Object::Tensor(Var::leaf(v.tensor().clone(), requires_grad)),
            )?;
        }
        Ok(())
    })
}

/// Whether the tensor requires grad (a leaf marked so, or an op output that depends on one).
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_requires_grad(
    t: *const LmfTensor,
    out: *mut bool,
) -> LmfStatus {
    guard(|| write_out(out, "out", handle::tensor(t)?.requires_grad()))
}

/// The same data cut from the graph: a new leaf that does not require grad.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_detach(
    t: *const LmfTensor,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || Ok(handle::tensor(t)?.detach()))
}

/// Backpropagates from `output`: with `grad_output` NULL the output must have one element
/// (its gradient is 1); otherwise `grad_output` (same shape) is the output's gradient. The
/// gradients of every tensor that requires grad and reaches `output` go into `*grads`.
#[no_mangle]
pub unsafe extern "C" fn lmf_backward(
    output: *const LmfTensor,
    grad_output: *const LmfTensor,
    grads: *mut *mut LmfGrads,
) -> LmfStatus {
    guard(|| {
        let y = handle::tensor(output)?;
        let g: Grads = if grad_output.is_null() {
            y.backward()?
        } else {
            y.backward_with(handle::tensor(grad_output)?.tensor())?
        };
        write_out(grads, "grads", handle::insert(Object::Grads(Arc::new(g))))
    })
}

/// The gradient of `t` in `grads` as a new tensor in `*out`, or `*out = NULL` when `t` got no
/// gradient (it does not require grad, or does not reach the output).
#[no_mangle]
pub unsafe extern "C" fn lmf_grads_get(
    grads: *const LmfGrads,
    t: *const LmfTensor,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    guard(|| {
        let g = handle::grads(grads)?;
        let v = handle::tensor(t)?;
        match g.get(&v) {
            Some(grad) => out_tensor(out, Var::constant(grad.clone())),
            None => write_out(out, "out", std::ptr::null_mut()),
        }
    })
}

/// Frees a gradient set. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn lmf_grads_free(grads: *mut LmfGrads) -> LmfStatus {
    if grads.is_null() {
        return LmfStatus::Ok;
    }
    guard(|| handle::remove(grads, "LmfGrads"))
}

/// Turns recording on or off on the calling thread (off: ops build no graph, as inside
/// `torch.no_grad()`); `*previous` (may be NULL) gets the mode before the call, to restore.
#[no_mangle]
pub unsafe extern "C" fn lmf_set_grad_enabled(enabled: bool, previous: *mut bool) -> LmfStatus {
    guard(|| {
        let before = lmf_autograd::set_grad_enabled(enabled);
        if !previous.is_null() {
            unsafe { previous.write(before) };
        }
        Ok(())
    })
}

/// Whether ops on the calling thread record a graph.
#[no_mangle]
pub extern "C" fn lmf_is_grad_enabled() -> bool {
    lmf_autograd::is_grad_enabled()
}
