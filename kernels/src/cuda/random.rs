//! Philox random fill (`kernels/cuda/random.cu`): element `e` of `y` is Philox element
//! `offset + e` of stream `seed`, bit-identical to `crate::cpu::philox`, computed in f32 and
//! rounded once to the storage type (f32, f64, bf16, f16).

use super::error::{ensure, CudaResult};
use super::gpu::Gpu;
use super::sources::RANDOM;
use super::strided::{entry_for, grid_stride, GpuElem};
use cudarc::driver::{CudaViewMut, PushKernelArg};

/// What to draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Draw {
    /// Uniform in (0, 1].
    Uniform,
    /// Standard normal (Box–Muller).
    Normal,
    /// Dropout mask: `keep_value` with probability `1 - p`, else 0.
    Dropout {
        /// Drop probability.
        p: f32,
        /// The value of a kept element (`1 / (1 - p)`).
        keep_value: f32,
    },
}

/// Fills `y` with `draw` for elements `offset ..` of stream `seed`.
pub fn philox_fill<T: GpuElem>(
    gpu: &Gpu,
    y: &mut CudaViewMut<T>,
    seed: u64,
    offset: u64,
    draw: Draw,
) -> CudaResult<()> {
    ensure(
        matches!(T::SUFFIX, "f32" | "f64" | "bf16" | "f16"),
        "philox_fill",
        || format!("needs a float type, got {}", T::SUFFIX),
    )?;
    let n = y.len();
    if n == 0 {
        return Ok(());
    }
    let (kind, p, keep) = match draw {
        Draw::Uniform => (0i32, 0f32, 0f32),
        Draw::Normal => (1, 0.0, 0.0),
        Draw::Dropout { p, keep_value } => (2, p, keep_value),
    };
    let f = gpu.function(&RANDOM, &entry_for::<T>("philox"))?;
    let nn = n as i64;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(y)
        .arg(&nn)
        .arg(&seed)
        .arg(&offset)
        .arg(&kind)
        .arg(&p)
        .arg(&keep);
    unsafe { b.launch(grid_stride(n)) }?;
    Ok(())
}
