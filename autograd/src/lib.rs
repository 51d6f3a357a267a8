//! lmf autograd: `Var`, the tape, `backward`, `no_grad`, `detach` and gradient checkpointing.
//!
//! What lives where (one concept per file):
//! - `var`: `Var` (tensor + identity + link to its node), `param`/`constant`/`detach`.
//! - `tape`: `Node` (saved tensors + backward), `record`/`record1` for ops, `tape_stats`.
//! - `backward`: the reverse-topological engine, `Grads`, `backward`/`backward_with`.
//! - `grad_mode`: the thread-local recording switch (`no_grad`, `is_grad_enabled`).
//! - `checkpoint`: one node that recomputes a function in backward instead of saving it.
//! - `rng`: the thread-local Philox cursor that random ops draw from (checkpoint rewinds it).
//! - `ops`: the differentiable ops, by family; `ops::fused` the kernel-level fused nodes
//!   (rmsnorm, rope, swiglu/geglu, embedding, attention, linear_cross_entropy, lora_linear).
//! - `gradcheck`: finite-difference gradient checks of any `Var` function (f64).
//!
//! Ops are methods on `Var` (`a.matmul(&b)?`), fused ops free functions in `ops::fused`.

pub mod backward;
pub mod checkpoint;
pub mod grad_mode;
pub mod gradcheck;
pub mod ops;
pub mod rng;
pub mod tape;
pub mod var;

pub use backward::{backward_multi, Grads};
pub use checkpoint::checkpoint;
pub use grad_mode::{enable_grad, is_grad_enabled, no_grad, set_grad_enabled, with_grad_mode};
pub use lmf_runtime::{DType, Device, Error, Result, Tensor};
pub use tape::{grad_if, record, record1, tape_stats, will_record, BackwardCtx, TapeStats};
pub use var::Var;
