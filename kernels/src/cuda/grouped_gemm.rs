//! Grouped GEMM launchers for mixture-of-experts layers (`kernels/cuda/grouped_gemm.cu`), the
//! GPU twin of `crate::cpu::grouped_gemm` with the same arguments and shapes:
//!
//! - forward  `y[M, N]  = x[M, K] · W_eᵀ` per group (`offsets[e] .. offsets[e + 1]`);
//! - backward `dx[M, K] = dy[M, N] · W_e` per group;
//! - backward `dW[E, N, K] = dy_eᵀ · x_e` per expert (zero for an expert with no rows).
//!
//! The group offsets live on the host (the router's top-k is read back to sort the rows), so
//! the launcher cuts the output into 64-row tiles that never straddle two groups and uploads
//! that list; one launch covers every expert. bf16/f16 run on tensor cores, f32 on CUDA cores,
//! both accumulating in fp32.

use super::dtype::{entry, GpuFloat};
use super::error::{ensure, CudaResult};
use super::gpu::Gpu;
use super::sources::GROUPED_GEMM;
use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

/// Output rows and columns of one thread block (`BM`, `BN` of the kernel).
const TILE: usize = 64;
/// Threads per block (`THREADS` of the kernel).
const THREADS: u32 = 128;

/// One output tile as the kernel reads it: rows `[m0, m1)`, reduction `[k0, k1)`, and the
/// element offsets of B and C.
type TileDesc = [i64; 6];

/// Checks that `offsets` is a non-decreasing partition of `0..m`; returns the group count.
pub(crate) fn check_offsets(what: &'static str, offsets: &[usize], m: usize) -> CudaResult<usize> {
    let e = offsets.len().saturating_sub(1);
    ensure(
        offsets.len() >= 2
            && offsets[0] == 0
            && offsets[e] == m
            && offsets.windows(2).all(|w| w[0] <= w[1]),
        what,
        || format!("offsets {offsets:?} must run from 0 to {m}, never decreasing"),
    )?;
    Ok(e)
}

/// Tiles over each group's rows (forward, dx): `(m0, m1, 0, red, e·n·k, 0)`.
fn row_tiles(offsets: &[usize], red: usize, expert_elems: usize) -> Vec<TileDesc> {
    let mut tiles = Vec::new();
    for (e, w) in offsets.windows(2).enumerate() {
        let mut m0 = w[0];
        while m0 < w[1] {
            let m1 = (m0 + TILE).min(w[1]);
            tiles.push([
                m0 as i64,
                m1 as i64,
                0,
                red as i64,
                (e * expert_elems) as i64,
                0,
            ]);
            m0 = m1;
        }
    }
    tiles
}

/// Tiles over each expert's `[n, k]` gradient (dW): `(i0, i1, offsets[e], offsets[e+1], 0,
/// e·n·k)`; an expert without rows gets its tiles too (they write zeros).
fn expert_tiles(offsets: &[usize], n: usize, k: usize) -> Vec<TileDesc> {
    let mut tiles = Vec::new();
    for (e, w) in offsets.windows(2).enumerate() {
        for i0 in (0..n).step_by(TILE) {
            tiles.push([
                i0 as i64,
                (i0 + TILE).min(n) as i64,
                w[0] as i64,
                w[1] as i64,
                0,
                (e * n * k) as i64,
            ]);
        }
    }
    tiles
}

