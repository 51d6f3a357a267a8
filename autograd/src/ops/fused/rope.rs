//! Fused rotary-embedding node (`lmf_kernels::cpu::rope`, HF rotate_half layout, partial
//! rotary): one node; the backward is the kernel's transposed rotation. Only the shared
//! `cos`/`sin` tables are saved (one storage for every layer that uses them).

use super::{check_dtype, check_shape, from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::rope::{rope_backward, rope_forward, rope_tables};
use lmf_runtime::{DType, Device, Error, Result, Tensor};

pub use lmf_kernels::cpu::rope::{RopeConfig, RopeScaling};

const OP: &str = "rope";

/// The `(cos, sin)` tables for `positions` as `[positions.len(), rotary_dim / 2]` tensors of
/// `dtype` (computed in f64 for F64, f32 otherwise); packed sequences pass positions that
/// restart at 0.
pub fn rope_cos_sin(
    cfg: &RopeConfig,
    positions: &[i64],
    dtype: DType,
    device: Device,
) -> Result<(Tensor, Tensor)> {
    if cfg.rotary_dim < 2 || cfg.rotary_dim & 1 != 0 || cfg.rotary_dim > cfg.head_dim {
        return Err(Error::invalid(
            OP,
            format!(
                "rotary_dim {} must be even, >= 2 and <= head_dim {}",
                cfg.rotary_dim, cfg.head_dim
            ),
        ));
    }
    let shape = [positions.len(), cfg.rotary_dim / 2];
    with_real!(dtype, T => {
        let (c, s) = rope_tables::<T>(cfg, positions);
        Ok((from_kernel(c, &shape, dtype, device)?, from_kernel(s, &shape, dtype, device)?))
    })
}

/// RoPE on `x: [.., tokens, heads, head_dim]` (leading dims fold into tokens) with tables
/// `cos`, `sin: [tokens, rotary_dim / 2]` from [`rope_cos_sin`]; dims past `rotary_dim`
/// pass through.
pub fn rope(x: &Var, cos: &Tensor, sin: &Tensor, rotary_dim: usize) -> Result<Var> {
    let xt = x.tensor();
    if xt.rank() < 3 {
        return Err(Error::shape(
            OP,
            format!("x {:?} must be [tokens, heads, head_dim]", xt.shape()),
        ));
    }
    let (heads, head_dim) = (xt.shape()[xt.rank() - 2], xt.shape()[xt.rank() - 1]);
    let tokens = xt.elem_count() / (heads * head_dim).max(1);
    if rotary_dim & 1 != 0 || rotary_dim > head_dim {
        return Err(Error::invalid(
            OP,
            format!("rotary_dim {rotary_dim} must be even and <= head_dim {head_dim}"),
        ));
    }
    check_shape(OP, "cos", cos, &[tokens, rotary_dim / 2])?;
    check_shape(OP, "sin", sin, &[tokens, rotary_dim / 2])?;
    let dtype = xt.dtype();
    check_dtype(OP, "x", xt, dtype)?;
    if xt.device().is_cuda() {
        return super::cuda::rope::rope(x, cos, sin, (tokens, heads, head_dim, rotary_dim));
    }
    let out = with_real!(dtype, T => {
        let mut y = vec![T::default(); xt.elem_count()];
        rope_forward(
            &xt.as_slice::<T>()?, &cos.as_slice::<T>()?, &sin.as_slice::<T>()?,
            tokens, heads, head_dim, rotary_dim, &mut y,
        );
        from_kernel(y, xt.shape(), dtype, xt.device())?
    });
    let saved = vec![cos.clone(), sin.clone()];
    Ok(record1(OP, &[x], out, saved, move |ctx| {
        let (g, cos, sin) = (ctx.grad(0), ctx.saved(0), ctx.saved(1));
        Ok(vec![grad_if(ctx.needs(0), || {
            with_real!(g.dtype(), T => {
                let mut dx = vec![T::default(); g.elem_count()];
                rope_backward(
                    &g.as_slice::<T>()?, &cos.as_slice::<T>()?, &sin.as_slice::<T>()?,
                    tokens, heads, head_dim, rotary_dim, &mut dx,
                );
                from_kernel(dx, g.shape(), g.dtype(), g.device())
            })
        })?])
    }))
}
