//! Index launchers (`kernels/cuda/index.cu`) on tensors seen as `[outer, size, inner]`
//! around the indexed dim; ids are i64 and must already lie in `0..size` (the runtime checks
//! them). `index_select` gathers rows; `index_add` scatter-adds rows in id order (no atomics).

use super::error::{ensure, CudaResult};
use super::gpu::Gpu;
use super::sources::INDEX;
use super::strided::{entry_for, grid_stride, GpuElem};
use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

/// `y[o, j, c] = x[o, ids[j], c]`; `x: [outer, size, inner]`, `y: [outer, ids, inner]`.
#[allow(clippy::too_many_arguments)]
pub fn index_select<T: GpuElem>(
    gpu: &Gpu,
    x: &CudaView<T>,
    ids: &CudaView<i64>,
    outer: usize,
    size: usize,
    inner: usize,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let n = ids.len();
    ensure(
        x.len() == outer * size * inner && y.len() == outer * n * inner,
        "index_select",
        || {
            format!(
                "x/y hold {}/{}, want [{outer}, {size}, {inner}] -> [{outer}, {n}, {inner}]",
                x.len(),
                y.len()
            )
        },
    )?;
    let total = outer * n * inner;
    if total == 0 {
        return Ok(());
    }
    let f = gpu.function(&INDEX, &entry_for::<T>("index_select"))?;
    let (o, s, k, i) = (outer as i64, size as i64, n as i64, inner as i64);
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(x).arg(ids).arg(y).arg(&o).arg(&s).arg(&k).arg(&i);
    unsafe { b.launch(grid_stride(total)) }?;
    Ok(())
}

/// `acc[o, ids[j], c] += src[o, j, c]` for `j` in order; `acc: [outer, size, inner]` is f32
/// or f64 (the compute type: the runtime converts other dtypes around the call).
#[allow(clippy::too_many_arguments)]
pub fn index_add<C: GpuElem>(
    gpu: &Gpu,
    acc: &mut CudaViewMut<C>,
    ids: &CudaView<i64>,
    src: &CudaView<C>,
    outer: usize,
    size: usize,
    inner: usize,
) -> CudaResult<()> {
    let n = ids.len();
    ensure(
        C::SUFFIX == "f32" || C::SUFFIX == "f64",
        "index_add",
        || format!("accumulates in f32 or f64, not {}", C::SUFFIX),
    )?;
    ensure(
        acc.len() == outer * size * inner && src.len() == outer * n * inner,
        "index_add",
        || {
            format!(
                "acc/src hold {}/{}, want [{outer}, {size}, {inner}] and [{outer}, {n}, {inner}]",
                acc.len(),
                src.len()
            )
        },
    )?;
    if outer * inner * n == 0 {
        return Ok(());
    }
    let f = gpu.function(&INDEX, &entry_for::<C>("index_add"))?;
    let (o, s, k, i) = (outer as i64, size as i64, n as i64, inner as i64);
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(acc).arg(ids).arg(src).arg(&o).arg(&s).arg(&k).arg(&i);
    unsafe { b.launch(grid_stride(outer * inner)) }?;
    Ok(())
}
