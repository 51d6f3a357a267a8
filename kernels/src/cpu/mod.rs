//! CPU kernels: the CPU backend and the reference for every GPU twin.
//!
//! Each module is one kernel (forward + backward) over raw slices and shapes.

pub mod adamw;
pub mod attention;
pub mod bf16_weight;
pub mod embedding;
pub mod gemm;
pub mod gemm_bf16;
mod gemm_skinny;
pub mod grouped_gemm;
pub mod linear_ce;
pub mod linear_logp;
pub mod lora;
pub mod philox;
pub mod quant;
pub mod rmsnorm;
pub mod rope;
pub mod simd;
pub mod swiglu;
