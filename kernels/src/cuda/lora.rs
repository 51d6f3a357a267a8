//! Fused LoRA linear launchers: the GPU twin of `crate::cpu::lora` (`kernels/cuda/lora.cu`),
//! `y = x·Wᵀ + bias + s·(drop(x)·Aᵀ)·Bᵀ`, with the same dropout ([`LoraDropout`]: the Philox
//! keep mask of element `offset + t·in + i`, regenerated in the backward, never stored), the
//! same saved tensor (`xa = drop(x)·Aᵀ: [n, r]`) and the same output rules (`dx` overwritten;
//! `dA`, `dB`, `dW`, `dbias` accumulated into; `None` skips a gradient).
//!
//! All products are cuBLASLt GEMMs; the low-rank path is two thin GEMMs (`[n, in]·[in, r]`,
//! then `[n, r]·[r, out]` accumulated into `y` with `alpha = s`), so its full-width product
//! is never held on its own. With dropout the one full-width scratch is the masked input
//! `x·keep` (`[n, in]` in `T`, as on the CPU); the `1/(1 − p)` factor is the alpha of the GEMM
//! that reads it, so masking is exact in every storage type. The backward reuses that scratch
//! for `d_xa·A` before the masked add into `dx`.

use super::blas::{gemm, BlasFloat, GemmSpec};
use super::dtype::entry;
use super::error::{ensure, CudaError, CudaResult};
use super::gpu::{grid_1d, Gpu};
use super::sources::LORA;
use crate::cpu::lora::LoraDropout;
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

const BLOCK: u32 = 256;
const OP: &str = "lora";

/// Gradients of [`lora_backward`] (as `crate::cpu::lora::LoraGrads`): `da`, `db` (and `dw`,
/// `dbias`) are accumulated into, `dx` is overwritten; `None` skips that gradient.
#[derive(Debug)]
pub struct LoraGrads<'a, 'b, T> {
    /// `dx: [n, in]`, overwritten.
    pub dx: Option<&'a mut CudaViewMut<'b, T>>,
    /// `dA: [r, in]`, accumulated.
    pub da: &'a mut CudaViewMut<'b, T>,
    /// `dB: [out, r]`, accumulated.
    pub db: &'a mut CudaViewMut<'b, T>,
    /// `dW: [out, in]`, accumulated (the base is normally frozen: `None`).
    pub dw: Option<&'a mut CudaViewMut<'b, T>>,
    /// `dbias: [out]`, accumulated.
    pub dbias: Option<&'a mut CudaViewMut<'b, T>>,
}

/// The active dropout, if any (`p == 0` is no dropout); `p` outside `[0, 1)` is an error.
fn active(dropout: Option<&LoraDropout>) -> CudaResult<Option<&LoraDropout>> {
    match dropout.filter(|d| d.p > 0.0) {
        Some(d) if d.p >= 1.0 || d.p.is_nan() => Err(CudaError::shape(
            OP,
            format!("dropout p = {} is not in [0, 1)", d.p),
        )),
        d => Ok(d),
    }
}

/// `1/(1 − p)` as the CPU twin rounds it (computed in f64).
fn inv_keep(d: &LoraDropout) -> f32 {
    (1.0 / (1.0 - d.p as f64)) as f32
}

/// A grid-stride launch over `total` elements (at most 65 535 · 4 blocks; each thread loops).
fn grid_elems(total: usize) -> LaunchConfig {
    let mut cfg = grid_1d(total, BLOCK);
    cfg.grid_dim.0 = cfg.grid_dim.0.min(65_535 * 4);
    cfg
}

