//! Strided copy with dtype conversion (`kernels/cuda/cast.cu`): the GPU twin of the runtime's
//! gather + `cast` (`contiguous()`, `to_dtype()`, and the slabs of `cat`).

use super::elementwise::check_view;
use super::error::CudaResult;
use super::gpu::Gpu;
use super::sources::CAST;
use super::strided::{grid_stride, GpuElem, Strided};
use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

/// `y[ys(i)] = cast(x[xs(i)])` for every row-major element `i` of the common shape: through
/// f32 when both types compute in f32, else through f64; integers truncate and saturate.
pub fn cast<S: GpuElem, D: GpuElem>(
    gpu: &Gpu,
    x: &CudaView<S>,
    xs: &Strided,
    y: &mut CudaViewMut<D>,
    ys: &Strided,
) -> CudaResult<()> {
    let n = ys.elem_count();
    check_view("cast", "x", x.len(), xs, n)?;
    check_view("cast", "y", y.len(), ys, n)?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.function(&CAST, &format!("cast_{}_{}", S::SUFFIX, D::SUFFIX))?;
    let nn = n as i64;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(x).arg(xs).arg(y).arg(ys).arg(&nn);
    unsafe { b.launch(grid_stride(n)) }?;
    Ok(())
}
