//! RoPE on CUDA (`lmf_kernels::cuda::rope`): the cos/sin tables are tensors on the device.

use super::{dense, gpu_of, uninit, view, with_gpu_float, wrap};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cuda::rope::{rope_backward, rope_forward};
use lmf_runtime::{Error, Result, Tensor};

const OP: &str = "rope";

/// `rope` for CUDA tensors (arguments already checked by the caller).
pub fn rope(
    x: &Var,
    cos: &Tensor,
    sin: &Tensor,
    (tokens, heads, head_dim, rotary_dim): (usize, usize, usize, usize),
) -> Result<Var> {
    let (xt, cos, sin) = (dense(x.tensor())?, dense(cos)?, dense(sin)?);
    let gpu = gpu_of(&xt)?;
    let n = xt.elem_count();
    let out = with_gpu_float!(xt.dtype(), OP, T => {
        let mut y = uninit::<T>(&gpu, n)?;
        rope_forward(
            &gpu, &view::<T>(&xt)?, &view::<T>(&cos)?, &view::<T>(&sin)?,
            tokens, heads, head_dim, rotary_dim, &mut y.slice_mut(..n),
        )
        .map_err(Error::from)?;
        wrap(&gpu, y, xt.shape())?
    });
    let saved = vec![cos, sin];
    Ok(record1(OP, &[x], out, saved, move |ctx| {
        let (g, cos, sin) = (dense(ctx.grad(0))?, ctx.saved(0), ctx.saved(1));
        Ok(vec![grad_if(ctx.needs(0), || {
            let gpu = gpu_of(&g)?;
            with_gpu_float!(g.dtype(), OP, T => {
                let mut dx = uninit::<T>(&gpu, n)?;
                rope_backward(
                    &gpu, &view::<T>(&g)?, &view::<T>(cos)?, &view::<T>(sin)?,
                    tokens, heads, head_dim, rotary_dim, &mut dx.slice_mut(..n),
                )
                .map_err(Error::from)?;
                wrap(&gpu, dx, g.shape())
            })
        })?])
    }))
}