/// `xm = x·keep` (the masked input without the `1/(1 − p)` factor), `x, xm: [n, in]`.
fn mask_input<T: BlasFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    d: &LoraDropout,
    xm: &mut CudaSlice<T>,
) -> CudaResult<()> {
    let total = x.len() as i64;
    if total == 0 {
        return Ok(());
    }
    let f = gpu.function(&LORA, &entry::<T>("lora_dropout_mask"))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(x)
        .arg(xm)
        .arg(&total)
        .arg(&d.seed)
        .arg(&d.offset)
        .arg(&d.p);
    unsafe { b.launch(grid_elems(x.len())) }?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_shapes<T>(
    x: &CudaView<T>,
    w: &CudaView<T>,
    a: &CudaView<T>,
    b: &CudaView<T>,
    n: usize,
    in_f: usize,
    out_f: usize,
    r: usize,
) -> CudaResult<()> {
    ensure(
        x.len() == n * in_f
            && w.len() == out_f * in_f
            && a.len() == r * in_f
            && b.len() == out_f * r,
        OP,
        || {
            format!(
                "x/W/A/B hold {}/{}/{}/{} elements, want {n}x{in_f}/{out_f}x{in_f}/{r}x{in_f}/{out_f}x{r}",
                x.len(),
                w.len(),
                a.len(),
                b.len()
            )
        },
    )
}

/// Forward: `y = x·Wᵀ + bias + scale·(drop(x)·Aᵀ)·Bᵀ`, saving `xa = drop(x)·Aᵀ`.
///
/// `x: [n, in_f]`, `w: [out_f, in_f]`, `bias: [out_f]`, `a: [r, in_f]`, `b: [out_f, r]`;
/// writes (overwrites) `y: [n, out_f]` and `xa: [n, r]`.
#[allow(clippy::too_many_arguments)]
pub fn lora_forward<T: BlasFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &CudaView<T>,
    bias: Option<&CudaView<T>>,
    a: &CudaView<T>,
    b: &CudaView<T>,
    n: usize,
    in_f: usize,
    out_f: usize,
    r: usize,
    scale: f32,
    dropout: Option<&LoraDropout>,
    y: &mut CudaViewMut<T>,
    xa: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    check_shapes(x, w, a, b, n, in_f, out_f, r)?;
    ensure(y.len() == n * out_f && xa.len() == n * r, OP, || {
        format!(
            "y/xa hold {}/{} elements, want {n}x{out_f}/{n}x{r}",
            y.len(),
            xa.len()
        )
    })?;
    if let Some(bias) = bias {
        ensure(bias.len() == out_f, OP, || {
            format!("bias holds {} elements, want {out_f}", bias.len())
        })?;
    }
    let drop = active(dropout)?;
    if n == 0 {
        return Ok(());
    }
    // y = bias (broadcast over rows), so the base GEMM accumulates onto it.
    if let Some(bias) = bias {
        if out_f > 0 {
            let f = gpu.function(&LORA, &entry::<T>("lora_bias_rows"))?;
            let (total, o) = ((n * out_f) as i64, out_f as i32);
            let mut bl = gpu.stream().launch_builder(&f);
            bl.arg(&mut *y).arg(bias).arg(&total).arg(&o);
            unsafe { bl.launch(grid_elems(n * out_f)) }?;
        }
    }
    // y (+)= x·Wᵀ: [n, in]·[in, out]
    let mut base = GemmSpec::new(n, out_f, in_f, false, true);
    if bias.is_some() {
        base = base.accumulate();
    }
    gemm(gpu, &base, x, w, y)?;
    // xa = drop(x)·Aᵀ: [n, in]·[in, r]; with dropout, (x·keep)·Aᵀ times 1/(1 − p).
    let down = GemmSpec::new(n, r, in_f, false, true);
    match drop {
        Some(d) => {
            let mut xm = unsafe { gpu.alloc::<T>(n * in_f) }?; // the one full-width scratch
            mask_input(gpu, x, d, &mut xm)?;
            let spec = GemmSpec {
                alpha: inv_keep(d),
                ..down
            };
            gemm(gpu, &spec, &xm.as_view(), a, xa)?;
        }
        None => gemm(gpu, &down, x, a, xa)?,
    }
    // y += scale·xa·Bᵀ: [n, r]·[r, out]
    let up = GemmSpec {
        alpha: scale,
        ..GemmSpec::new(n, out_f, r, false, true).accumulate()
    };
    gemm(gpu, &up, &xa.as_view(), b, y)
}

