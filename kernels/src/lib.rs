//! lmf kernels: the numerical kernels themselves, on raw slices + shapes (no `Tensor`).
//!
//! `cpu` holds the CPU implementation of every kernel. It is both the CPU backend and the
//! reference that each GPU twin is tested against. The CUDA sources (`cuda/*.cu`) and their
//! launchers land with the CUDA backend issue; every kernel there keeps the algorithm of its
//! CPU twin here.
//!
//! Conventions: row-major, shapes written in comments as `[rows, cols]`; CPU kernels are
//! generic over [`Real`] (f32 for compute, f64 for gradient checks); every forward has its
//! backward beside it.

pub mod cpu;
pub mod cuda;
pub mod real;
pub mod testing;

pub use real::Real;
