//! MXFP4 experts on the GPU (`kernels/cuda/mxfp4.cu`), the twin of
//! `crate::cpu::quant::mxfp4`: a device copy of an [`Mxfp4Experts`] stack, the dequantization
//! of an expert's rows (bit-identical to the CPU in f32), and the grouped dequant-matmul of a
//! mixture-of-experts layer whose experts stay 4-bit:
//!
//! - forward `y[rows_e] = x[rows_e] · dequant(W_e)ᵀ` per group (`offsets[e] .. offsets[e+1]`);
//! - backward `dx[rows_e] = dy[rows_e] · dequant(W_e)` (the experts are frozen).
//!
//! Each group with rows runs the tiled dequant-matmul of `cuda::quant` on its expert (tiles of
//! W's rows dequantized into a scratch buffer, then cuBLASLt), the CPU twin's algorithm.

use super::blas::BlasFloat;
use super::dtype::{entry, GpuFloat};
use super::error::{ensure, CudaResult};
use super::gpu::{grid_1d, Gpu};
use super::grouped_gemm::check_offsets;
use super::quant::{dequant_matmul_t_tiled, dequant_matmul_tiled, tile_rows, GpuQuantMatrix};
use super::sources::MXFP4;
use crate::cpu::quant::mxfp4::{Mxfp4Experts, MXFP4_BLOCK};
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, PushKernelArg};

/// Threads per block of the dequantization kernel, and its grid cap (it strides).
const BLOCK: u32 = 256;
const MAX_GRID: usize = 4096;

/// The device copy of an [`Mxfp4Experts`] (same layout).
#[derive(Debug)]
pub struct GpuMxfp4Experts {
    experts: usize,
    rows: usize,
    cols: usize,
    blocks: CudaSlice<u8>,
    scales: CudaSlice<u8>,
}

/// Expert `e` of a [`GpuMxfp4Experts`] as a quantized matrix `[rows, cols]`.
#[derive(Clone, Copy, Debug)]
pub struct GpuMxfp4Expert<'a> {
    stack: &'a GpuMxfp4Experts,
    e: usize,
}

impl GpuMxfp4Experts {
    /// Uploads `w`.
    pub fn upload(gpu: &Gpu, w: &Mxfp4Experts) -> CudaResult<GpuMxfp4Experts> {
        Ok(GpuMxfp4Experts {
            experts: w.experts,
            rows: w.rows,
            cols: w.cols,
            blocks: gpu.htod(&w.blocks)?,
            scales: gpu.htod(&w.scales)?,
        })
    }

    /// `(experts, rows, cols)`.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.experts, self.rows, self.cols)
    }

    /// Expert `e`.
    pub fn expert(&self, e: usize) -> GpuMxfp4Expert<'_> {
        assert!(e < self.experts, "mxfp4: expert {e} of {}", self.experts);
        GpuMxfp4Expert { stack: self, e }
    }
}

/// Dequantizes rows `r0 ..` of expert `e` into `out` (whole rows of `cols`).
pub fn dequantize_mxfp4_rows<T: GpuFloat>(
    gpu: &Gpu,
    w: &GpuMxfp4Experts,
    e: usize,
    r0: usize,
    out: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let (experts, rows, cols) = w.dims();
    let count = out.len();
    ensure(
        e < experts && cols > 0 && count.is_multiple_of(cols) && r0 + count / cols <= rows,
        "dequantize_mxfp4_rows",
        || format!("rows {r0}.. ({count} elements) of expert {e} of [{experts}, {rows}, {cols}]"),
    )?;
    if count == 0 {
        return Ok(());
    }
    // first element, a multiple of 32 since cols is
    let start = ((e * rows + r0) * cols) as u64;
    debug_assert!((start as usize).is_multiple_of(MXFP4_BLOCK));
    let count64 = count as u64;
    let f = gpu.function(&MXFP4, &entry::<T>("dequant_mxfp4"))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(&w.blocks)
        .arg(&w.scales)
        .arg(&start)
        .arg(&count64)
        .arg(out);
    unsafe { b.launch(grid_1d((count / 2).min(BLOCK as usize * MAX_GRID), BLOCK)) }?;
    Ok(())
}

