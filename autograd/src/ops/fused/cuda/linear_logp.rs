//! Fused linear + per-token label log-probability on CUDA (`lmf_kernels::cuda::linear_logp`):
//! the same node as the CPU version. The forward returns `[n]` log-probs (fp32, on the
//! device); the node saves `x` and `w`, and its backward recomputes the chunks' logits with
//! the upstream per-token gradient (copied to the host: `n` floats).

use super::{dense, device_labels, gpu_of, uninit, view, with_gpu_float, wrap, zeros};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::linear_ce::CeOptions;
use lmf_kernels::cuda::linear_logp::{linear_logp_backward, linear_logp_forward};
use lmf_runtime::{DType, Error, Result, Tensor};

const OP: &str = "linear_logprobs";

/// The CUDA branch of `linear_logprobs` (arguments already checked by the caller).
pub fn linear_logprobs(
    x: &Var,
    w: &Var,
    labels: &Tensor,
    lab: &[i64],
    (n, hidden, vocab): (usize, usize, usize),
    opts: &CeOptions,
) -> Result<Var> {
    let (xt, wt) = (dense(x.tensor())?, dense(w.tensor())?);
    let gpu = gpu_of(&xt)?;
    let labels = device_labels(labels, lab, &xt)?;
    let logp = with_gpu_float!(xt.dtype(), OP, T => {
        let (xv, wv, lv) = (view::<T>(&xt)?, view::<T>(&wt)?, view::<i64>(&labels)?);
        linear_logp_forward(&gpu, &xv, &wv, &lv, n, hidden, vocab, opts).map_err(Error::from)?
    });
    let logp: Vec<f32> = logp.iter().map(|&l| l as f32).collect();
    let out = Tensor::from_slice(&logp, &[n], xt.device())?;
    let opts = *opts;
    let saved = vec![xt, wt, labels];
    Ok(record1(OP, &[x, w], out, saved, move |ctx| {
        let (x, w, labels) = (ctx.saved(0), ctx.saved(1), ctx.saved(2));
        let (need_x, need_w) = (ctx.needs(0), ctx.needs(1));
        let g: Vec<f32> = ctx.grad(0).to_dtype(DType::F32)?.to_vec::<f32>()?;
        let gpu = gpu_of(x)?;
        let (dx, dw) = with_gpu_float!(x.dtype(), OP, T => {
            let (xv, wv, lv) = (view::<T>(x)?, view::<T>(w)?, view::<i64>(labels)?);
            let mut dx = if need_x { Some(uninit::<T>(&gpu, n * hidden)?) } else { None };
            let mut dw = if need_w { Some(zeros::<T>(&gpu, vocab * hidden)?) } else { None };
            {
                let mut dxv = dx.as_mut().map(|s| s.slice_mut(..n * hidden));
                let mut dwv = dw.as_mut().map(|s| s.slice_mut(..vocab * hidden));
                linear_logp_backward(
                    &gpu, &xv, &wv, &lv, n, hidden, vocab, &opts, &g, dxv.as_mut(), dwv.as_mut(),
                )
                .map_err(Error::from)?;
            }
            (
                dx.map(|b| wrap(&gpu, b, x.shape())).transpose()?,
                dw.map(|b| wrap(&gpu, b, w.shape())).transpose()?,
            )
        });
        let missing = || Error::invalid(OP, "missing gradient buffer");
        Ok(vec![
            grad_if(need_x, || dx.ok_or_else(missing))?,
            grad_if(need_w, || dw.ok_or_else(missing))?,
        ])
    }))
}
