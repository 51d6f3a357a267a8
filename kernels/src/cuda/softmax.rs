//! Softmax launcher (`kernels/cuda/softmax.cu`): softmax or log-softmax over the last dim of
//! a row-major `x: [rows, n]`, one block per row, in the compute type.

use super::error::{ensure, CudaResult};
use super::gpu::{grid_rows, Gpu};
use super::sources::SOFTMAX;
use super::strided::{entry_for, GpuElem, BLOCK};
use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

/// `y = softmax(x)` (or `log_softmax` when `log`) row by row; `x`, `y`: `[rows, n]`.
pub fn softmax<T: GpuElem>(
    gpu: &Gpu,
    x: &CudaView<T>,
    rows: usize,
    n: usize,
    log: bool,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    ensure(
        x.len() == rows * n && y.len() == rows * n,
        "softmax",
        || format!("x/y hold {}/{}, want {rows}x{n}", x.len(), y.len()),
    )?;
    if rows * n == 0 {
        return Ok(());
    }
    let f = gpu.function(&SOFTMAX, &entry_for::<T>("softmax"))?;
    let (nn, l) = (n as i64, log as i32);
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(&nn).arg(&l);
    unsafe { b.launch(grid_rows(rows, BLOCK, 0)) }?;
    Ok(())
}
