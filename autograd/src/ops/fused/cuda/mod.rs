//! The CUDA branch of every fused op: the same node (inputs, saved tensors, gradients) as the
//! CPU version beside it, with forward and backward run by the `lmf_kernels::cuda` launchers
//! on the tensors' device. Each op file validates its arguments once and branches here for
//! `Device::Cuda` tensors, so both devices share one set of checks and error messages.
//!
//! Storage types: f32, bf16 and f16 (math in fp32 inside the kernels); f64 stays on the CPU.

pub mod attention;
pub mod embedding;
pub mod glu;
pub mod grouped_matmul;
pub mod linear_ce;
pub mod linear_logp;
pub mod lora;
pub mod rmsnorm;
pub mod rope;

use lmf_kernels::cuda::cudarc::driver::{CudaSlice, CudaView};
use lmf_kernels::cuda::Gpu;
use lmf_runtime::{CudaElement, Error, Result, Tensor};
use std::sync::Arc;

/// Runs `$body` with `$T` = the CUDA storage type of `$dtype` (f32, bf16, f16); any other
/// dtype returns a dtype error naming `$op`.
macro_rules! with_gpu_float {
    ($dtype:expr, $op:expr, $T:ident => $body:expr) => {
        match $dtype {
            lmf_runtime::DType::F32 => {
                type $T = f32;
                $body
            }
            lmf_runtime::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            lmf_runtime::DType::F16 => {
                type $T = half::f16;
                $body
            }
            other => {
                return Err(lmf_runtime::Error::dtype(
                    $op,
                    format!("{other} is not a CUDA float type (f32, bf16, f16)"),
                ))
            }
        }
    };
}
pub(crate) use with_gpu_float;

/// A contiguous copy of `t` (itself when already contiguous): kernels read row-major data.
pub(crate) fn dense(t: &Tensor) -> Result<Tensor> {
    t.contiguous()
}

/// The device of a CUDA tensor and its row-major elements (`t` must be contiguous).
pub(crate) fn view<T: CudaElement>(t: &Tensor) -> Result<CudaView<'_, T>> {
    Ok(t.cuda_slice::<T>()?.1)
}

/// The `Gpu` a CUDA tensor lives on.
pub(crate) fn gpu_of(t: &Tensor) -> Result<Arc<Gpu>> {
    t.cuda_slice_gpu()
}

/// `n` zeroed elements on `gpu` (outputs the kernels accumulate into).
pub(crate) fn zeros<T: CudaElement + lmf_kernels::cuda::cudarc::driver::ValidAsZeroBits>(
    gpu: &Gpu,
    n: usize,
) -> Result<CudaSlice<T>> {
    gpu.zeros::<T>(n.max(1)).map_err(Error::from)
}

/// `n` elements on `gpu` that the next kernel overwrites entirely.
pub(crate) fn uninit<T: CudaElement>(gpu: &Gpu, n: usize) -> Result<CudaSlice<T>> {
    // SAFETY: every caller passes the buffer to a kernel that writes all `n` elements.
    unsafe { gpu.alloc::<T>(n.max(1)) }.map_err(Error::from)
}

/// The int64 labels on `x`'s device for the fused lm-head ops. They usually arrive there
/// already (the trainer puts them there): reuse them; upload the host copy `lab` only when they
/// live elsewhere or are not int64.
pub(crate) fn device_labels(labels: &Tensor, lab: &[i64], x: &Tensor) -> Result<Tensor> {
    if labels.device() == x.device() && labels.dtype() == lmf_runtime::DType::I64 {
        dense(labels)
    } else {
        Tensor::from_slice(lab, &[lab.len()], x.device())
    }
}

/// A tensor of `shape` owning `buf`.
pub(crate) fn wrap<T: CudaElement>(
    gpu: &Arc<Gpu>,
    buf: CudaSlice<T>,
    shape: &[usize],
) -> Result<Tensor> {
    Tensor::from_cuda(gpu, buf, shape)
}
