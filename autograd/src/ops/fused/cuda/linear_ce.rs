//! Fused linear + cross-entropy on CUDA (`lmf_kernels::cuda::linear_ce`): like the CPU node,
//! the gradients are computed in the forward (times the reduction factor) and the backward
//! only scales them by the incoming scalar gradient.

use super::{dense, device_labels, gpu_of, uninit, view, with_gpu_float, wrap, zeros};
use crate::var::Var;
use lmf_kernels::cpu::linear_ce::CeOptions;
use lmf_kernels::cuda::linear_ce::{linear_ce_forward, linear_ce_fwd_bwd};
use lmf_runtime::{Error, Result, Tensor};

const OP: &str = "linear_cross_entropy";

/// What the CUDA pass returns: the loss sum and the saved, pre-scaled gradients.
pub struct CePass {
    /// Sum of the token losses.
    pub loss_sum: f64,
    /// `[dx]`, `[dw]`, `[dx, dw]` or `[]`, as requested.
    pub saved: Vec<Tensor>,
}

/// The CUDA pass of `linear_cross_entropy` (arguments already checked by the caller).
#[allow(clippy::too_many_arguments)]
pub fn linear_ce(
    x: &Var,
    w: &Var,
    labels: &Tensor,
    lab: &[i64],
    (n, hidden, vocab): (usize, usize, usize),
    opts: &CeOptions,
    factor: f64,
    record: bool,
) -> Result<CePass> {
    let (xt, wt) = (dense(x.tensor())?, dense(w.tensor())?);
    let gpu = gpu_of(&xt)?;
    let labels = device_labels(labels, lab, &xt)?;
    let (need_x, need_w) = (x.requires_grad(), w.requires_grad());
    with_gpu_float!(xt.dtype(), OP, T => {
        let (xv, wv, lv) = (view::<T>(&xt)?, view::<T>(&wt)?, view::<i64>(&labels)?);
        if !record {
            let r = linear_ce_forward(&gpu, &xv, &wv, &lv, n, hidden, vocab, opts).map_err(Error::from)?;
            return Ok(CePass { loss_sum: r.loss_sum, saved: vec![] });
        }
        let mut dx = if need_x { Some(uninit::<T>(&gpu, n * hidden)?) } else { None };
        let mut dw = if need_w { Some(zeros::<T>(&gpu, vocab * hidden)?) } else { None };
        let r = {
            let mut dxv = dx.as_mut().map(|s| s.slice_mut(..n * hidden));
            let mut dwv = dw.as_mut().map(|s| s.slice_mut(..vocab * hidden));
            linear_ce_fwd_bwd(
                &gpu, &xv, &wv, &lv, n, hidden, vocab, opts, factor as f32,
                dxv.as_mut(), dwv.as_mut(),
            )
            .map_err(Error::from)?
        };
        let mut saved = Vec::new();
        if let Some(dx) = dx {
            saved.push(wrap(&gpu, dx, xt.shape())?);
        }
        if let Some(dw) = dw {
            saved.push(wrap(&gpu, dw, wt.shape())?);
        }
        Ok(CePass { loss_sum: r.loss_sum, saved })
    })
}
