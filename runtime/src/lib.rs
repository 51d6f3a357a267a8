//! lmf runtime: `Tensor` (shape, strides, dtype, device), storage, dispatch to kernels, RNG.
//!
//! What lives where (one concept per file):
//! - `dtype`: `DType` and the `Element` trait mapping Rust scalars onto it.
//! - `device`: `Device { Cpu, Cuda(n) }`.
//! - `error`: the `Error` enum; every message names the op and the shapes.
//! - `layout`: shape + strides + offset, view arithmetic, strided offset iteration.
//! - `storage`: typed host buffers (`CpuStorage`) behind `Storage::Cpu`.
//! - `cuda_storage`: typed device buffers (`CudaStorage`) behind `Storage::Cuda`, H2D/D2H.
//! - `cuda_ops`: every op on `Device::Cuda` tensors, through `lmf_kernels::cuda` launchers.
//! - `tensor`: the `Tensor` struct, constructors, accessors, views.
//! - `convert`: `to_vec`, `to_dtype`, `as_slice`, `update` (copy-on-write).
//! - `broadcast`: the strided/broadcast walk behind binary ops.
//! - `elementwise`: unary, scalar, binary (numpy broadcasting), compare, `where_cond`.
//! - `reduce`: sum/mean over dims, max/min/argmax, `sum_to`.
//! - `softmax`: softmax and log-softmax along a dim.
//! - `index`: `index_select` (embedding), `index_add` (its backward), `cat`, `stack`.
//! - `matmul`: batched, broadcasting matmul through the strided CPU gemm (no copies).
//! - `random`: `rand`, `randn`, `dropout_mask` from Philox keyed by (seed, offset).
//! - `malloc`: the allocator policy the `lmf` commands run under (freed buffers stay in the
//!   process).
//!
//! Compute rule: F32/BF16/F16 compute in f32, F64 and the integer types in f64; results keep
//! the input dtype. Contiguous F32/F64 inputs are borrowed, never copied.
//!
//! CUDA: every op runs on `Device::Cuda(n)` tensors too, on the device's one stream, with the
//! same shape rules, dtypes and compute rule (sums accumulate in f64 on both devices). The
//! sync points are the host copies: `to_vec`, `to_scalar`, `as_slice`, `to_device(Cpu)`, and
//! the id range check of `index_select`/`index_add`. Not on CUDA (a clear `Error::Cuda`):
//! f64 and integer `matmul`, and `update` (a host closure; copy to the host and back).

#[macro_use]
mod macros;

mod broadcast;
pub mod convert;
mod cuda_access;
mod cuda_ops;
pub mod cuda_storage;
pub mod device;
pub mod dtype;
pub mod elementwise;
pub mod error;
pub mod index;
pub mod layout;
pub mod malloc;
pub mod matmul;
pub mod random;
pub mod reduce;
pub mod softmax;
pub mod storage;
pub mod tensor;

pub use cuda_storage::{CudaBuf, CudaElement, CudaStorage};
pub use device::Device;
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use layout::{broadcast_shape, Layout};
pub use storage::{CpuStorage, Storage};
pub use tensor::Tensor;
