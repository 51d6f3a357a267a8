//! RoPE launchers: the GPU twin of `crate::cpu::rope` (`kernels/cuda/rope.cu`). The cos/sin
//! tables come from [`crate::cpu::rope::rope_tables`] on the host (angles in f64, attention
//! factor folded in), uploaded in the storage type `T` as the CPU uses them; the kernel applies
//! the rotate-half rotation to the first `rotary_dim` dims of every head and copies the tail.
//! The kernel reads each pair before writing it (in-place would be safe), but these launchers
//! take distinct buffers, as the CPU twin does.

use super::dtype::{entry, GpuFloat};
use super::error::{ensure, CudaResult};
use super::gpu::{grid_rows, Gpu};
use super::sources::ROPE;
use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

/// Most threads per block (one block per head row).
const BLOCK: u32 = 256;

/// Shared launcher of the forward (`sign` +1, entry `rope_fwd`) and backward (`rope_bwd`).
#[allow(clippy::too_many_arguments)]
fn launch<T: GpuFloat>(
    gpu: &Gpu,
    name: &'static str,
    x: &CudaView<T>,
    cos: &CudaView<T>,
    sin: &CudaView<T>,
    tokens: usize,
    heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    ensure(
        rotary_dim.is_multiple_of(2) && rotary_dim <= head_dim,
        name,
        || format!("rotary_dim {rotary_dim} must be even and <= head_dim {head_dim}"),
    )?;
    let n = tokens * heads * head_dim;
    let half = rotary_dim / 2;
    ensure(x.len() == n && y.len() == n, name, || {
        format!(
            "x/y hold {}/{} elements, want [tokens {tokens}, heads {heads}, head_dim {head_dim}]",
            x.len(),
            y.len()
        )
    })?;
    ensure(
        cos.len() == tokens * half && sin.len() == tokens * half,
        name,
        || {
            format!(
                "cos/sin hold {}/{} elements, want [tokens {tokens}, rotary_dim/2 {half}]",
                cos.len(),
                sin.len()
            )
        },
    )?;
    let rows = tokens * heads;
    ensure(
        rows <= i32::MAX as usize && head_dim <= i32::MAX as usize,
        name,
        || format!("tokens x heads {rows} / head_dim {head_dim} exceed i32"),
    )?;
    let per_row = head_dim - half;
    if rows == 0 || per_row == 0 {
        return Ok(());
    }
    let f = gpu.function(&ROPE, &entry::<T>(name))?;
    let (t, h, d, r) = (
        tokens as i32,
        heads as i32,
        head_dim as i32,
        rotary_dim as i32,
    );
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(x)
        .arg(cos)
        .arg(sin)
        .arg(y)
        .arg(&t)
        .arg(&h)
        .arg(&d)
        .arg(&r);
    // One block per head row, threads over its half pairs and tail copies.
    let block = (per_row.div_ceil(32) * 32).min(BLOCK as usize) as u32;
    unsafe { b.launch(grid_rows(rows, block, 0)) }?;
    Ok(())
}

/// RoPE forward: `y = rope(x)`; `x, y: [tokens, heads, head_dim]`, `cos, sin:
/// [tokens, rotary_dim/2]` (rows from `cpu::rope::rope_tables`). Overwrites `y`.
#[allow(clippy::too_many_arguments)]
pub fn rope_forward<T: GpuFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    cos: &CudaView<T>,
    sin: &CudaView<T>,
    tokens: usize,
    heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    launch(
        gpu, "rope_fwd", x, cos, sin, tokens, heads, head_dim, rotary_dim, y,
    )
}

/// RoPE backward: `dx = Rᵀ dy` (the forward with `sin` negated); same shapes as
/// [`rope_forward`]. Overwrites `dx`.
#[allow(clippy::too_many_arguments)]
pub fn rope_backward<T: GpuFloat>(
    gpu: &Gpu,
    dy: &CudaView<T>,
    cos: &CudaView<T>,
    sin: &CudaView<T>,
    tokens: usize,
    heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    dx: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    launch(
        gpu, "rope_bwd", dy, cos, sin, tokens, heads, head_dim, rotary_dim, dx,
    )
}
