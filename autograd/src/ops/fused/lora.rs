//! Fused LoRA linear node (`lmf_kernels::cpu::lora`): `y = x·Wᵀ + bias + s·(drop(x)·Aᵀ)·Bᵀ`
//! in one node. Saves x, W, A, B and the small `xa = drop(x)·Aᵀ: [n, r]`; the dropout mask is
//! regenerated from its Philox (seed, offset) in the backward, never stored.

use super::{check_dtype, check_shape, from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::lora::{lora_backward, lora_forward, LoraGrads};
use lmf_kernels::Real;
use lmf_runtime::{Error, Result, Tensor};

pub use lmf_kernels::cpu::lora::LoraDropout;

const OP: &str = "lora_linear";

/// LoRA linear: `x: [.., in]`, `w: [out, in]` (usually frozen), `bias: [out]`, `a: [r, in]`,
/// `b: [out, r]`, `scale` (alpha/r or alpha/√r), optional dropout on the LoRA path;
/// returns `[.., out]`.
pub fn lora_linear(
    x: &Var,
    w: &Var,
    bias: Option<&Var>,
    a: &Var,
    b: &Var,
    scale: f64,
    dropout: Option<LoraDropout>,
) -> Result<Var> {
    let (xt, wt, at, bt) = (x.tensor(), w.tensor(), a.tensor(), b.tensor());
    if wt.rank() != 2 || at.rank() != 2 || xt.rank() == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "x {:?} must be [.., in], w {:?} [out, in], a {:?} [r, in]",
                xt.shape(),
                wt.shape(),
                at.shape()
            ),
        ));
    }
    let (out_f, in_f, r) = (wt.shape()[0], wt.shape()[1], at.shape()[0]);
    if xt.shape()[xt.rank() - 1] != in_f {
        return Err(Error::shape(
            OP,
            format!("x {:?} must end in in_features {in_f}", xt.shape()),
        ));
    }
    check_shape(OP, "a", at, &[r, in_f])?;
    check_shape(OP, "b", bt, &[out_f, r])?;
    let dtype = xt.dtype();
    for (what, t) in [("w", wt), ("a", at), ("b", bt)] {
        check_dtype(OP, what, t, dtype)?;
    }
    if let Some(bias) = bias {
        check_shape(OP, "bias", bias.tensor(), &[out_f])?;
        check_dtype(OP, "bias", bias.tensor(), dtype)?;
    }
    if let Some(d) = &dropout {
        if !(0.0..1.0).contains(&d.p) {
            return Err(Error::invalid(
                OP,
                format!("dropout p = {} is not in [0, 1)", d.p),
            ));
        }
    }
    let n = xt.elem_count() / in_f.max(1);
    let device = xt.device();
    let mut y_shape = xt.shape().to_vec();
    *y_shape.last_mut().expect("rank >= 1") = out_f;
    if device.is_cuda() {
        return super::cuda::lora::lora_linear(
            x,
            w,
            bias,
            a,
            b,
            scale,
            dropout,
            (n, in_f, out_f, r),
            &y_shape,
        );
    }
    let (y, xa) = with_real!(dtype, T => {
        // y: [n, out], xa: [n, r]
        let mut y = vec![T::default(); n * out_f];
        let mut xa = vec![T::default(); n * r];
        let bias_s = bias.map(|v| v.tensor().as_slice::<T>()).transpose()?;
        lora_forward(
            &xt.as_slice::<T>()?, &wt.as_slice::<T>()?, bias_s.as_deref(),
            &at.as_slice::<T>()?, &bt.as_slice::<T>()?,
            n, in_f, out_f, r, T::of(scale), dropout.as_ref(), &mut y, &mut xa,
        );
        (
            from_kernel(y, &y_shape, dtype, device)?,
            Tensor::from_vec(xa, &[n, r], device)?,
        )
    });
    let saved = vec![xt.clone(), wt.clone(), at.clone(), bt.clone(), xa];
    let mut inputs = vec![x, w, a, b];
    inputs.extend(bias);
    let has_bias = bias.is_some();
    Ok(record1(OP, &inputs, y, saved, move |ctx| {
        let s = ctx.saved_all();
        let (x, w, a, b, xa) = (&s[0], &s[1], &s[2], &s[3], &s[4]);
        let (nx, nw) = (ctx.needs(0), ctx.needs(1));
        let nbias = has_bias && ctx.needs(4);
        let grads = with_real!(x.dtype(), T => {
            let mut dx = vec![T::default(); if nx { x.elem_count() } else { 0 }];
            let mut dw = vec![T::default(); if nw { w.elem_count() } else { 0 }];
            let mut da = vec![T::default(); a.elem_count()];
            let mut db = vec![T::default(); b.elem_count()];
            let mut dbias = vec![T::default(); if nbias { out_f } else { 0 }];
            lora_backward(
                &ctx.grad(0).as_slice::<T>()?, &x.as_slice::<T>()?, &w.as_slice::<T>()?,
                &a.as_slice::<T>()?, &b.as_slice::<T>()?, &xa.as_slice::<T>()?,
                n, in_f, out_f, r, T::of(scale), dropout.as_ref(),
                LoraGrads {
                    dx: nx.then_some(dx.as_mut_slice()),
                    da: &mut da,
                    db: &mut db,
                    dw: nw.then_some(dw.as_mut_slice()),
                    dbias: nbias.then_some(dbias.as_mut_slice()),
                },
            );
            let (dt, dev) = (x.dtype(), x.device());
            let mut grads = vec![
                grad_if(nx, || from_kernel(dx, x.shape(), dt, dev))?,
                grad_if(nw, || from_kernel(dw, w.shape(), dt, dev))?,
                grad_if(ctx.needs(2), || from_kernel(da, a.shape(), dt, dev))?,
                grad_if(ctx.needs(3), || from_kernel(db, b.shape(), dt, dev))?,
            ];
            if has_bias {
                grads.push(grad_if(nbias, || from_kernel(dbias, &[out_f], dt, dev))?);
            }
            grads
        });
        Ok(grads)
    }))
}