/// Backward of [`lora_forward`] given `dy: [n, out_f]` and the saved `xa: [n, r]`.
///
/// `d_xa = scale·dy·B`; `dB += scale·dyᵀ·xa`; `dA += d_xaᵀ·drop(x)`;
/// `dx = dy·W + (d_xa·A)⊙mask`; `dW += dyᵀ·x`; `dbias += Σ_t dy[t]`.
#[allow(clippy::too_many_arguments)]
pub fn lora_backward<T: BlasFloat>(
    gpu: &Gpu,
    dy: &CudaView<T>,
    x: &CudaView<T>,
    w: &CudaView<T>,
    a: &CudaView<T>,
    b: &CudaView<T>,
    xa: &CudaView<T>,
    n: usize,
    in_f: usize,
    out_f: usize,
    r: usize,
    scale: f32,
    dropout: Option<&LoraDropout>,
    grads: LoraGrads<'_, '_, T>,
) -> CudaResult<()> {
    check_shapes(x, w, a, b, n, in_f, out_f, r)?;
    ensure(dy.len() == n * out_f && xa.len() == n * r, OP, || {
        format!(
            "dy/xa hold {}/{} elements, want {n}x{out_f}/{n}x{r}",
            dy.len(),
            xa.len()
        )
    })?;
    ensure(
        grads.da.len() == r * in_f && grads.db.len() == out_f * r,
        OP,
        || {
            format!(
                "dA/dB hold {}/{} elements, want {r}x{in_f}/{out_f}x{r}",
                grads.da.len(),
                grads.db.len()
            )
        },
    )?;
    if let Some(d) = grads.dx.as_deref() {
        ensure(d.len() == n * in_f, OP, || {
            format!("dx holds {} elements, want {n}x{in_f}", d.len())
        })?;
    }
    if let Some(d) = grads.dw.as_deref() {
        ensure(d.len() == out_f * in_f, OP, || {
            format!("dW holds {} elements, want {out_f}x{in_f}", d.len())
        })?;
    }
    if let Some(d) = grads.dbias.as_deref() {
        ensure(d.len() == out_f, OP, || {
            format!("dbias holds {} elements, want {out_f}", d.len())
        })?;
    }
    let drop = active(dropout)?;
    if n == 0 {
        // Nothing to accumulate; dx is empty.
        return Ok(());
    }
    // d_xa = scale·dy·B: [n, out]·[out, r]
    let mut dxa = unsafe { gpu.alloc::<T>(n * r) }?;
    let spec = GemmSpec {
        alpha: scale,
        ..GemmSpec::new(n, r, out_f, false, false)
    };
    gemm(gpu, &spec, dy, b, &mut dxa.as_view_mut())?;
    let dxa = dxa.as_view();
    // dB += scale·dyᵀ·xa: [out, n]·[n, r]
    let spec = GemmSpec {
        alpha: scale,
        ..GemmSpec::new(out_f, r, n, true, false).accumulate()
    };
    gemm(gpu, &spec, dy, xa, grads.db)?;
    // dA += d_xaᵀ·drop(x): [r, n]·[n, in]; with dropout, (x·keep) and alpha 1/(1 − p).
    let da_spec = GemmSpec::new(r, in_f, n, true, false).accumulate();
    let mut scratch = None;
    match drop {
        Some(d) => {
            let mut xm = unsafe { gpu.alloc::<T>(n * in_f) }?;
            mask_input(gpu, x, d, &mut xm)?;
            let spec = GemmSpec {
                alpha: inv_keep(d),
                ..da_spec
            };
            gemm(gpu, &spec, &dxa, &xm.as_view(), grads.da)?;
            scratch = Some(xm);
        }
        None => gemm(gpu, &da_spec, &dxa, x, grads.da)?,
    }
    if let Some(dw) = grads.dw {
        // dW += dyᵀ·x: [out, n]·[n, in]
        gemm(
            gpu,
            &GemmSpec::new(out_f, in_f, n, true, false).accumulate(),
            dy,
            x,
            dw,
        )?;
    }
    if let Some(dbias) = grads.dbias {
        dbias_add(gpu, dy, n, out_f, dbias)?;
    }
    let Some(dx) = grads.dx else { return Ok(()) };
    // dx = dy·W: [n, out]·[out, in]
    gemm(gpu, &GemmSpec::new(n, in_f, out_f, false, false), dy, w, dx)?;
    let low = GemmSpec::new(n, in_f, r, false, false); // d_xa·A: [n, r]·[r, in]
    match (drop, scratch) {
        // dx += (d_xa·A)⊙mask: the product goes through the scratch (x·keep is no longer
        // needed), then the mask is regenerated while adding it in.
        (Some(d), Some(mut prod)) => {
            gemm(gpu, &low, &dxa, a, &mut prod.as_view_mut())?;
            let total = (n * in_f) as i64;
            if total > 0 {
                let f = gpu.function(&LORA, &entry::<T>("lora_dx_dropout_add"))?;
                let ik = inv_keep(d);
                let mut bl = gpu.stream().launch_builder(&f);
                bl.arg(dx)
                    .arg(&prod)
                    .arg(&total)
                    .arg(&d.seed)
                    .arg(&d.offset)
                    .arg(&d.p)
                    .arg(&ik);
                unsafe { bl.launch(grid_elems(n * in_f)) }?;
            }
            Ok(())
        }
        // dx += d_xa·A
        _ => gemm(gpu, &low.accumulate(), &dxa, a, dx),
    }
}

/// `dbias += Σ_t dy[t, :]`, in two deterministic passes (row groups, then groups in order).
fn dbias_add<T: BlasFloat>(
    gpu: &Gpu,
    dy: &CudaView<T>,
    n: usize,
    out_f: usize,
    dbias: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    if out_f == 0 {
        return Ok(());
    }
    // G row groups, fixed from `n` alone so the sum order never depends on the device.
    let groups = n.min(256);
    let mut partial = unsafe { gpu.alloc::<f32>(groups * out_f) }?;
    let (n_i, o_i, g_i) = (n as i32, out_f as i32, groups as i32);
    let f = gpu.function(&LORA, &entry::<T>("lora_dbias_partial"))?;
    let mut bl = gpu.stream().launch_builder(&f);
    bl.arg(dy).arg(&mut partial).arg(&n_i).arg(&o_i);
    let cfg = LaunchConfig {
        grid_dim: (groups as u32, out_f.div_ceil(BLOCK as usize) as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { bl.launch(cfg) }?;
    let f = gpu.function(&LORA, &entry::<T>("lora_dbias_reduce"))?;
    let mut bl = gpu.stream().launch_builder(&f);
    bl.arg(&partial).arg(dbias).arg(&g_i).arg(&o_i);
    unsafe { bl.launch(grid_1d(out_f, BLOCK)) }?;
    Ok(())
}
