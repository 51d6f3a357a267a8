//! Fused gated-linear-unit node (`lmf_kernels::cpu::swiglu`): `out = act(gate) ⊙ up` with
//! SiLU (SwiGLU: Llama, Qwen, Mistral) or tanh-GELU (GeGLU: Gemma). Saves gate and up; the
//! activation is recomputed in the backward.

use super::{check_dtype, check_shape, from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::swiglu::{glu_backward, glu_forward};
use lmf_runtime::Result;

pub use lmf_kernels::cpu::swiglu::GluActivation;

const OP: &str = "glu";

/// `act(gate) ⊙ up`; `gate` and `up` have the same shape and dtype.
pub fn glu(gate: &Var, up: &Var, act: GluActivation) -> Result<Var> {
    let (gt, ut) = (gate.tensor(), up.tensor());
    check_shape(OP, "up", ut, gt.shape())?;
    let dtype = gt.dtype();
    check_dtype(OP, "gate", gt, dtype)?;
    check_dtype(OP, "up", ut, dtype)?;
    if gt.device().is_cuda() {
        return super::cuda::glu::glu(gate, up, act);
    }
    let out = with_real!(dtype, T => {
        let mut out = vec![T::default(); gt.elem_count()];
        glu_forward(act, &gt.as_slice::<T>()?, &ut.as_slice::<T>()?, &mut out);
        from_kernel(out, gt.shape(), dtype, gt.device())?
    });
    let saved = vec![gt.clone(), ut.clone()];
    Ok(record1(OP, &[gate, up], out, saved, move |ctx| {
        let (g, gate, up) = (ctx.grad(0), ctx.saved(0), ctx.saved(1));
        let (dgate, dup) = with_real!(gate.dtype(), T => {
            let mut dgate = vec![T::default(); gate.elem_count()];
            let mut dup = vec![T::default(); up.elem_count()];
            glu_backward(act, &g.as_slice::<T>()?, &gate.as_slice::<T>()?, &up.as_slice::<T>()?, &mut dgate, &mut dup);
            let (dt, dev) = (gate.dtype(), gate.device());
            (from_kernel(dgate, gate.shape(), dt, dev)?, from_kernel(dup, up.shape(), dt, dev)?)
        });
        Ok(vec![
            grad_if(ctx.needs(0), || Ok(dgate))?,
            grad_if(ctx.needs(1), || Ok(dup))?,
        ])
    }))
}

/// SwiGLU: `silu(gate) ⊙ up`.
pub fn swiglu(gate: &Var, up: &Var) -> Result<Var> {
    glu(gate, up, GluActivation::Silu)
}

/// GeGLU: `gelu_tanh(gate) ⊙ up`.
pub fn geglu(gate: &Var, up: &Var) -> Result<Var> {
    glu(gate, up, GluActivation::GeluTanh)
}
