//! RMSNorm launchers: the GPU twin of `crate::cpu::rmsnorm` (`kernels/cuda/rmsnorm.cu`).
//! `rstd` is fp32 on the GPU whatever the storage type.

use super::dtype::{entry, GpuFloat};
use super::error::{ensure, CudaResult};
use super::gpu::{grid_1d, grid_rows, Gpu};
use super::sources::RMSNORM;
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

const BLOCK: u32 = 256;

/// Forward: `y, rstd` from `x: [rows, dim]`, `w: [dim]`.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_forward<T: GpuFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &CudaView<T>,
    rows: usize,
    dim: usize,
    eps: f64,
    offset: f64,
    y: &mut CudaViewMut<T>,
    rstd: &mut CudaViewMut<f32>,
) -> CudaResult<()> {
    ensure(
        x.len() == rows * dim && y.len() == rows * dim,
        "rmsnorm",
        || {
            format!(
                "x/y hold {}/{} elements, want {rows}x{dim}",
                x.len(),
                y.len()
            )
        },
    )?;
    ensure(w.len() == dim && rstd.len() == rows, "rmsnorm", || {
        format!("w/rstd hold {}/{}, want {dim}/{rows}", w.len(), rstd.len())
    })?;
    if rows == 0 {
        return Ok(());
    }
    let f = gpu.function(&RMSNORM, &entry::<T>("rmsnorm_fwd"))?;
    let (r, d, e, o) = (rows as i32, dim as i32, eps as f32, offset as f32);
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(x)
        .arg(w)
        .arg(y)
        .arg(rstd)
        .arg(&r)
        .arg(&d)
        .arg(&e)
        .arg(&o);
    unsafe { b.launch(grid_rows(rows, BLOCK, 0)) }?;
    Ok(())
}

/// Backward: writes `dx` and ACCUMULATES `dw` (`+=`), using the forward's `rstd`.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward<T: GpuFloat>(
    gpu: &Gpu,
    dy: &CudaView<T>,
    x: &CudaView<T>,
    w: &CudaView<T>,
    rstd: &CudaView<f32>,
    rows: usize,
    dim: usize,
    offset: f64,
    dx: &mut CudaViewMut<T>,
    dw: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let n = rows * dim;
    ensure(
        x.len() == n && dy.len() == n && dx.len() == n,
        "rmsnorm_backward",
        || {
            format!(
                "x/dy/dx hold {}/{}/{}, want {rows}x{dim}",
                x.len(),
                dy.len(),
                dx.len()
            )
        },
    )?;
    ensure(
        w.len() == dim && dw.len() == dim && rstd.len() == rows,
        "rmsnorm_backward",
        || format!("w/dw/rstd hold {}/{}/{}", w.len(), dw.len(), rstd.len()),
    )?;
    if rows == 0 || dim == 0 {
        return Ok(());
    }
    let (r, d, o) = (rows as i32, dim as i32, offset as f32);
    let f = gpu.function(&RMSNORM, &entry::<T>("rmsnorm_bwd_dx"))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(dy)
        .arg(x)
        .arg(w)
        .arg(rstd)
        .arg(dx)
        .arg(&r)
        .arg(&d)
        .arg(&o);
    unsafe { b.launch(grid_rows(rows, BLOCK, 0)) }?;

    // dw: G row groups, fixed from `rows` alone so the sum order never depends on the device.
    let groups = rows.min(256);
    let mut partial = unsafe { gpu.alloc::<f32>(groups * dim) }?;
    let f = gpu.function(&RMSNORM, &entry::<T>("rmsnorm_bwd_dw_partial"))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(dy).arg(x).arg(rstd).arg(&mut partial).arg(&r).arg(&d);
    let cfg = LaunchConfig {
        grid_dim: (groups as u32, dim.div_ceil(BLOCK as usize) as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { b.launch(cfg) }?;
    let g = groups as i32;
    let f = gpu.function(&RMSNORM, &entry::<T>("rmsnorm_bwd_dw_reduce"))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(&partial).arg(dw).arg(&g).arg(&d);
    unsafe { b.launch(grid_1d(dim, BLOCK)) }?;
    Ok(())
}
