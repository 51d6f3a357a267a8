//! Flash attention on CUDA (`lmf_kernels::cuda::attention`): saves q, k, v, out and the fp32
//! logsumexp `[heads, total_q]` for the backward. With GPT-OSS's attention sinks the finished
//! rows are folded (`lmf_kernels::cuda::attn_sinks`) and the sinks get their gradient.

use super::{dense, gpu_of, uninit, view, with_gpu_float, wrap};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::attention::AttnParams;
use lmf_kernels::cuda::attention::{attention_backward, attention_forward};
use lmf_kernels::cuda::attn_sinks::{fold_sinks, sinks_backward};
use lmf_runtime::{Error, Result};

const OP: &str = "attention";

/// `attention` for CUDA tensors (arguments already checked by the caller).
pub fn attention(
    q: &Var,
    k: &Var,
    v: &Var,
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    p: &AttnParams,
) -> Result<Var> {
    attention_sinks(q, k, v, None, cu_seqlens_q, cu_seqlens_k, p)
}

/// `attention` / `attention_with_sinks` for CUDA tensors (arguments already checked by the
/// caller): `sinks: [num_heads]` in q's dtype when given.
#[allow(clippy::too_many_arguments)]
pub fn attention_sinks(
    q: &Var,
    k: &Var,
    v: &Var,
    sinks: Option<&Var>,
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    p: &AttnParams,
) -> Result<Var> {
    let (qt, kt, vt) = (dense(q.tensor())?, dense(k.tensor())?, dense(v.tensor())?);
    let st = sinks.map(|s| dense(s.tensor())).transpose()?;
    let gpu = gpu_of(&qt)?;
    let (tq, h) = (qt.shape()[0], p.num_heads);
    let nq = qt.elem_count();
    let (out, lse) = with_gpu_float!(qt.dtype(), OP, T => {
        let mut out = uninit::<T>(&gpu, nq)?;
        let mut lse = uninit::<f32>(&gpu, h * tq)?;
        attention_forward(
            &gpu, &view::<T>(&qt)?, &view::<T>(&kt)?, &view::<T>(&vt)?, cu_seqlens_q, cu_seqlens_k,
            p, &mut out.slice_mut(..nq), &mut lse.slice_mut(..h * tq),
        )
        .map_err(Error::from)?;
        if let Some(st) = &st {
            fold_sinks(
                &gpu, &mut out.slice_mut(..nq), &mut lse.slice_mut(..h * tq), &view::<T>(st)?,
                p.head_dim,
            )
            .map_err(Error::from)?;
        }
        (wrap(&gpu, out, qt.shape())?, wrap(&gpu, lse, &[h, tq])?)
    });
    let mut saved = vec![qt, kt, vt, out.clone(), lse];
    let mut inputs = vec![q, k, v];
    if let (Some(st), Some(s)) = (st, sinks) {
        saved.push(st);
        inputs.push(s);
    }
    let (cu_q, cu_k, p) = (cu_seqlens_q.to_vec(), cu_seqlens_k.to_vec(), *p);
    Ok(record1(OP, &inputs, out, saved, move |ctx| {
        let s = ctx.saved_all();
        let (q, k, v, out, lse) = (&s[0], &s[1], &s[2], &s[3], &s[4]);
        let g = dense(ctx.grad(0))?;
        let gpu = gpu_of(q)?;
        let (nq, nk) = (q.elem_count(), k.elem_count());
        let (dq, dk, dv) = with_gpu_float!(q.dtype(), OP, T => {
            let mut dq = uninit::<T>(&gpu, nq)?;
            let mut dk = uninit::<T>(&gpu, nk)?;
            let mut dv = uninit::<T>(&gpu, nk)?;
            attention_backward(
                &gpu, &view::<T>(&g)?, &view::<T>(q)?, &view::<T>(k)?, &view::<T>(v)?,
                &view::<T>(out)?, &view::<f32>(lse)?, &cu_q, &cu_k, &p,
                &mut dq.slice_mut(..nq), &mut dk.slice_mut(..nk), &mut dv.slice_mut(..nk),
            )
            .map_err(Error::from)?;
            (wrap(&gpu, dq, q.shape())?, wrap(&gpu, dk, k.shape())?, wrap(&gpu, dv, v.shape())?)
        });
        let mut grads = vec![
            grad_if(ctx.needs(0), || Ok(dq))?,
            grad_if(ctx.needs(1), || Ok(dk))?,
            grad_if(ctx.needs(2), || Ok(dv))?,
        ];
        if let Some(sk) = s.get(5) {
            grads.push(grad_if(ctx.needs(3), || {
                Ok(with_gpu_float!(q.dtype(), OP, T => {
                    let mut ds = uninit::<T>(&gpu, p.num_heads)?;
                    sinks_backward(
                        &gpu, &view::<T>(&g)?, &view::<T>(out)?, &view::<f32>(lse)?,
                        &view::<T>(sk)?, p.head_dim, &mut ds.slice_mut(..p.num_heads),
                    )
                    .map_err(Error::from)?;
                    wrap(&gpu, ds, sk.shape())?
                }))
            })?);
        }
        Ok(grads)
    }))
}
