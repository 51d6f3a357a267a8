//! Fused linear + cross-entropy node (`lmf_kernels::cpu::linear_ce`): `loss = CE(x·wᵀ,
//! labels)` without ever holding the `[tokens, vocab]` logits. Like Liger, the forward
//! computes the loss AND its gradients in one pass; the node saves `dx`, `dw` (the size of
//! the inputs, not of the logits) and its backward only scales them by the upstream scalar.

use super::{from_kernel, with_real};
use crate::tape::{grad_if, record1, will_record};
use crate::var::Var;
use lmf_kernels::cpu::linear_ce::{linear_ce_forward, linear_ce_fwd_bwd};
use lmf_kernels::Real;
use lmf_runtime::{DType, Error, Result, Tensor};

pub use lmf_kernels::cpu::linear_ce::CeOptions;

const OP: &str = "linear_cross_entropy";

/// How the per-token losses are reduced to the scalar loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CeReduction {
    /// Mean over the valid (non-ignored) tokens; 0 when every token is ignored.
    Mean,
    /// Sum over the valid tokens.
    Sum,
    /// Sum divided by a caller-given count (e.g. `num_items_in_batch` under accumulation).
    Divide(f64),
}

/// Fused `cross_entropy(x·wᵀ, labels)`: `x: [.., hidden]`, `w: [vocab, hidden]` (HF
/// lm_head layout), `labels: [..]` I64/I32 (one per row of x; `opts.ignore_index` skipped).
/// Returns the scalar loss, F64 for F64 inputs and F32 otherwise (losses reduce in fp32).
pub fn linear_cross_entropy(
    x: &Var,
    w: &Var,
    labels: &Tensor,
    opts: &CeOptions,
    reduction: CeReduction,
) -> Result<Var> {
    let (xt, wt) = (x.tensor(), w.tensor());
    let (n, hidden, vocab, lab) = check_inputs(OP, xt, wt, labels, opts)?;
    let n_valid = lab.iter().filter(|&&y| y != opts.ignore_index).count();
    let factor = match reduction {
        CeReduction::Mean if n_valid == 0 => 0.0,
        CeReduction::Mean => 1.0 / n_valid as f64,
        CeReduction::Sum => 1.0,
        CeReduction::Divide(d) => 1.0 / d,
    };
    let (dtype, device) = (xt.dtype(), xt.device());
    let loss_dtype = if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let record = will_record(&[x, w]);
    let (need_x, need_w) = (x.requires_grad(), w.requires_grad());
    let (loss_sum, saved) = if device.is_cuda() {
        let pass = super::cuda::linear_ce::linear_ce(
            x,
            w,
            labels,
            &lab,
            (n, hidden, vocab),
            opts,
            factor,
            record,
        )?;
        (pass.loss_sum, pass.saved)
    } else {
        with_real!(dtype, T => {
            let (xs, ws) = (xt.as_slice::<T>()?, wt.as_slice::<T>()?);
            if !record {
                let r = linear_ce_forward(&xs, &ws, &lab, n, hidden, vocab, opts);
                (r.loss_sum, vec![])
            } else {
                // dx: [n, hidden] (overwritten), dw: [vocab, hidden] (accumulated from 0)
                let mut dx = if need_x { vec![T::default(); n * hidden] } else { vec![] };
                let mut dw = if need_w { vec![T::default(); vocab * hidden] } else { vec![] };
                let r = linear_ce_fwd_bwd(
                    &xs, &ws, &lab, n, hidden, vocab, opts, T::of(factor),
                    need_x.then_some(dx.as_mut_slice()),
                    need_w.then_some(dw.as_mut_slice()),
                );
                let mut saved = Vec::new();
                if need_x {
                    saved.push(from_kernel(dx, xt.shape(), dtype, device)?);
                }
                if need_w {
                    saved.push(from_kernel(dw, wt.shape(), dtype, device)?);
                }
                (r.loss_sum, saved)
            }
        })
    };
    let loss = Tensor::full(loss_sum * factor, &[], loss_dtype, device)?;
    Ok(record1(OP, &[x, w], loss, saved, move |ctx| {
        // The saved grads are d(loss)/d(x, w) already; scale by the upstream scalar.
        let s = ctx.grad(0).to_scalar::<f64>()?;
        let mut saved = ctx.saved_all().iter();
        let gx = if need_x { saved.next().cloned() } else { None };
        let gw = if need_w { saved.next().cloned() } else { None };
        Ok(vec![
            grad_if(ctx.needs(0) && gx.is_some(), || scaled(gx.as_ref(), s))?,
            grad_if(ctx.needs(1) && gw.is_some(), || scaled(gw.as_ref(), s))?,
        ])
    }))
}

/// `g·s`, skipping the multiply for the usual `s = 1`.
fn scaled(g: Option<&Tensor>, s: f64) -> Result<Tensor> {
    let g = g.ok_or_else(|| Error::invalid(OP, "missing saved gradient"))?;
    if s == 1.0 {
        Ok(g.clone())
    } else {
        g.scale(s)
    }
}

/// The checks both fused lm-head ops make: `x: [.., hidden]` and `w: [vocab, hidden]` of one
/// float dtype, one label per row of `x`, every label in `[0, vocab)` or `ignore_index`.
/// Returns `(n, hidden, vocab, labels)`.
pub(super) fn check_inputs(
    op: &'static str,
    xt: &Tensor,
    wt: &Tensor,
    labels: &Tensor,
    opts: &CeOptions,
) -> Result<(usize, usize, usize, Vec<i64>)> {
    if wt.rank() != 2 || xt.rank() == 0 {
        return Err(Error::shape(
            op,
            format!(
                "x {:?} must be [.., hidden] and w {:?} [vocab, hidden]",
                xt.shape(),
                wt.shape()
            ),
        ));
    }
    let (vocab, hidden) = (wt.shape()[0], wt.shape()[1]);
    let n = xt.elem_count() / hidden.max(1);
    if xt.shape()[xt.rank() - 1] != hidden || labels.elem_count() != n || vocab == 0 {
        return Err(Error::shape(
            op,
            format!(
                "x {:?}, w {:?}, labels {:?}: need x [.., {hidden}], one label per row, vocab > 0",
                xt.shape(),
                wt.shape(),
                labels.shape()
            ),
        ));
    }
    if xt.dtype() != wt.dtype() || !xt.dtype().is_float() {
        return Err(Error::dtype(
            op,
            format!("x is {}, w is {}", xt.dtype(), wt.dtype()),
        ));
    }
    let lab: Vec<i64> = labels.to_vec::<i64>()?;
    if let Some((t, y)) = lab
        .iter()
        .enumerate()
        .find(|(_, &y)| y != opts.ignore_index && (y < 0 || y as u64 >= vocab as u64))
    {
        return Err(Error::index(
            op,
            format!("label {y} of token {t} is outside [0, {vocab})"),
        ));
    }
    Ok((n, hidden, vocab, lab))
}
