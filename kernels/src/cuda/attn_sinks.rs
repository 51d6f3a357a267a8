//! Attention-sink launchers (`kernels/cuda/attn_sinks.cu`), the GPU twin of
//! `crate::cpu::attention::sinks`: fold each head's sink logit into the finished rows of the
//! flash forward, and its gradient. `out`, `dout: [tokens, heads, d]`, `lse: [heads, tokens]`
//! fp32 (as the CUDA flash kernels keep it), `sinks`, `dsink: [heads]`.

use super::dtype::{entry, GpuFloat};
use super::error::{ensure, CudaResult};
use super::gpu::Gpu;
use super::sources::ATTN_SINKS;
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

/// Threads per block (`THREADS` of the kernels): 8 warps.
const THREADS: u32 = 256;

/// `(tokens, heads)` of the call, checked against every buffer.
fn dims(
    what: &'static str,
    out: usize,
    lse: usize,
    heads: usize,
    d: usize,
) -> CudaResult<(usize, usize)> {
    let tokens = lse / heads.max(1);
    ensure(
        heads > 0 && d > 0 && lse == tokens * heads && out == tokens * heads * d,
        what,
        || format!("out {out}, lse {lse} elements for {heads} heads of dim {d}"),
    )?;
    Ok((tokens, heads))
}

/// In place: `lse ← logaddexp(lse, sink_h)`, `out ← out · exp(lse_old − lse_new)`.
pub fn fold_sinks<T: GpuFloat>(
    gpu: &Gpu,
    out: &mut CudaViewMut<T>,
    lse: &mut CudaViewMut<f32>,
    sinks: &CudaView<T>,
    d: usize,
) -> CudaResult<()> {
    let (tokens, heads) = dims("fold_sinks", out.len(), lse.len(), sinks.len(), d)?;
    let rows = tokens * heads;
    if rows == 0 {
        return Ok(());
    }
    let f = gpu.function(&ATTN_SINKS, &entry::<T>("attn_sinks_fold"))?;
    let (h, t, dd) = (heads as i32, tokens as i64, d as i32);
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(out).arg(lse).arg(sinks).arg(&h).arg(&t).arg(&dd);
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(THREADS as usize / 32) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { b.launch(cfg) }?;
    Ok(())
}

/// `dsink_h = −Σ_t exp(sink_h − lse'[h, t]) · rowsum(dout ⊙ out')` (overwrites `dsink`), from
/// the folded `out'` and `lse'`.
pub fn sinks_backward<T: GpuFloat>(
    gpu: &Gpu,
    dout: &CudaView<T>,
    out: &CudaView<T>,
    lse: &CudaView<f32>,
    sinks: &CudaView<T>,
    d: usize,
    dsink: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let (tokens, heads) = dims("sinks_backward", out.len(), lse.len(), sinks.len(), d)?;
    ensure(
        dout.len() == out.len() && dsink.len() == heads,
        "sinks_backward",
        || format!("dout {} / dsink {} elements", dout.len(), dsink.len()),
    )?;
    let f = gpu.function(&ATTN_SINKS, &entry::<T>("attn_sinks_bwd"))?;
    let (h, t, dd) = (heads as i32, tokens as i64, d as i32);
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(dout)
        .arg(out)
        .arg(lse)
        .arg(sinks)
        .arg(dsink)
        .arg(&h)
        .arg(&t)
        .arg(&dd);
    let cfg = LaunchConfig {
        grid_dim: (heads as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { b.launch(cfg) }?;
    Ok(())
}