impl GpuQuantMatrix for GpuMxfp4Expert<'_> {
    fn dims(&self) -> CudaResult<(usize, usize)> {
        Ok((self.stack.rows, self.stack.cols))
    }
    fn dequant_rows<T: GpuFloat>(
        &self,
        gpu: &Gpu,
        r0: usize,
        out: &mut CudaViewMut<T>,
    ) -> CudaResult<()> {
        dequantize_mxfp4_rows(gpu, self.stack, self.e, r0, out)
    }
    /// No MXFP4 GEMV kernel: the few rows go through the tiles too.
    fn gemv<T: GpuFloat>(
        &self,
        _gpu: &Gpu,
        _x: &CudaView<T>,
        _m: usize,
        _y: &mut CudaViewMut<T>,
    ) -> CudaResult<()> {
        ensure(false, "mxfp4 gemv", || {
            "not implemented: grouped_dequant_matmul uses the tiled path".to_string()
        })
    }
}

/// Checks `offsets` (E + 1 entries from 0 to `m`, never decreasing) against `w`.
fn check(what: &'static str, w: &GpuMxfp4Experts, offsets: &[usize], m: usize) -> CudaResult<()> {
    let e = check_offsets(what, offsets, m)?;
    ensure(e == w.experts, what, || {
        format!("{e} groups of offsets for {} experts", w.experts)
    })
}

/// `y[rows_e] = x[rows_e] · dequant(W_e)ᵀ` for every expert: `x: [m, cols]`, `y: [m, rows]`
/// (overwritten).
pub fn grouped_dequant_matmul<T: BlasFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &GpuMxfp4Experts,
    offsets: &[usize],
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let (_, n, k) = w.dims();
    let m = x.len() / k.max(1);
    check("grouped_dequant_matmul", w, offsets, m)?;
    ensure(
        x.len() == m * k && y.len() == m * n,
        "grouped_dequant_matmul",
        || format!("x/y hold {}/{} for {m} rows", x.len(), y.len()),
    )?;
    for (e, g) in offsets.windows(2).enumerate() {
        let rows = g[1] - g[0];
        if rows > 0 {
            dequant_matmul_tiled(
                gpu,
                &x.slice(g[0] * k..g[1] * k),
                &w.expert(e),
                rows,
                &mut y.slice_mut(g[0] * n..g[1] * n),
                tile_rows(n, k),
            )?;
        }
    }
    Ok(())
}

/// `dx[rows_e] = dy[rows_e] · dequant(W_e)`: `dy: [m, rows]`, `dx: [m, cols]` (overwritten).
pub fn grouped_dequant_matmul_t<T: BlasFloat>(
    gpu: &Gpu,
    dy: &CudaView<T>,
    w: &GpuMxfp4Experts,
    offsets: &[usize],
    dx: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let (_, n, k) = w.dims();
    let m = dy.len() / n.max(1);
    check("grouped_dequant_matmul_t", w, offsets, m)?;
    ensure(
        dy.len() == m * n && dx.len() == m * k,
        "grouped_dequant_matmul_t",
        || format!("dy/dx hold {}/{} for {m} rows", dy.len(), dx.len()),
    )?;
    for (e, g) in offsets.windows(2).enumerate() {
        let rows = g[1] - g[0];
        if rows > 0 {
            dequant_matmul_t_tiled(
                gpu,
                &dy.slice(g[0] * n..g[1] * n),
                &w.expert(e),
                rows,
                &mut dx.slice_mut(g[0] * k..g[1] * k),
                tile_rows(n, k),
            )?;
        }
    }
    Ok(())
}
