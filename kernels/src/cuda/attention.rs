//! Flash attention launchers: the GPU twin of `crate::cpu::attention`
//! (`kernels/cuda/flash_attn_fwd.cu`, `kernels/cuda/flash_attn_bwd.cu`), with the same
//! arguments in the same order: packed varlen `q: [total_q, num_heads, head_dim]`,
//! `k`, `v: [total_k, num_kv_heads, head_dim]`, host `cu_seqlens_q/k: [batch + 1]` prefix
//! offsets (uploaded as int32), and the CPU's [`AttnParams`] (GQA, causal bottom-right,
//! sliding window, softmax scale, softcap).
//!
//! Differences from the CPU twin: `lse: [num_heads, total_q]` is fp32 whatever the storage
//! type (as flash-attn); bf16/f16 take head_dim 64, 80, 96, 128 or 256 (tensor cores), f32 any
//! head_dim up to 256; dQ is summed with fp32 atomics, so its last bits may vary run to run.

use super::dtype::{entry, GpuFloat};
use super::error::{ensure, CudaError, CudaResult};
use super::gpu::{grid_1d, Gpu};
use super::sources::{FLASH_ATTN_BWD, FLASH_ATTN_FWD};
use crate::cpu::attention::AttnParams;
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaFunction, CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

/// Head dims of the bf16/f16 tensor-core kernels.
pub const TC_HEAD_DIMS: [usize; 5] = [64, 80, 96, 128, 256];
/// Largest head_dim of the f32 kernels.
pub const F32_MAX_HEAD_DIM: usize = 256;

/// What both launchers derive from the arguments.
struct Shape {
    total_q: usize,
    total_k: usize,
    batch: usize,
    max_sq: usize,
    max_sk: usize,
    f32: bool,
}

