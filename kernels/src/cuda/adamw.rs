//! Fused AdamW launchers: the GPU twin of `crate::cpu::adamw` (`kernels/cuda/adamw.cu`).
//! fp32 master `param`, `m`, `v` updated in place; `grad` in f32/bf16/f16. The step scalars
//! come from [`AdamWParams::scalars`], the CPU's own, and the element update avoids fused
//! multiply-adds, so the result is bit-identical to `cpu::adamw::adamw_step` (and
//! `adamw_step_with_copy`).

use super::dtype::GpuFloat;
use super::error::{ensure, CudaResult};
use super::gpu::{grid_1d, Gpu};
use super::sources::ADAMW;
use crate::cpu::adamw::AdamWParams;
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

const BLOCK: u32 = 256;
/// Grid-stride cap: enough blocks to fill any current GPU many times over.
const MAX_BLOCKS: usize = 1 << 16;

/// Checks lengths and the step; returns `n`.
fn check<G: GpuFloat>(
    op: &'static str,
    param: &CudaViewMut<f32>,
    grad: &CudaView<G>,
    m: &CudaViewMut<f32>,
    v: &CudaViewMut<f32>,
    p: &AdamWParams,
) -> CudaResult<usize> {
    let n = param.len();
    ensure(grad.len() == n && m.len() == n && v.len() == n, op, || {
        format!(
            "param/grad/m/v hold {n}/{}/{}/{} elements",
            grad.len(),
            m.len(),
            v.len()
        )
    })?;
    ensure(p.step >= 1, op, || {
        format!("step is 1-based, got {}", p.step)
    })?;
    Ok(n)
}

/// The grid-stride launch over `n` elements.
fn grid(n: usize) -> LaunchConfig {
    grid_1d(n.min(BLOCK as usize * MAX_BLOCKS), BLOCK)
}

/// One AdamW step in place over fp32 `param`, `m`, `v` (all `[n]`) given `grad: [n]`
/// (f32/bf16/f16), as `cpu::adamw::adamw_step`.
pub fn adamw_step<G: GpuFloat>(
    gpu: &Gpu,
    param: &mut CudaViewMut<f32>,
    grad: &CudaView<G>,
    m: &mut CudaViewMut<f32>,
    v: &mut CudaViewMut<f32>,
    p: &AdamWParams,
) -> CudaResult<()> {
    let n = check("adamw_step", param, grad, m, v, p)?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.function(&ADAMW, &format!("adamw_step_{}", G::SUFFIX))?;
    let (s, n64) = (p.scalars(), n as u64);
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(param).arg(grad).arg(m).arg(v);
    b.arg(&n64)
        .arg(&s.decay)
        .arg(&s.step_size)
        .arg(&s.bc2_sqrt)
        .arg(&s.w1)
        .arg(&s.w2)
        .arg(&s.beta2)
        .arg(&s.eps);
    unsafe { b.launch(grid(n)) }?;
    Ok(())
}

/// Mixed-precision AdamW: [`adamw_step`] on the fp32 master weights, then
/// `copy[i] = round(param[i])` in `C` (bf16/f16: the compute copy the next forward uses),
/// as `cpu::adamw::adamw_step_with_copy`.
pub fn adamw_step_with_copy<G: GpuFloat, C: GpuFloat>(
    gpu: &Gpu,
    param: &mut CudaViewMut<f32>,
    grad: &CudaView<G>,
    m: &mut CudaViewMut<f32>,
    v: &mut CudaViewMut<f32>,
    p: &AdamWParams,
    copy: &mut CudaViewMut<C>,
) -> CudaResult<()> {
    let n = check("adamw_step_with_copy", param, grad, m, v, p)?;
    ensure(copy.len() == n, "adamw_step_with_copy", || {
        format!("copy holds {} elements, param {n}", copy.len())
    })?;
    if n == 0 {
        return Ok(());
    }
    let name = format!("adamw_step_copy_{}_{}", G::SUFFIX, C::SUFFIX);
    let f = gpu.function(&ADAMW, &name)?;
    let (s, n64) = (p.scalars(), n as u64);
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(param).arg(grad).arg(m).arg(v).arg(copy);
    b.arg(&n64)
        .arg(&s.decay)
        .arg(&s.step_size)
        .arg(&s.bc2_sqrt)
        .arg(&s.w1)
        .arg(&s.w2)
        .arg(&s.beta2)
        .arg(&s.eps);
    unsafe { b.launch(grid(n)) }?;
    Ok(())
}
