//! Fused RMSNorm node (`lmf_kernels::cpu::rmsnorm`): `y = x · rstd · (w + offset)` over the
//! last dim (offset 0 for Llama, 1 for Gemma). Saves x, w and the per-row `rstd` so the
//! backward needs no second reduction.

use super::{check_dtype, check_shape, from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use lmf_runtime::{Error, Result, Tensor};

const OP: &str = "rmsnorm";

/// RMSNorm of `x: [.., dim]` with weight `w: [dim]`, `eps` inside the root, `offset` added
/// to the weight (Gemma stores `w - 1`).
pub fn rmsnorm(x: &Var, w: &Var, eps: f64, offset: f64) -> Result<Var> {
    let (xt, wt) = (x.tensor(), w.tensor());
    let dim = match xt.shape().last() {
        Some(&d) if d > 0 => d,
        _ => {
            return Err(Error::shape(
                OP,
                format!("x {:?} must be [.., dim > 0]", xt.shape()),
            ))
        }
    };
    check_shape(OP, "w", wt, &[dim])?;
    let dtype = xt.dtype();
    check_dtype(OP, "x", xt, dtype)?;
    check_dtype(OP, "w", wt, dtype)?;
    let rows = xt.elem_count() / dim;
    let device = xt.device();
    if device.is_cuda() {
        return super::cuda::rmsnorm::rmsnorm(x, w, eps, offset, rows, dim);
    }
    let (y, rstd) = with_real!(dtype, T => {
        // y: [rows, dim], rstd: [rows] (compute type)
        let mut y = vec![T::default(); rows * dim];
        let mut rstd = vec![T::default(); rows];
        rmsnorm_forward(&xt.as_slice::<T>()?, &wt.as_slice::<T>()?, rows, dim, eps, offset, &mut y, &mut rstd);
        (from_kernel(y, xt.shape(), dtype, device)?, Tensor::from_vec(rstd, &[rows], device)?)
    });
    let saved = vec![xt.clone(), wt.clone(), rstd];
    Ok(record1(OP, &[x, w], y, saved, move |ctx| {
        let (g, x, w, rstd) = (ctx.grad(0), ctx.saved(0), ctx.saved(1), ctx.saved(2));
        let (dx, dw) = with_real!(x.dtype(), T => {
            let mut dx = vec![T::default(); rows * dim];
            let mut dw = vec![T::default(); dim]; // accumulated into by the kernel
            rmsnorm_backward(
                &g.as_slice::<T>()?, &x.as_slice::<T>()?, &w.as_slice::<T>()?, &rstd.as_slice::<T>()?,
                rows, dim, offset, &mut dx, &mut dw,
            );
            (from_kernel(dx, x.shape(), x.dtype(), x.device())?, from_kernel(dw, w.shape(), w.dtype(), w.device())?)
        });
        Ok(vec![
            grad_if(ctx.needs(0), || Ok(dx))?,
            grad_if(ctx.needs(1), || Ok(dw))?,
        ])
    }))
}