/// Launches `grouped_gemm_{kind}`: `C(i, j) = Σ_p A(i, p)·B(p, j)` over `tiles`, `ncols`
/// columns (see the kernel's header for the strides).
#[allow(clippy::too_many_arguments)]
fn launch<T: GpuFloat>(
    gpu: &Gpu,
    kind: &str,
    a: &CudaView<T>,
    lda: usize,
    b: &CudaView<T>,
    ldb: usize,
    c: &mut CudaViewMut<T>,
    ldc: usize,
    tiles: &[TileDesc],
    ncols: usize,
) -> CudaResult<()> {
    if tiles.is_empty() || ncols == 0 {
        return Ok(());
    }
    let flat: Vec<i64> = tiles.iter().flatten().copied().collect();
    let dev_tiles = gpu.htod(&flat)?;
    let f = gpu.function(&GROUPED_GEMM, &entry::<T>(&format!("grouped_gemm_{kind}")))?;
    let (lda, ldb, ldc) = (lda as i64, ldb as i64, ldc as i64);
    let nc = ncols as i32;
    let mut bld = gpu.stream().launch_builder(&f);
    bld.arg(a)
        .arg(&lda)
        .arg(b)
        .arg(&ldb)
        .arg(c)
        .arg(&ldc)
        .arg(&dev_tiles)
        .arg(&nc);
    let cfg = LaunchConfig {
        grid_dim: (tiles.len() as u32, ncols.div_ceil(TILE) as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { bld.launch(cfg) }?;
    Ok(())
}

/// `y[rows_e] = x[rows_e] · W_eᵀ` for every expert `e`: `x: [m, k]`, `w: [e, n, k]`,
/// `y: [m, n]` (fully overwritten).
pub fn grouped_gemm_forward<T: GpuFloat>(
    gpu: &Gpu,
    y: &mut CudaViewMut<T>,
    x: &CudaView<T>,
    w: &CudaView<T>,
    offsets: &[usize],
    (n, k): (usize, usize),
) -> CudaResult<()> {
    const WHAT: &str = "grouped_gemm_forward";
    let m = x.len() / k.max(1);
    let e = check_offsets(WHAT, offsets, m)?;
    ensure(
        x.len() == m * k && y.len() == m * n && w.len() == e * n * k,
        WHAT,
        || format!("x/y/w hold {}/{}/{} elements", x.len(), y.len(), w.len()),
    )?;
    let tiles = row_tiles(offsets, k, n * k);
    launch(gpu, "fwd", x, k, w, k, y, n, &tiles, n)
}

/// `dx[rows_e] = dy[rows_e] · W_e`: `dy: [m, n]`, `w: [e, n, k]`, `dx: [m, k]` (overwritten).
pub fn grouped_gemm_backward_x<T: GpuFloat>(
    gpu: &Gpu,
    dx: &mut CudaViewMut<T>,
    dy: &CudaView<T>,
    w: &CudaView<T>,
    offsets: &[usize],
    (n, k): (usize, usize),
) -> CudaResult<()> {
    const WHAT: &str = "grouped_gemm_backward_x";
    let m = dy.len() / n.max(1);
    let e = check_offsets(WHAT, offsets, m)?;
    ensure(
        dy.len() == m * n && dx.len() == m * k && w.len() == e * n * k,
        WHAT,
        || {
            format!(
                "dy/dx/w hold {}/{}/{} elements",
                dy.len(),
                dx.len(),
                w.len()
            )
        },
    )?;
    let tiles = row_tiles(offsets, n, n * k);
    launch(gpu, "dx", dy, n, w, k, dx, k, &tiles, k)
}

/// `dW_e = dy[rows_e]ᵀ · x[rows_e]`: `dy: [m, n]`, `x: [m, k]`, `dw: [e, n, k]` (overwritten;
/// zero for experts without rows).
pub fn grouped_gemm_backward_w<T: GpuFloat>(
    gpu: &Gpu,
    dw: &mut CudaViewMut<T>,
    dy: &CudaView<T>,
    x: &CudaView<T>,
    offsets: &[usize],
    (n, k): (usize, usize),
) -> CudaResult<()> {
    const WHAT: &str = "grouped_gemm_backward_w";
    let m = dy.len() / n.max(1);
    let e = check_offsets(WHAT, offsets, m)?;
    ensure(
        dy.len() == m * n && x.len() == m * k && dw.len() == e * n * k,
        WHAT,
        || {
            format!(
                "dy/x/dw hold {}/{}/{} elements",
                dy.len(),
                x.len(),
                dw.len()
            )
        },
    )?;
    let tiles = expert_tiles(offsets, n, k);
    launch(gpu, "dw", dy, n, x, k, dw, k, &tiles, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_tiles_never_straddle_groups() {
        // 3 experts: 70 rows, 0 rows, 5 rows
        let t = row_tiles(&[0, 70, 70, 75], 8, 100);
        assert_eq!(
            t,
            vec![
                [0, 64, 0, 8, 0, 0],
                [64, 70, 0, 8, 0, 0],
                [70, 75, 0, 8, 200, 0]
            ]
        );
    }

    #[test]
    fn expert_tiles_cover_every_expert() {
        let t = expert_tiles(&[0, 3, 3], 65, 2);
        assert_eq!(
            t,
            vec![
                [0, 64, 0, 3, 0, 0],
                [64, 65, 0, 3, 0, 0],
                [0, 64, 3, 3, 0, 130],
                [64, 65, 3, 3, 0, 130]
            ]
        );
    }
}
