//! Grouped matmul of mixture-of-experts layers on CUDA (`lmf_kernels::cuda::grouped_gemm`):
//! the same node as the CPU version (saves `x` and `w`; gives `dx` and `dW`).

use super::{dense, gpu_of, uninit, view, with_gpu_float, wrap};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cuda::grouped_gemm::{
    grouped_gemm_backward_w, grouped_gemm_backward_x, grouped_gemm_forward,
};
use lmf_runtime::{Error, Result};
use std::sync::Arc;

const OP: &str = "grouped_matmul";

/// `grouped_matmul` for CUDA tensors (arguments already checked by the caller): `x: [m, k]`,
/// `w: [e, n, k]`, `offsets` the groups' row ranges.
pub fn grouped_matmul(x: &Var, w: &Var, offsets: Arc<[usize]>) -> Result<Var> {
    let (xt, wt) = (dense(x.tensor())?, dense(w.tensor())?);
    let gpu = gpu_of(&xt)?;
    let (m, k) = (xt.shape()[0], xt.shape()[1]);
    let (e, n) = (wt.shape()[0], wt.shape()[1]);
    let out = with_gpu_float!(xt.dtype(), OP, T => {
        let mut y = uninit::<T>(&gpu, m * n)?;
        grouped_gemm_forward(
            &gpu, &mut y.slice_mut(..m * n), &view::<T>(&xt)?, &view::<T>(&wt)?, &offsets, (n, k),
        )
        .map_err(Error::from)?;
        wrap(&gpu, y, &[m, n])?
    });
    let saved = vec![xt, wt];
    Ok(record1(OP, &[x, w], out, saved, move |ctx| {
        let (g, x, w) = (dense(ctx.grad(0))?, ctx.saved(0), ctx.saved(1));
        let gpu = gpu_of(x)?;
        let dx = grad_if(ctx.needs(0), || {
            Ok(with_gpu_float!(x.dtype(), OP, T => {
                let mut dx = uninit::<T>(&gpu, m * k)?;
                grouped_gemm_backward_x(
                    &gpu, &mut dx.slice_mut(..m * k), &view::<T>(&g)?, &view::<T>(w)?, &offsets,
                    (n, k),
                )
                .map_err(Error::from)?;
                wrap(&gpu, dx, &[m, k])?
            }))
        })?;
        let dw = grad_if(ctx.needs(1), || {
            Ok(with_gpu_float!(x.dtype(), OP, T => {
                let mut dw = uninit::<T>(&gpu, e * n * k)?;
                grouped_gemm_backward_w(
                    &gpu, &mut dw.slice_mut(..e * n * k), &view::<T>(&g)?, &view::<T>(x)?,
                    &offsets, (n, k),
                )
                .map_err(Error::from)?;
                wrap(&gpu, dw, &[e, n, k])?
            }))
        })?;
        Ok(vec![dx, dw])
    }))
}
