//! Reduction launchers (`kernels/cuda/reduce.cu`) over `x: [outer, r, inner]` (row-major)
//! into `y: [outer, inner]`: sum (f64 accumulation, times `scale` for a mean), max, min
//! (NaN propagates) and argmax (first maximum, NaN counts as the maximum). Deterministic.

use super::error::{ensure, CudaResult};
use super::gpu::{grid_rows, Gpu};
use super::sources::REDUCE;
use super::strided::{entry_for, grid_stride, GpuElem, BLOCK};
use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

/// What a reduction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Reduce {
    /// Σ, accumulated in f64, then times `scale`.
    Sum = 0,
    /// Maximum (NaN propagates).
    Max = 1,
    /// Minimum (NaN propagates).
    Min = 2,
}

fn check<T, O>(
    op: &'static str,
    x: &CudaView<T>,
    y: &CudaViewMut<O>,
    outer: usize,
    r: usize,
    inner: usize,
) -> CudaResult<()> {
    ensure(
        x.len() == outer * r * inner && y.len() == outer * inner,
        op,
        || {
            format!(
                "x/y hold {}/{} elements, want [{outer}, {r}, {inner}] -> [{outer}, {inner}]",
                x.len(),
                y.len()
            )
        },
    )
}

/// `y[o, i] = reduce_j x[o, j, i]`; `r >= 1` unless `op` is `Sum`.
#[allow(clippy::too_many_arguments)]
pub fn reduce<T: GpuElem>(
    gpu: &Gpu,
    x: &CudaView<T>,
    outer: usize,
    r: usize,
    inner: usize,
    op: Reduce,
    scale: f64,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    check("reduce", x, y, outer, r, inner)?;
    ensure(r > 0 || op == Reduce::Sum, "reduce", || {
        format!("{op:?} over an empty dim")
    })?;
    if outer * inner == 0 {
        return Ok(());
    }
    let code = op as i32;
    let rr = r as i64;
    if inner == 1 {
        let f = gpu.function(&REDUCE, &entry_for::<T>("reduce_rows"))?;
        let mut b = gpu.stream().launch_builder(&f);
        b.arg(x).arg(y).arg(&rr).arg(&code).arg(&scale);
        unsafe { b.launch(grid_rows(outer, BLOCK, 0)) }?;
    } else {
        let f = gpu.function(&REDUCE, &entry_for::<T>("reduce_cols"))?;
        let (o, i) = (outer as i64, inner as i64);
        let mut b = gpu.stream().launch_builder(&f);
        b.arg(x)
            .arg(y)
            .arg(&o)
            .arg(&rr)
            .arg(&i)
            .arg(&code)
            .arg(&scale);
        unsafe { b.launch(grid_stride(outer * inner)) }?;
    }
    Ok(())
}

/// `y[o, i] = argmax_j x[o, j, i]` (i64); `r >= 1`.
pub fn argmax<T: GpuElem>(
    gpu: &Gpu,
    x: &CudaView<T>,
    outer: usize,
    r: usize,
    inner: usize,
    y: &mut CudaViewMut<i64>,
) -> CudaResult<()> {
    check("argmax", x, y, outer, r, inner)?;
    ensure(r > 0, "argmax", || "argmax over an empty dim".into())?;
    if outer * inner == 0 {
        return Ok(());
    }
    let rr = r as i64;
    if inner == 1 {
        let f = gpu.function(&REDUCE, &entry_for::<T>("argmax_rows"))?;
        let mut b = gpu.stream().launch_builder(&f);
        b.arg(x).arg(y).arg(&rr);
        unsafe { b.launch(grid_rows(outer, BLOCK, 0)) }?;
    } else {
        let f = gpu.function(&REDUCE, &entry_for::<T>("argmax_cols"))?;
        let (o, i) = (outer as i64, inner as i64);
        let mut b = gpu.stream().launch_builder(&f);
        b.arg(x).arg(y).arg(&o).arg(&rr).arg(&i);
        unsafe { b.launch(grid_stride(outer * inner)) }?;
    }
    Ok(())
}
