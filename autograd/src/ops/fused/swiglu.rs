//! Fused gated-linear-unit node (`lmf_kernels::cpu::swiglu`): `out = act(gate) ⊙ up` with
//! SiLU (SwiGLU: Llama, Qwen, Mistral) or tanh-GELU (GeGLU: Gemma). Saves gate and up; the
//! activation is recomputed in the backward.
//!
//! [`glu_matmul`] is the same unit followed by the MLP's down projection, `glu(gate, up) · b`,
//! as one node that saves gate, up and `b` but not the `[tokens, I]` product in between: the
//! backward recomputes it (one elementwise pass) for `b`'s gradient. Its results are those
//! of `glu` then `matmul`, bit for bit, with one `[tokens, I]` activation less kept per layer.

use super::{check_dtype, check_shape, from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::swiglu::{glu_backward, glu_forward};
use lmf_runtime::{Result, Tensor};

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
    let out = glu_tensor(gt, ut, act)?;
    let saved = vec![gt.clone(), ut.clone()];
    Ok(record1(OP, &[gate, up], out, saved, move |ctx| {
        let (g, gate, up) = (ctx.grad(0), ctx.saved(0), ctx.saved(1));
        let (dgate, dup) = glu_grads(g, gate, up, act)?;
        Ok(vec![
            grad_if(ctx.needs(0), || Ok(dgate))?,
            grad_if(ctx.needs(1), || Ok(dup))?,
        ])
    }))
}

/// `act(gate) ⊙ up` of two host tensors of one shape and float dtype.
fn glu_tensor(gate: &Tensor, up: &Tensor, act: GluActivation) -> Result<Tensor> {
    with_real!(gate.dtype(), T => {
        let mut out = vec![T::default(); gate.elem_count()];
        glu_forward(act, &gate.as_slice::<T>()?, &up.as_slice::<T>()?, &mut out);
        from_kernel(out, gate.shape(), gate.dtype(), gate.device())
    })
}

/// `(d gate, d up)` of `act(gate) ⊙ up` for the output gradient `g`.
fn glu_grads(
    g: &Tensor,
    gate: &Tensor,
    up: &Tensor,
    act: GluActivation,
) -> Result<(Tensor, Tensor)> {
    with_real!(gate.dtype(), T => {
        let mut dgate = vec![T::default(); gate.elem_count()];
        let mut dup = vec![T::default(); up.elem_count()];
        glu_backward(act, &g.as_slice::<T>()?, &gate.as_slice::<T>()?, &up.as_slice::<T>()?, &mut dgate, &mut dup);
        let (dt, dev) = (gate.dtype(), gate.device());
        Ok((from_kernel(dgate, gate.shape(), dt, dev)?, from_kernel(dup, up.shape(), dt, dev)?))
    })
}

/// `glu(gate, up, act) · b` for `gate`, `up: [m, k]` and `b: [k, n]` (see the module doc):
/// the product is not kept for the backward but recomputed there. Other ranks, CUDA tensors
/// or mixed dtypes take `glu` then `matmul`, two nodes.
pub fn glu_matmul(gate: &Var, up: &Var, act: GluActivation, b: &Var) -> Result<Var> {
    let (gt, ut, bt) = (gate.tensor(), up.tensor(), b.tensor());
    let fused = gt.rank() == 2
        && bt.rank() == 2
        && gt.shape() == ut.shape()
        && gt.dtype() == ut.dtype()
        && gt.dtype() == bt.dtype()
        && gt.dtype().is_float()
        && !gt.device().is_cuda()
        && !bt.device().is_cuda();
    if !fused {
        return glu(gate, up, act)?.matmul(b);
    }
    // out: [m, n] = a [m, k] · b [k, n], as the matmul node computes it
    let out = glu_tensor(gt, ut, act)?.matmul(bt)?;
    let saved = vec![gt.clone(), ut.clone(), bt.clone()];
    Ok(record1(
        "glu_matmul",
        &[gate, up, b],
        out,
        saved,
        move |ctx| {
            let (g, gate, up, b) = (ctx.grad(0), ctx.saved(0), ctx.saved(1), ctx.saved(2));
            // db: [k, n] = aᵀ · g, with a recomputed; da: [m, k] = g · bᵀ, then through the glu
            let db = grad_if(ctx.needs(2), || glu_tensor(gate, up, act)?.t()?.matmul(g))?;
            if !ctx.needs(0) && !ctx.needs(1) {
                return Ok(vec![None, None, db]);
            }
            let (dgate, dup) = glu_grads(&g.matmul(&b.t()?)?, gate, up, act)?;
            Ok(vec![
                ctx.needs(0).then_some(dgate),
                ctx.needs(1).then_some(dup),
                db,
            ])
        },
    ))
}

/// SwiGLU: `silu(gate) ⊙ up`.
pub fn swiglu(gate: &Var, up: &Var) -> Result<Var> {
    glu(gate, up, GluActivation::Silu)
}

/// GeGLU: `gelu_tanh(gate) ⊙ up`.
pub fn geglu(gate: &Var, up: &Var) -> Result<Var> {
    glu(gate, up, GluActivation::GeluTanh)
}
