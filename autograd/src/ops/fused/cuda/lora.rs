//! Fused LoRA linear on CUDA (`lmf_kernels::cuda::lora`): saves x, w, a, b and `xa =
//! drop(x)·Aᵀ` like the CPU node; dA, dB (and dW, dbias when asked) are accumulated into
//! zeroed buffers, dx is overwritten.

use super::{dense, gpu_of, uninit, view, with_gpu_float, wrap, zeros};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::lora::LoraDropout;
use lmf_kernels::cuda::lora::{lora_backward, lora_forward, LoraGrads};
use lmf_runtime::{Error, Result};

const OP: &str = "lora_linear";

/// `lora_linear` for CUDA tensors (arguments already checked by the caller).
#[allow(clippy::too_many_arguments)]
pub fn lora_linear(
    x: &Var,
    w: &Var,
    bias: Option<&Var>,
    a: &Var,
    b: &Var,
    scale: f64,
    dropout: Option<LoraDropout>,
    (n, in_f, out_f, r): (usize, usize, usize, usize),
    y_shape: &[usize],
) -> Result<Var> {
    let (xt, wt, at, bt) = (
        dense(x.tensor())?,
        dense(w.tensor())?,
        dense(a.tensor())?,
        dense(b.tensor())?,
    );
    let bias_t = bias.map(|v| dense(v.tensor())).transpose()?;
    let gpu = gpu_of(&xt)?;
    let (y, xa) = with_gpu_float!(xt.dtype(), OP, T => {
        let mut y = uninit::<T>(&gpu, n * out_f)?;
        let mut xa = uninit::<T>(&gpu, n * r)?;
        let bias_v = bias_t.as_ref().map(view::<T>).transpose()?;
        lora_forward(
            &gpu, &view::<T>(&xt)?, &view::<T>(&wt)?, bias_v.as_ref(), &view::<T>(&at)?, &view::<T>(&bt)?,
            n, in_f, out_f, r, scale as f32, dropout.as_ref(),
            &mut y.slice_mut(..n * out_f), &mut xa.slice_mut(..n * r),
        )
        .map_err(Error::from)?;
        (wrap(&gpu, y, y_shape)?, wrap(&gpu, xa, &[n, r])?)
    });
    let saved = vec![xt, wt, at, bt, xa];
    let mut inputs = vec![x, w, a, b];
    inputs.extend(bias);
    let has_bias = bias.is_some();
    Ok(record1(OP, &inputs, y, saved, move |ctx| {
        let s = ctx.saved_all();
        let (x, w, a, b, xa) = (&s[0], &s[1], &s[2], &s[3], &s[4]);
        let g = dense(ctx.grad(0))?;
        let gpu = gpu_of(x)?;
        let (nx, nw) = (ctx.needs(0), ctx.needs(1));
        let nbias = has_bias && ctx.needs(4);
        with_gpu_float!(x.dtype(), OP, T => {
            let mut dx = if nx { Some(uninit::<T>(&gpu, n * in_f)?) } else { None };
            let mut dw = if nw { Some(zeros::<T>(&gpu, out_f * in_f)?) } else { None };
            let mut da = zeros::<T>(&gpu, r * in_f)?;
            let mut db = zeros::<T>(&gpu, out_f * r)?;
            let mut dbias = if nbias { Some(zeros::<T>(&gpu, out_f)?) } else { None };
            {
                let mut dxv = dx.as_mut().map(|s| s.slice_mut(..n * in_f));
                let mut dwv = dw.as_mut().map(|s| s.slice_mut(..out_f * in_f));
                let mut dav = da.slice_mut(..r * in_f);
                let mut dbv = db.slice_mut(..out_f * r);
                let mut dbiasv = dbias.as_mut().map(|s| s.slice_mut(..out_f));
                lora_backward(
                    &gpu, &view::<T>(&g)?, &view::<T>(x)?, &view::<T>(w)?, &view::<T>(a)?,
                    &view::<T>(b)?, &view::<T>(xa)?, n, in_f, out_f, r, scale as f32, dropout.as_ref(),
                    LoraGrads {
                        dx: dxv.as_mut(),
                        da: &mut dav,
                        db: &mut dbv,
                        dw: dwv.as_mut(),
                        dbias: dbiasv.as_mut(),
                    },
                )
                .map_err(Error::from)?;
            }
            let mut grads = vec![
                grad_if(nx, || dx.map_or_else(|| Err(Error::invalid(OP, "dx")), |d| wrap(&gpu, d, x.shape())))?,
                grad_if(nw, || dw.map_or_else(|| Err(Error::invalid(OP, "dw")), |d| wrap(&gpu, d, w.shape())))?,
                grad_if(ctx.needs(2), || wrap(&gpu, da, a.shape()))?,
                grad_if(ctx.needs(3), || wrap(&gpu, db, b.shape()))?,
            ];
            if has_bias {
                grads.push(grad_if(nbias, || {
                    dbias.map_or_else(|| Err(Error::invalid(OP, "dbias")), |d| wrap(&gpu, d, &[out_f]))
                })?);
            }
            Ok(grads)
        })
    }))
}
