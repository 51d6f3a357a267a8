//! SwiGLU / GeGLU on CUDA (`lmf_kernels::cuda::glu`): saves gate and up.

use super::{dense, gpu_of, uninit, view, with_gpu_float, wrap};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::swiglu::GluActivation;
use lmf_kernels::cuda::glu::{glu_backward, glu_forward};
use lmf_runtime::{Error, Result};

const OP: &str = "glu";

/// `glu` for CUDA tensors (arguments already checked by the caller).
pub fn glu(gate: &Var, up: &Var, act: GluActivation) -> Result<Var> {
    let (gt, ut) = (dense(gate.tensor())?, dense(up.tensor())?);
    let gpu = gpu_of(&gt)?;
    let n = gt.elem_count();
    let out = with_gpu_float!(gt.dtype(), OP, T => {
        let mut out = uninit::<T>(&gpu, n)?;
        glu_forward(&gpu, act, &view::<T>(&gt)?, &view::<T>(&ut)?, &mut out.slice_mut(..n))
            .map_err(Error::from)?;
        wrap(&gpu, out, gt.shape())?
    });
    let saved = vec![gt, ut];
    Ok(record1(OP, &[gate, up], out, saved, move |ctx| {
        let (g, gate, up) = (dense(ctx.grad(0))?, ctx.saved(0), ctx.saved(1));
        let gpu = gpu_of(gate)?;
        let (dgate, dup) = with_gpu_float!(gate.dtype(), OP, T => {
            let mut dgate = uninit::<T>(&gpu, n)?;
            let mut dup = uninit::<T>(&gpu, n)?;
            glu_backward(
                &gpu, act, &view::<T>(&g)?, &view::<T>(gate)?, &view::<T>(up)?,
                &mut dgate.slice_mut(..n), &mut dup.slice_mut(..n),
            )
            .map_err(Error::from)?;
            (wrap(&gpu, dgate, gate.shape())?, wrap(&gpu, dup, up.shape())?)
        });
        Ok(vec![
            grad_if(ctx.needs(0), || Ok(dgate))?,
            grad_if(ctx.needs(1), || Ok(dup))?,
        ])
    }))
}
