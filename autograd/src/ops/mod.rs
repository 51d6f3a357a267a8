//! Differentiable ops on `Var`, one node each, grouped by family. Each op computes its
//! output with the runtime's `Tensor` op and records a backward written with `Tensor` ops
//! (or, for the fused family, with the hand-written CPU kernel backward).

pub mod binary;
pub mod convert;
pub mod dropout;
pub mod fused;
pub mod index;
pub mod matmul;
pub mod reduce;
pub mod shape;
pub mod softmax;
pub mod unary;

use lmf_runtime::{Result, Tensor};

/// `g` reduced to `shape` (the grad of a broadcast operand); a no-op when shapes match.
pub(crate) fn reduce_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        Ok(g.clone())
    } else {
        g.sum_to(shape)
    }
}

/// A scalar `0` of `like`'s dtype and device (broadcasts in `where_cond`).
pub(crate) fn zero_like(like: &Tensor) -> Result<Tensor> {
    Tensor::scalar(0.0, like.dtype(), like.device())
}
