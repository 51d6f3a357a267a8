//! GLU (SwiGLU / GeGLU) launchers: the GPU twin of `crate::cpu::swiglu`
//! (`kernels/cuda/glu.cu`), elementwise over flattened `[n]` buffers, fp32 math inside.

use super::dtype::{entry, GpuFloat};
use super::error::{ensure, CudaResult};
use super::gpu::{grid_1d, Gpu};
use super::sources::GLU;
use crate::cpu::swiglu::GluActivation;
use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

const BLOCK: u32 = 256;
/// Grid-stride cap: enough blocks to fill any current GPU many times over.
const MAX_BLOCKS: usize = 1 << 16;

/// The kernel-name stem of `act` (`glu_silu`, `glu_gelu_tanh`).
fn stem(act: GluActivation) -> &'static str {
    match act {
        GluActivation::Silu => "glu_silu",
        GluActivation::GeluTanh => "glu_gelu_tanh",
    }
}

/// GLU forward: `out[i] = act(gate[i]) · up[i]`, all `[n]`. Overwrites `out`.
pub fn glu_forward<T: GpuFloat>(
    gpu: &Gpu,
    act: GluActivation,
    gate: &CudaView<T>,
    up: &CudaView<T>,
    out: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let n = gate.len();
    ensure(up.len() == n && out.len() == n, "glu_forward", || {
        format!("gate/up/out hold {n}/{}/{} elements", up.len(), out.len())
    })?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.function(&GLU, &entry::<T>(&format!("{}_fwd", stem(act))))?;
    let n64 = n as u64;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(gate).arg(up).arg(out).arg(&n64);
    unsafe { b.launch(grid_1d(n.min(BLOCK as usize * MAX_BLOCKS), BLOCK)) }?;
    Ok(())
}

/// GLU backward: from `dout: [n]` writes `dgate = dout · up · act'(gate)` and
/// `dup = dout · act(gate)` (overwritten, not accumulated, as the CPU twin).
pub fn glu_backward<T: GpuFloat>(
    gpu: &Gpu,
    act: GluActivation,
    dout: &CudaView<T>,
    gate: &CudaView<T>,
    up: &CudaView<T>,
    dgate: &mut CudaViewMut<T>,
    dup: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let n = gate.len();
    ensure(
        up.len() == n && dout.len() == n && dgate.len() == n && dup.len() == n,
        "glu_backward",
        || {
            format!(
                "dout/gate/up/dgate/dup hold {}/{n}/{}/{}/{} elements",
                dout.len(),
                up.len(),
                dgate.len(),
                dup.len()
            )
        },
    )?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.function(&GLU, &entry::<T>(&format!("{}_bwd", stem(act))))?;
    let n64 = n as u64;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(dout).arg(gate).arg(up).arg(dgate).arg(dup).arg(&n64);
    unsafe { b.launch(grid_1d(n.min(BLOCK as usize * MAX_BLOCKS), BLOCK)) }?;
    Ok(())
}
