//! Grouped matmul over frozen MXFP4 experts (`lmf_kernels::cpu::quant::mxfp4`): `x: [M, K]`
//! holds rows sorted by expert, `w: [E, N, K]` the experts' 4-bit weights; rows
//! `offsets[e] .. offsets[e + 1]` of the output `[M, N]` are `x_rows · dequant(W_e)ᵀ`.
//! Backward: only `dx` (per group `dy · dequant(W_e)`); the experts get no gradient.

use super::{from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::quant::{grouped_dequant_matmul, grouped_dequant_matmul_t, Mxfp4Experts};
use lmf_runtime::{Error, Result};
use std::sync::Arc;

const OP: &str = "grouped_quant_matmul";

/// `y[rows_e] = x[rows_e] · dequant(w[e])ᵀ` for each expert `e` on the CPU; `offsets` has
/// `E + 1` entries, from 0 to `M`, non-decreasing. The gradient flows to `x` only.
pub fn grouped_quant_matmul(x: &Var, w: &Arc<Mxfp4Experts>, offsets: &[usize]) -> Result<Var> {
    let xt = x.tensor();
    let xs = xt.shape();
    let (e, n, k) = (w.experts, w.rows, w.cols);
    if xs.len() != 2 || xs[1] != k || !xt.dtype().is_float() {
        return Err(Error::shape(
            OP,
            format!(
                "x {xs:?} {} must be a float [M, {k}] for experts [{e}, {n}, {k}]",
                xt.dtype()
            ),
        ));
    }
    let m = xs[0];
    super::grouped_matmul::check_offsets(OP, offsets, e, m)?;
    if xt.device().is_cuda() {
        return Err(Error::device(
            OP,
            "MXFP4 experts kept 4-bit run on the CPU only for now; set `use_cpu: true` or \
             drop `quantization_bit` to dequantize them",
        ));
    }
    let (dtype, device) = (xt.dtype(), xt.device());
    let offsets: Arc<[usize]> = offsets.into();
    let out = with_real!(dtype, T => {
        let mut y = vec![T::default(); m * n];
        grouped_dequant_matmul(&mut y, &xt.as_slice::<T>()?, w, &offsets);
        from_kernel(y, &[m, n], dtype, device)?
    });
    let w = Arc::clone(w);
    Ok(record1(OP, &[x], out, vec![], move |ctx| {
        let g = ctx.grad(0);
        Ok(vec![grad_if(ctx.needs(0), || {
            with_real!(g.dtype(), T => {
                let mut dx = vec![T::default(); m * k];
                grouped_dequant_matmul_t(&mut dx, &g.as_slice::<T>()?, &w, &offsets);
                from_kernel(dx, &[m, k], g.dtype(), g.device())
            })
        })?])
    }))
}