/// Validates `p` and the cu_seqlens (the CPU twin's `AttnParams::check`, as errors) and the
/// head_dim the kernels support.
fn shape<T: GpuFloat>(
    op: &'static str,
    p: &AttnParams,
    cu_q: &[usize],
    cu_k: &[usize],
) -> CudaResult<Shape> {
    let (hq, hkv, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
    ensure(hq > 0 && hkv > 0 && hq % hkv == 0, op, || {
        format!("num_kv_heads {hkv} must divide num_heads {hq} (both > 0)")
    })?;
    ensure(p.window != Some(0), op, || "window must be >= 1".into())?;
    ensure(p.softcap.is_none_or(|c| c > 0.0), op, || {
        "softcap must be > 0".into()
    })?;
    let f32 = T::SUFFIX == "f32";
    ensure(
        if f32 {
            (1..=F32_MAX_HEAD_DIM).contains(&d)
        } else {
            TC_HEAD_DIMS.contains(&d)
        },
        op,
        || {
            format!(
                "head_dim {d} is not supported for {} (f32: 1..={F32_MAX_HEAD_DIM}, bf16/f16: {TC_HEAD_DIMS:?})",
                T::SUFFIX
            )
        },
    )?;
    ensure(cu_q.len() == cu_k.len() && !cu_q.is_empty(), op, || {
        format!(
            "cu_seqlens_q/k have {}/{} entries (want the same, >= 1)",
            cu_q.len(),
            cu_k.len()
        )
    })?;
    ensure(cu_q[0] == 0 && cu_k[0] == 0, op, || {
        "cu_seqlens must start at 0".into()
    })?;
    let sorted = |c: &[usize]| c.windows(2).all(|w| w[0] <= w[1]);
    ensure(sorted(cu_q) && sorted(cu_k), op, || {
        "cu_seqlens must be non-decreasing".into()
    })?;
    let (total_q, total_k) = (cu_q[cu_q.len() - 1], cu_k[cu_k.len() - 1]);
    let max_len = |c: &[usize]| c.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let batch = cu_q.len() - 1;
    ensure(
        (total_q.max(total_k) * hq.max(hkv) * d) < i32::MAX as usize && batch < 65536,
        op,
        || format!("too large: total_q {total_q}, total_k {total_k}, batch {batch}"),
    )?;
    Ok(Shape {
        total_q,
        total_k,
        batch,
        max_sq: max_len(cu_q),
        max_sk: max_len(cu_k),
        f32,
    })
}

/// The cu_seqlens as the kernels read them (int32, on the device).
fn upload_cu(gpu: &Gpu, cu: &[usize]) -> CudaResult<cudarc::driver::CudaSlice<i32>> {
    let v: Vec<i32> = cu.iter().map(|&x| x as i32).collect();
    gpu.htod(&v)
}

/// The kernel `base` for `T` (head-dim specialised for bf16/f16), allowed `smem` bytes of
/// dynamic shared memory (above the default 48 KB needs the opt-in attribute).
fn kernel<T: GpuFloat>(
    gpu: &Gpu,
    src: &'static super::sources::KernelSource,
    base: &str,
    d: usize,
    f32: bool,
    smem: usize,
) -> CudaResult<CudaFunction> {
    let name = if f32 {
        entry::<T>(base)
    } else {
        entry::<T>(&format!("{base}_d{d}"))
    };
    let f = gpu.function(src, &name)?;
    f.set_attribute(
        CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        smem as i32,
    )
    .map_err(CudaError::from)?;
    Ok(f)
}

/// Flash attention forward over packed varlen sequences: writes
/// `out: [total_q, num_heads, head_dim]` and `lse: [num_heads, total_q]` (fp32; -inf for a
/// row that sees no key, whose out is 0).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<T: GpuFloat>(
    gpu: &Gpu,
    q: &CudaView<T>,
    k: &CudaView<T>,
    v: &CudaView<T>,
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    p: &AttnParams,
    out: &mut CudaViewMut<T>,
    lse: &mut CudaViewMut<f32>,
) -> CudaResult<()> {
    const OP: &str = "attention_forward";
    let s = shape::<T>(OP, p, cu_seqlens_q, cu_seqlens_k)?;
    let (hq, hkv, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
    let (nq, nk) = (s.total_q * hq * d, s.total_k * hkv * d);
    ensure(
        q.len() == nq && out.len() == nq && k.len() == nk && v.len() == nk,
        OP,
        || {
            format!(
                "q/out hold {}/{} (want {nq}), k/v hold {}/{} (want {nk})",
                q.len(),
                out.len(),
                k.len(),
                v.len()
            )
        },
    )?;
    ensure(lse.len() == s.total_q * hq, OP, || {
        format!("lse holds {}, want {}", lse.len(), s.total_q * hq)
    })?;
    if s.max_sq == 0 {
        return Ok(());
    }
    // Tiles: f32 16 query rows x 16 keys; bf16/f16 64 query rows x BK keys.
    let (bq, threads, smem) = if s.f32 {
        (16, 256, (4 * 16 * (d + 1) + 16 * 17) * 4)
    } else {
        let bk = if d == 256 { 32 } else { 64 };
        // Q [64][d+8] and double-buffered K, V [2][bk][d+8], 16-bit
        (64, 128, (64 + 4 * bk) * (d + 8) * 2)
    };
    let f = kernel::<T>(gpu, &FLASH_ATTN_FWD, "flash_attn_fwd", d, s.f32, smem)?;
    let (cq, ck) = (upload_cu(gpu, cu_seqlens_q)?, upload_cu(gpu, cu_seqlens_k)?);
    let (tq, nh, nkv, dd) = (s.total_q as i32, hq as i32, hkv as i32, d as i32);
    let (scale, cap) = (p.scale as f32, p.softcap.unwrap_or(0.0) as f32);
    let (causal, window) = (
        p.causal as i32,
        p.window.unwrap_or(0).min(i32::MAX as usize) as i32,
    );
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(q)
        .arg(k)
        .arg(v)
        .arg(out)
        .arg(lse)
        .arg(&cq)
        .arg(&ck)
        .arg(&tq)
        .arg(&nh)
        .arg(&nkv);
    if s.f32 {
        b.arg(&dd);
    }
    b.arg(&scale).arg(&cap).arg(&causal).arg(&window);
    let cfg = LaunchConfig {
        grid_dim: (s.max_sq.div_ceil(bq) as u32, hq as u32, s.batch as u32),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    unsafe { b.launch(cfg) }?;
    Ok(())
}

/// Flash attention backward: overwrites `dq: [total_q, num_heads, head_dim]` and `dk`,
/// `dv: [total_k, num_kv_heads, head_dim]` from `dout`, the forward inputs, its `out` and its
/// fp32 `lse: [num_heads, total_q]`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: GpuFloat>(
    gpu: &Gpu,
    dout: &CudaView<T>,
    q: &CudaView<T>,
    k: &CudaView<T>,
    v: &CudaView<T>,
    out: &CudaView<T>,
    lse: &CudaView<f32>,
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    p: &AttnParams,
    dq: &mut CudaViewMut<T>,
    dk: &mut CudaViewMut<T>,
    dv: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    const OP: &str = "attention_backward";
    let s = shape::<T>(OP, p, cu_seqlens_q, cu_seqlens_k)?;
    let (hq, hkv, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
    let (nq, nk) = (s.total_q * hq * d, s.total_k * hkv * d);
    ensure(
        q.len() == nq && out.len() == nq && dout.len() == nq && dq.len() == nq,
        OP,
        || {
            format!(
                "q/out/dout/dq hold {}/{}/{}/{}, want {nq}",
                q.len(),
                out.len(),
                dout.len(),
                dq.len()
            )
        },
    )?;
    ensure(
        k.len() == nk && v.len() == nk && dk.len() == nk && dv.len() == nk,
        OP,
        || {
            format!(
                "k/v/dk/dv hold {}/{}/{}/{}, want {nk}",
                k.len(),
                v.len(),
                dk.len(),
                dv.len()
            )
        },
    )?;
    ensure(lse.len() == s.total_q * hq, OP, || {
        format!("lse holds {}, want {}", lse.len(), s.total_q * hq)
    })?;
    let (tq, nh, nkv, dd) = (s.total_q as i32, hq as i32, hkv as i32, d as i32);

    // delta: [num_heads, total_q] = rowsum(dO ∘ O), one warp per (row, head)
    let mut delta = unsafe { gpu.alloc::<f32>(s.total_q * hq) }?;
    if nq > 0 {
        let f = gpu.function(&FLASH_ATTN_BWD, &entry::<T>("flash_attn_bwd_dot"))?;
        let mut b = gpu.stream().launch_builder(&f);
        b.arg(dout)
            .arg(out)
            .arg(&mut delta)
            .arg(&tq)
            .arg(&nh)
            .arg(&dd);
        unsafe { b.launch(grid_1d(s.total_q * hq * 32, 256)) }?;
    }

    // dK, dV (overwritten) and dq_acc (fp32, atomically accumulated from zero)
    let mut dq_acc = gpu.zeros::<f32>(nq)?;
    if s.max_sk > 0 && s.max_sq > 0 {
        let (bk, smem) = if s.f32 {
            (16, (4 * 16 * (d + 1) + 2 * 16 * 17 + 2 * 16) * 4)
        } else {
            let (bq, bk) = if d == 256 { (32, 32) } else { (64, 64) };
            (
                bk,
                (2 * bq + 2 * bk) * (d + 8) * 2 + 2 * bk * (bq + 8) * 2 + 2 * bq * 4,
            )
        };
        let f = kernel::<T>(gpu, &FLASH_ATTN_BWD, "flash_attn_bwd", d, s.f32, smem)?;
        let (cq, ck) = (upload_cu(gpu, cu_seqlens_q)?, upload_cu(gpu, cu_seqlens_k)?);
        let (scale, cap) = (p.scale as f32, p.softcap.unwrap_or(0.0) as f32);
        let (causal, window) = (
            p.causal as i32,
            p.window.unwrap_or(0).min(i32::MAX as usize) as i32,
        );
        let mut b = gpu.stream().launch_builder(&f);
        b.arg(dout)
            .arg(q)
            .arg(k)
            .arg(v)
            .arg(lse)
            .arg(&delta)
            .arg(&cq)
            .arg(&ck)
            .arg(&mut dq_acc)
            .arg(&mut *dk)
            .arg(&mut *dv)
            .arg(&tq)
            .arg(&nh)
            .arg(&nkv);
        if s.f32 {
            b.arg(&dd);
        }
        b.arg(&scale).arg(&cap).arg(&causal).arg(&window);
        let cfg = LaunchConfig {
            grid_dim: (s.max_sk.div_ceil(bk) as u32, hkv as u32, s.batch as u32),
            block_dim: (256, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        unsafe { b.launch(cfg) }?;
    } else if nk > 0 {
        // No query at all: nothing flows back to k and v.
        gpu.stream().memset_zeros(dk)?;
        gpu.stream().memset_zeros(dv)?;
    }

    // dq = dq_acc in the storage type
    if nq > 0 {
        let f = gpu.function(&FLASH_ATTN_BWD, &entry::<T>("flash_attn_bwd_dq_convert"))?;
        let n = nq as i64;
        let mut b = gpu.stream().launch_builder(&f);
        b.arg(&dq_acc).arg(dq).arg(&n);
        unsafe { b.launch(grid_1d(nq, 256)) }?;
    }
    Ok(())
}
