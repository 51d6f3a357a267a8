//! RMSNorm on CUDA (`lmf_kernels::cuda::rmsnorm`): saves x, w and the fp32 `rstd`.

use super::{dense, gpu_of, uninit, view, with_gpu_float, wrap, zeros};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cuda::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use lmf_runtime::{Error, Result};

const OP: &str = "rmsnorm";

/// `rmsnorm` for CUDA tensors (arguments already checked by the caller).
pub fn rmsnorm(x: &Var, w: &Var, eps: f64, offset: f64, rows: usize, dim: usize) -> Result<Var> {
    let (xt, wt) = (dense(x.tensor())?, dense(w.tensor())?);
    let gpu = gpu_of(&xt)?;
    let (y, rstd) = with_gpu_float!(xt.dtype(), OP, T => {
        let mut y = uninit::<T>(&gpu, rows * dim)?;
        let mut rstd = uninit::<f32>(&gpu, rows)?;
        rmsnorm_forward(
            &gpu, &view::<T>(&xt)?, &view::<T>(&wt)?, rows, dim, eps, offset,
            &mut y.slice_mut(..rows * dim), &mut rstd.slice_mut(..rows),
        )
        .map_err(Error::from)?;
        (wrap(&gpu, y, xt.shape())?, wrap(&gpu, rstd, &[rows])?)
    });
    let saved = vec![xt, wt, rstd];
    Ok(record1(OP, &[x, w], y, saved, move |ctx| {
        let (g, x, w, rstd) = (
            dense(ctx.grad(0))?,
            ctx.saved(0),
            ctx.saved(1),
            ctx.saved(2),
        );
        let gpu = gpu_of(x)?;
        let (dx, dw) = with_gpu_float!(x.dtype(), OP, T => {
            let mut dx = uninit::<T>(&gpu, rows * dim)?;
            let mut dw = zeros::<T>(&gpu, dim)?; // accumulated into by the kernel
            rmsnorm_backward(
                &gpu, &view::<T>(&g)?, &view::<T>(x)?, &view::<T>(w)?, &view::<f32>(rstd)?,
                rows, dim, offset, &mut dx.slice_mut(..rows * dim), &mut dw.slice_mut(..dim),
            )
            .map_err(Error::from)?;
            (wrap(&gpu, dx, x.shape())?, wrap(&gpu, dw, w.shape())?)
        });
        Ok(vec![
            grad_if(ctx.needs(0), || Ok(dx))?,
            grad_if(ctx.needs(1), || Ok(dw))?,
        ])
    }))
}
