//! Kernel-level fused ops: each is ONE node whose forward and backward are the hand-written
//! CPU kernels of `lmf_kernels::cpu`. F64 tensors run the f64 kernels (for gradient checks);
//! every other float dtype runs the f32 kernels and converts back.

pub mod attention;
mod cuda;
pub mod embedding;
pub mod grouped_matmul;
pub mod grouped_quant_matmul;
pub mod linear_ce;
pub mod linear_logp;
pub mod lora;
pub mod quant_linear;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;

pub use attention::{attention, attention_with_sinks, AttnParams};
pub use embedding::embedding;
pub use grouped_matmul::grouped_matmul;
pub use grouped_quant_matmul::grouped_quant_matmul;
pub use linear_ce::{linear_cross_entropy, CeOptions, CeReduction};
pub use linear_logp::linear_logprobs;
pub use lmf_kernels::cpu::attention::fold_sinks;
pub use lora::{lora_linear, LoraDropout};
pub use quant_linear::{quant_linear, QuantBase};
pub use rmsnorm::rmsnorm;
pub use rope::{rope, rope_cos_sin, RopeConfig, RopeScaling};
pub use swiglu::{geglu, glu, glu_matmul, swiglu, GluActivation};

use lmf_runtime::{DType, Device, Element, Result, Tensor};

/// Runs `$body` with `$T` = f64 for F64 tensors, f32 otherwise.
macro_rules! with_real {
    ($dtype:expr, $T:ident => $body:expr) => {
        if $dtype == lmf_runtime::DType::F64 {
            type $T = f64;
            $body
        } else {
            type $T = f32;
            $body
        }
    };
}
pub(crate) use with_real;

/// A kernel result `data` (computed in `T`) as a tensor of `shape` in `dtype`.
pub(crate) fn from_kernel<T: Element>(
    data: Vec<T>,
    shape: &[usize],
    dtype: DType,
    device: Device,
) -> Result<Tensor> {
    Tensor::from_vec(data, shape, device)?.to_dtype(dtype)
}

/// Checks that `t` is a float tensor of `dtype`, naming `op` and `what` otherwise.
pub(crate) fn check_dtype(op: &'static str, what: &str, t: &Tensor, dtype: DType) -> Result<()> {
    if t.dtype() != dtype || !dtype.is_float() {
        return Err(lmf_runtime::Error::dtype(
            op,
            format!(
                "{what} is {} but must be the float dtype {}",
                t.dtype().name(),
                dtype.name()
            ),
        ));
    }
    Ok(())
}

/// Checks that `t` has exactly `shape`.
pub(crate) fn check_shape(op: &'static str, what: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if t.shape() != shape {
        return Err(lmf_runtime::Error::shape(
            op,
            format!("{what} has shape {:?}, expected {shape:?}", t.shape()),
        ));
    }
    Ok(())
}
