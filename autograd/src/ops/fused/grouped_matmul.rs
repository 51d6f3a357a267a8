//! Grouped matmul node of mixture-of-experts layers (`lmf_kernels::cpu::grouped_gemm`):
//! `x: [M, K]` holds rows sorted by expert, `w: [E, N, K]` the experts' linear weights;
//! rows `offsets[e] .. offsets[e + 1]` of the output `[M, N]` are `x_rows · W_eᵀ`. Saves `x`
//! and `w`; the backward gives `dx` (per group `dy · W_e`) and `dW` (`dy_eᵀ · x_e`). CUDA
//! tensors run `lmf_kernels::cuda::grouped_gemm` (`cuda::grouped_matmul`).

use super::{check_dtype, from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::grouped_gemm::{
    grouped_gemm_backward_w, grouped_gemm_backward_x, grouped_gemm_forward,
};
use lmf_runtime::{Error, Result};
use std::sync::Arc;

const OP: &str = "grouped_matmul";

/// Checks that `offsets` partitions `m` rows into `e` groups: `E + 1` entries from 0 to `m`,
/// never decreasing (`op` names the caller in the error).
pub(crate) fn check_offsets(op: &'static str, offsets: &[usize], e: usize, m: usize) -> Result<()> {
    if offsets.len() != e + 1
        || offsets[0] != 0
        || offsets[e] != m
        || offsets.windows(2).any(|p| p[0] > p[1])
    {
        return Err(Error::shape(
            op,
            format!(
                "offsets must run 0..={m} in {} steps, got {offsets:?}",
                e + 1
            ),
        ));
    }
    Ok(())
}

/// `y[rows_e] = x[rows_e] · w[e]ᵀ` for each expert `e`; `offsets` has `E + 1` entries, from
/// 0 to `M`, non-decreasing.
pub fn grouped_matmul(x: &Var, w: &Var, offsets: &[usize]) -> Result<Var> {
    let (xt, wt) = (x.tensor(), w.tensor());
    let (xs, ws) = (xt.shape(), wt.shape());
    if xs.len() != 2 || ws.len() != 3 {
        return Err(Error::shape(
            OP,
            format!("x must be [M, K] and w [E, N, K], got {xs:?} and {ws:?}"),
        ));
    }
    let (m, k) = (xs[0], xs[1]);
    let (e, n) = (ws[0], ws[1]);
    if ws[2] != k {
        return Err(Error::shape(
            OP,
            format!("x {xs:?} and w {ws:?} disagree on K"),
        ));
    }
    check_offsets(OP, offsets, e, m)?;
    let dtype = xt.dtype();
    check_dtype(OP, "x", xt, dtype)?;
    check_dtype(OP, "w", wt, dtype)?;
    let offsets: Arc<[usize]> = offsets.into();
    if xt.device().is_cuda() {
        return super::cuda::grouped_matmul::grouped_matmul(x, w, offsets);
    }
    let out = with_real!(dtype, T => {
        let mut y = vec![T::default(); m * n];
        grouped_gemm_forward(&mut y, &xt.as_slice::<T>()?, &wt.as_slice::<T>()?, &offsets, (n, k));
        from_kernel(y, &[m, n], dtype, xt.device())?
    });
    let saved = vec![xt.clone(), wt.clone()];
    Ok(record1(OP, &[x, w], out, saved, move |ctx| {
        let (g, x, w) = (ctx.grad(0), ctx.saved(0), ctx.saved(1));
        let (dt, dev) = (x.dtype(), x.device());
        let dx = grad_if(ctx.needs(0), || {
            with_real!(dt, T => {
                let mut dx = vec![T::default(); m * k];
                grouped_gemm_backward_x(&mut dx, &g.as_slice::<T>()?, &w.as_slice::<T>()?, &offsets, (n, k));
                from_kernel(dx, &[m, k], dt, dev)
            })
        })?;
        let dw = grad_if(ctx.needs(1), || {
            with_real!(dt, T => {
                let mut dw = vec![T::default(); e * n * k];
                grouped_gemm_backward_w(&mut dw, &g.as_slice::<T>()?, &x.as_slice::<T>()?, &offsets, (n, k));
                from_kernel(dw, &[e, n, k], dt, dev)
            })
        })?;
        Ok(vec![dx, dw])
    }))
}
