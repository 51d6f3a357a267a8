//! The CUDA backend of the kernels: sources compiled by NVRTC at run time, their launchers,
//! and the device handle they run on. Everything here builds without CUDA installed; the
//! driver and NVRTC are found at run time (cudarc's dynamic loading), and a machine without
//! them gets an `Err`, never a panic.
//!
//! Each launcher is the GPU twin of the CPU kernel of the same name in `crate::cpu`, with the
//! same algorithm and argument order; `kernels/tests/gpu_*.rs` compare the two.

pub mod blas;
pub mod dtype;
pub mod error;
pub mod gpu;
pub mod lt;
pub mod nvrtc;
pub mod sources;
pub mod testing;

pub mod adamw;
pub mod attention;
pub mod attn_sinks;
pub mod cast;
pub mod elementwise;
pub mod embedding;
pub mod glu;
pub mod grouped_gemm;
pub mod index;
pub mod linear_ce;
pub mod linear_logp;
pub mod lora;
pub mod mxfp4;
pub mod quant;
pub mod random;
pub mod reduce;
pub mod rmsnorm;
pub mod rope;
pub mod softmax;
pub mod strided;

pub use blas::{gemm, BlasFloat, GemmSpec};
/// The cudarc version these launchers take views of (for crates above, e.g. the runtime).
pub use cudarc;
pub use dtype::GpuFloat;
pub use error::{CudaError, CudaResult};
pub use gpu::{device_count, driver_available, Gpu};
pub use strided::{GpuElem, Strided};
