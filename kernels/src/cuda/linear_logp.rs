//! Fused linear + per-token label log-probability launchers: the GPU twin of
//! `crate::cpu::linear_logp`, on the chunk loop of [`super::linear_ce`] (same kernel, same
//! `[chunk, vocab]` buffer). Forward: each token's `−loss` (`logp = z_y − lse`, fp32 per row,
//! 0 for ignored tokens). Backward: the chunk loop again, recomputing the logits, with the
//! per-token scale `−g[t]`.

use super::blas::BlasFloat;
use super::error::{ensure, CudaResult};
use super::gpu::Gpu;
use super::linear_ce::{run, GradScale};
use crate::cpu::linear_ce::CeOptions;
use cudarc::driver::{CudaView, CudaViewMut};

fn check_opts(opts: &CeOptions) -> CudaResult<()> {
    ensure(
        opts.label_smoothing == 0.0 && opts.z_loss == 0.0,
        "linear_logp",
        || "label smoothing and z-loss do not apply to log-probabilities".into(),
    )
}

/// `logp[t] = log softmax(x_t·wᵀ)[labels[t]]` (after the softcap), 0 where the label is
/// `ignore_index`: `[n]` on the host. `x: [n, hidden]`, `w: [vocab, hidden]`, `labels: [n]`.
#[allow(clippy::too_many_arguments)]
pub fn linear_logp_forward<T: BlasFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &CudaView<T>,
    labels: &CudaView<i64>,
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
) -> CudaResult<Vec<f64>> {
    check_opts(opts)?;
    let mut logp = Vec::new();
    run(
        gpu,
        x,
        w,
        labels,
        n,
        hidden,
        vocab,
        opts,
        None,
        None,
        None,
        Some(&mut logp),
    )?;
    logp.iter_mut().for_each(|l| *l = -*l);
    Ok(logp)
}

/// Gradients of `Σ_t g[t]·logp[t]`: `dx: [n, hidden]` overwritten, `dw: [vocab, hidden]`
/// accumulated into. `g: [n]` on the host.
#[allow(clippy::too_many_arguments)]
pub fn linear_logp_backward<T: BlasFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &CudaView<T>,
    labels: &CudaView<i64>,
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
    g: &[f32],
    dx: Option<&mut CudaViewMut<T>>,
    dw: Option<&mut CudaViewMut<T>>,
) -> CudaResult<()> {
    check_opts(opts)?;
    let neg: Vec<f32> = g.iter().map(|&v| -v).collect();
    run(
        gpu,
        x,
        w,
        labels,
        n,
        hidden,
        vocab,
        opts,
        Some(GradScale::PerToken(&neg)),
        dx,
        dw,
        None,
    )?;
    Ok(())
}
