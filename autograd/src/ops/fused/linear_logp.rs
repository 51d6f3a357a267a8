//! Fused linear + per-token label log-probability node (`lmf_kernels::cpu::linear_logp`):
//! `logp[t] = log softmax(x_t·wᵀ)[y_t]` for every row of `x`, without the `[tokens, vocab]`
//! logits. The sequence log-probs of preference losses (DPO, ORPO, SimPO, KTO) are sums of
//! these. Unlike the fused cross-entropy, the loss downstream is not known in the forward, so
//! the node saves `x` and `w` (already held by the caller) and its backward recomputes each
//! chunk's logits with the upstream per-token gradient.

use super::linear_ce::check_inputs;
use super::{from_kernel, with_real};
use crate::tape::{grad_if, record1, will_record};
use crate::var::Var;
use lmf_kernels::cpu::linear_logp::{
    linear_logp_backward, linear_logp_forward, linear_logp_forward_dir,
};
use lmf_runtime::{DType, Error, Result, Tensor};

pub use lmf_kernels::cpu::linear_ce::CeOptions;

const OP: &str = "linear_logprobs";

/// `logp: [n]`, one per row of `x: [.., hidden]` (`w: [vocab, hidden]`, `labels: [..]`, one
/// per row), 0 where the label is `opts.ignore_index`. F64 for F64 inputs, F32 otherwise.
/// `opts.label_smoothing` and `opts.z_loss` must be 0; the softcap applies.
pub fn linear_logprobs(x: &Var, w: &Var, labels: &Tensor, opts: &CeOptions) -> Result<Var> {
    if opts.label_smoothing != 0.0 || opts.z_loss != 0.0 {
        return Err(Error::invalid(
            OP,
            "label smoothing and z-loss do not apply to log-probabilities",
        ));
    }
    let (xt, wt) = (x.tensor(), w.tensor());
    let (n, hidden, vocab, lab) = check_inputs(OP, xt, wt, labels, opts)?;
    let (dtype, device) = (xt.dtype(), xt.device());
    if device.is_cuda() {
        return super::cuda::linear_logp::linear_logprobs(
            x,
            w,
            labels,
            &lab,
            (n, hidden, vocab),
            opts,
        );
    }
    let out_dtype = if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    if will_record(&[x]) && !w.requires_grad() {
        return with_direction(x, w, &lab, (n, hidden, vocab), opts, out_dtype);
    }
    let mut logp = vec![0.0f64; n];
    with_real!(dtype, T => {
        linear_logp_forward(&xt.as_slice::<T>()?, &wt.as_slice::<T>()?, &lab, n, hidden, vocab, opts, &mut logp);
    });
    let out = Tensor::from_vec(logp, &[n], device)?.to_dtype(out_dtype)?;
    let opts = *opts;
    let saved = vec![xt.clone(), wt.clone()];
    Ok(record1(OP, &[x, w], out, saved, move |ctx| {
        let (g, x, w) = (ctx.grad(0), ctx.saved(0), ctx.saved(1));
        let (need_x, need_w) = (ctx.needs(0), ctx.needs(1));
        let (dx, dw) = with_real!(x.dtype(), T => {
            let g = g.as_slice::<T>()?;
            // dx: [n, hidden] (overwritten), dw: [vocab, hidden] (accumulated from 0)
            let mut dx = if need_x { vec![T::default(); n * hidden] } else { vec![] };
            let mut dw = if need_w { vec![T::default(); vocab * hidden] } else { vec![] };
            linear_logp_backward(
                &x.as_slice::<T>()?, &w.as_slice::<T>()?, &lab, n, hidden, vocab, &opts, &g,
                need_x.then_some(dx.as_mut_slice()), need_w.then_some(dw.as_mut_slice()),
            );
            (
                grad_if(need_x, || from_kernel(dx, x.shape(), x.dtype(), x.device()))?,
                grad_if(need_w, || from_kernel(dw, w.shape(), w.dtype(), w.device()))?,
            )
        });
        Ok(vec![dx, dw])
    }))
}

/// Frozen `w` (LoRA, a frozen tied embedding): the forward also writes each token's
/// `∂logp_t/∂x_t` (`linear_logp_forward_dir`), so the backward only scales it by the upstream
/// gradient instead of recomputing the logits. Saves `dir` (x's shape: `[.., hidden]`).
fn with_direction(
    x: &Var,
    w: &Var,
    lab: &[i64],
    (n, hidden, vocab): (usize, usize, usize),
    opts: &CeOptions,
    out_dtype: DType,
) -> Result<Var> {
    let (xt, wt) = (x.tensor(), w.tensor());
    let (dtype, device) = (xt.dtype(), xt.device());
    let mut logp = vec![0.0f64; n];
    let dir = with_real!(dtype, T => {
        let mut dir = vec![T::default(); n * hidden];
        linear_logp_forward_dir(
            &xt.as_slice::<T>()?, &wt.as_slice::<T>()?, lab, n, hidden, vocab, opts, &mut logp,
            &mut dir,
        );
        from_kernel(dir, xt.shape(), dtype, device)?
    });
    let out = Tensor::from_vec(logp, &[n], device)?.to_dtype(out_dtype)?;
    Ok(record1(OP, &[x, w], out, vec![dir], move |ctx| {
        let (g, dir) = (ctx.grad(0), ctx.saved(0));
        // dx[t] = g[t] · dir[t]: [n, hidden]
        let dx = with_real!(dir.dtype(), T => {
            let g = g.as_slice::<T>()?;
            let d = dir.as_slice::<T>()?;
            let dx: Vec<T> = d
                .chunks(hidden)
                .zip(g.iter())
                .flat_map(|(row, &gt)| row.iter().map(move |&e| gt * e))
                .collect();
            from_kernel(dx, dir.shape(), dir.dtype(), dir.device())?
        });
        Ok(vec![Some(dx), None])
    }))
}
