//! The frozen quantized base of a QLoRA linear: `y = x · dequant(W)ᵀ`, `W: [out, in]` held
//! 4-bit (NF4/FP4, bitsandbytes' blockwise layout) or 8-bit (LLM.int8 rows) on the host.
//!
//! Forward (`lmf_kernels::cpu::quant`): tiles of W are dequantized into a small buffer and fed
//! to the gemm (one row at a time is a dequantizing GEMV), so the whole W never exists in f32.
//! In eval mode an 8-bit weight runs bitsandbytes' LLM.int8 product instead (activations
//! quantized too, outlier columns apart), as `Linear8bitLt` does outside training.
//! Backward: only `dx = dy · dequant(W)` through the same tiles; the base gets no gradient.

use super::{from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::bf16_weight::Bf16Weight;
use lmf_kernels::cpu::quant::{
    dequant_matmul, dequant_matmul_t, llm_int8_matmul, GroupQuant, Int8Rows, Quant4,
};
use lmf_runtime::{Error, Result};
use std::sync::Arc;

const OP: &str = "quant_linear";

/// A frozen quantized weight `[out, in]`.
#[derive(Clone, Debug, PartialEq)]
pub enum QuantBase {
    /// bitsandbytes 4-bit (`Linear4bit`).
    Four(Quant4),
    /// bitsandbytes LLM.int8 (`Linear8bitLt`) with its outlier threshold.
    Int8 {
        /// Row-wise int8 codes and absmax.
        rows: Int8Rows,
        /// `llm_int8_threshold` (6.0 by default): activations at least this large are
        /// computed apart in eval mode.
        threshold: f32,
    },
    /// Group-wise integer codes with scales and zero points (GPTQ, AWQ checkpoints).
    Group(GroupQuant),
    /// A dense weight kept in bf16 (`infer_dtype: bfloat16` inference on the CPU): the
    /// products round the activations to bf16 too, as a bf16 `nn.Linear` does.
    Bf16(Bf16Weight),
}

impl QuantBase {
    /// `(out, in)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            QuantBase::Four(q) => (q.shape[0], q.shape[1]),
            QuantBase::Int8 { rows, .. } => (rows.rows, rows.cols),
            QuantBase::Group(g) => (g.rows, g.cols),
            QuantBase::Bf16(w) => (w.rows, w.cols),
        }
    }

    /// Whether this is a dense bf16 weight rather than a quantized one.
    pub fn is_bf16(&self) -> bool {
        matches!(self, QuantBase::Bf16(_))
    }

    /// Bytes the quantized weight takes (codes and scales).
    pub fn bytes(&self) -> usize {
        match self {
            QuantBase::Four(q) => q.packed.len() + 4 * q.absmax.len(),
            QuantBase::Int8 { rows, .. } => rows.q.len() + 4 * rows.absmax.len(),
            QuantBase::Group(g) => (g.q.len() * g.bits as usize).div_ceil(8) + 5 * g.scales.len(),
            QuantBase::Bf16(w) => w.bytes(),
        }
    }

    /// The whole weight dequantized, `[out, in]` f32 (for DoRA's norm and merging checks).
    pub fn dequantize(&self) -> Vec<f32> {
        match self {
            QuantBase::Four(q) => lmf_kernels::cpu::quant::dequantize_4bit(q),
            QuantBase::Int8 { rows, .. } => lmf_kernels::cpu::quant::dequantize_int8_rows(rows),
            QuantBase::Group(g) => g.dequantize(),
            QuantBase::Bf16(w) => w.data.iter().map(|v| v.to_f32()).collect(),
        }
    }
}

/// `x · dequant(W)ᵀ` for `x: [n, in]` on the CPU; `llm_int8` picks the LLM.int8 product for an
/// 8-bit weight (bnb's eval mode). The gradient flows to `x` only.
// `with_real!` instantiates the body for f32 and f64: the casts are needed for f64 only.
#[allow(clippy::unnecessary_cast)]
pub fn quant_linear(x: &Var, w: &Arc<QuantBase>, llm_int8: bool) -> Result<Var> {
    let xt = x.tensor();
    let (out_f, in_f) = w.dims();
    if xt.rank() != 2 || xt.shape()[1] != in_f || !xt.dtype().is_float() {
        return Err(Error::shape(
            OP,
            format!(
                "x {:?} {} must be a float [n, {in_f}]",
                xt.shape(),
                xt.dtype()
            ),
        ));
    }
    if xt.device().is_cuda() {
        return Err(Error::device(
            OP,
            "quantized (QLoRA) layers run on the CPU only for now; set `use_cpu: true` or \
             train without `quantization_bit`",
        ));
    }
    let n = xt.shape()[0];
    let (dtype, device) = (xt.dtype(), xt.device());
    let out = with_real!(dtype, T => {
        let xs = xt.as_slice::<T>()?;
        let mut y = vec![T::default(); n * out_f];
        match &**w {
            QuantBase::Four(q) => dequant_matmul(&xs, q, n, &mut y),
            QuantBase::Int8 { rows, threshold } => {
                if llm_int8 {
                    let x32: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
                    let mut y32 = vec![0f32; n * out_f];
                    llm_int8_matmul(&x32, n, rows, None, *threshold, &mut y32);
                    y.iter_mut().zip(&y32).for_each(|(o, &v)| *o = v as T);
                } else {
                    dequant_matmul(&xs, rows, n, &mut y)
                }
            }
            QuantBase::Group(g) => dequant_matmul(&xs, g, n, &mut y),
            QuantBase::Bf16(w) => w.matmul_real(&xs, n, &mut y),
        }
        from_kernel(y, &[n, out_f], dtype, device)?
    });
    let w = Arc::clone(w);
    Ok(record1(OP, &[x], out, vec![], move |ctx| {
        let g = ctx.grad(0);
        Ok(vec![grad_if(ctx.needs(0), || {
            with_real!(g.dtype(), T => {
                let gs = g.as_slice::<T>()?;
                let n = g.shape()[0];
                let mut dx = vec![T::default(); n * in_f];
                match &*w {
                    QuantBase::Four(q) => dequant_matmul_t(&gs, q, n, &mut dx),
                    QuantBase::Int8 { rows, .. } => dequant_matmul_t(&gs, rows, n, &mut dx),
                    QuantBase::Group(q) => dequant_matmul_t(&gs, q, n, &mut dx),
                    QuantBase::Bf16(q) => dequant_matmul_t(&gs, q, n, &mut dx),
                }
                from_kernel(dx, &[n, in_f], g.dtype(), g.device())
            })
        })?])
    }))
}
