//! Fused linear + cross-entropy launchers: the GPU twin of `crate::cpu::linear_ce`
//! (`kernels/cuda/linear_ce.cu`), same options ([`CeOptions`]: ignore_index, label smoothing,
//! z-loss, softcap, chunk), same result ([`CeResult`]), same output rules (`dx` overwritten,
//! `dw` accumulated into).
//!
//! Per chunk of `chunk` tokens: `logits_c = x_c·wᵀ` (cuBLASLt) into the one `[chunk, vocab]`
//! buffer, the row kernel (softcap, log-sum-exp, loss per row, dlogits in place), then
//! `dx_c = dlogits·w` and `dw += dlogitsᵀ·x_c` (cuBLASLt, `beta = 1`). Peak extra device memory
//! is [`linear_ce_workspace_bytes`]: the chunk buffer plus one fp32 loss per token.
//!
//! The chunk buffer has the storage type `T`, not fp32: the two gradient GEMMs take dlogits as
//! an operand next to `w`/`x`, and cuBLASLt multiplies operands of one type, so an fp32 buffer
//! would need a second, rounded copy anyway; in `T` the buffer is half the size (128 MiB
//! instead of 256 MiB at 512 × 128 256 bf16) and the GEMMs read half the bytes. The row kernel
//! upcasts to fp32 for all of its math, as the CPU twin's `T` buffer does (Liger does the same).
//!
//! The labels are copied to the host once per call (they decide `n_valid`, the chunks that can
//! be skipped, and are validated there: an out-of-range label is an `Err` before any output is
//! touched). The per-row losses are summed on the host in f64 in token order, so the loss is
//! deterministic. Both copies synchronise the stream.

use super::blas::{gemm, BlasFloat, GemmSpec};
use super::dtype::entry;
use super::error::{ensure, CudaError, CudaResult};
use super::gpu::{grid_rows, Gpu};
use super::sources::LINEAR_CE;
use crate::cpu::linear_ce::{CeOptions, CeResult};
use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

const BLOCK: u32 = 256;

/// Logits per chunk of the automatic GPU chunk: 64 Mi (128 MiB in bf16).
///
/// Larger than the CPU's 8 Mi: on a GPU the three chunk GEMMs are only efficient when the
/// chunk is a few hundred rows thick (each GEMM streams all of `w` once per chunk).
const AUTO_LOGITS: usize = 64 << 20;

/// The automatic GPU chunk for `vocab`: 64 Mi logits per chunk, rounded down to a multiple of
/// 64 rows when that is at least 64 (512 rows at a 128 256 vocabulary), at least one row.
pub fn auto_chunk(vocab: usize) -> usize {
    let c = (AUTO_LOGITS / vocab.max(1)).max(1);
    if c >= 64 {
        c / 64 * 64
    } else {
        c
    }
}

/// The chunk (tokens per pass) a call with `n` tokens and these options uses:
/// `opts.chunk`, or [`auto_chunk`] when it is 0, at most `n` (and at least 1).
pub fn chunk_rows(n: usize, vocab: usize, opts: &CeOptions) -> usize {
    let c = if opts.chunk == 0 {
        auto_chunk(vocab)
    } else {
        opts.chunk
    };
    c.min(n.max(1))
}

/// Device bytes a call allocates beyond its inputs and outputs: the `[chunk, vocab]` logits
/// buffer in `T` plus `n` fp32 per-row losses (cuBLASLt's workspace belongs to the `Gpu`).
pub fn linear_ce_workspace_bytes<T>(n: usize, vocab: usize, opts: &CeOptions) -> usize {
    if n == 0 {
        return 0;
    }
    chunk_rows(n, vocab, opts) * vocab * std::mem::size_of::<T>() + n * std::mem::size_of::<f32>()
}

/// Loss (sum over valid tokens) of `x·wᵀ` against `labels`, without gradients (evaluation).
///
/// `x: [n, hidden]`, `w: [vocab, hidden]` (HF lm_head layout), `labels: [n]` (int64).
#[allow(clippy::too_many_arguments)]
pub fn linear_ce_forward<T: BlasFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &CudaView<T>,
    labels: &CudaView<i64>,
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
) -> CudaResult<CeResult> {
    run(
        gpu, x, w, labels, n, hidden, vocab, opts, None, None, None, None,
    )
}

/// Loss (sum over valid tokens) and its gradients times `grad_scale`.
///
/// `dx: [n, hidden]` is overwritten; `dw: [vocab, hidden]` is accumulated into. The caller
/// picks `grad_scale` (1/n_valid for a mean, 1/num_items_in_batch for accumulated batches).
/// With neither output this is [`linear_ce_forward`].
#[allow(clippy::too_many_arguments)]
pub fn linear_ce_fwd_bwd<T: BlasFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &CudaView<T>,
    labels: &CudaView<i64>,
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
    grad_scale: f32,
    dx: Option<&mut CudaViewMut<T>>,
    dw: Option<&mut CudaViewMut<T>>,
) -> CudaResult<CeResult> {
    run(
        gpu,
        x,
        w,
        labels,
        n,
        hidden,
        vocab,
        opts,
        Some(GradScale::All(grad_scale)),
        dx,
        dw,
        None,
    )
}

/// What each token's loss gradient is multiplied by (as the CPU twin's `GradScale`).
#[derive(Clone, Copy)]
pub(crate) enum GradScale<'a> {
    /// One scale for every token.
    All(f32),
    /// One scale per token (`[n]`, on the host): the upstream gradient of per-token outputs.
    PerToken(&'a [f32]),
}

/// The chunk loop behind every entry point: the loss sum (and, with `token_loss`, each
/// token's loss: `[n]`, 0 for ignored tokens), and the gradients of `Σ_t scale_t · loss_t`
/// when `grad_scale` is given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<T: BlasFloat>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &CudaView<T>,
    labels: &CudaView<i64>,
    n: usize,
    hidden: usize,
    vocab: usize,
    opts: &CeOptions,
    grad_scale: Option<GradScale<'_>>,
    mut dx: Option<&mut CudaViewMut<T>>,
    mut dw: Option<&mut CudaViewMut<T>>,
    token_loss: Option<&mut Vec<f64>>,
) -> CudaResult<CeResult> {
    const OP: &str = "linear_ce";
    ensure(vocab > 0, OP, || "empty vocabulary".into())?;
    ensure(
        x.len() == n * hidden && w.len() == vocab * hidden && labels.len() == n,
        OP,
        || {
            format!(
                "x/w/labels hold {}/{}/{} elements, want {n}x{hidden}/{vocab}x{hidden}/{n}",
                x.len(),
                w.len(),
                labels.len()
            )
        },
    )?;
    if let Some(d) = dx.as_deref() {
        ensure(d.len() == n * hidden, OP, || {
            format!("dx holds {} elements, want {n}x{hidden}", d.len())
        })?;
    }
    if let Some(d) = dw.as_deref() {
        ensure(d.len() == vocab * hidden, OP, || {
            format!("dw holds {} elements, want {vocab}x{hidden}", d.len())
        })?;
    }
    ensure(
        n <= i32::MAX as usize && vocab <= i32::MAX as usize,
        OP,
        || format!("{n} tokens x {vocab} vocabulary exceed the kernel's int sizes"),
    )?;
    if let Some(GradScale::PerToken(s)) = grad_scale {
        ensure(s.len() == n, OP, || {
            format!("{} per-token scales, want {n}", s.len())
        })?;
    }
    let mut res = CeResult {
        loss_sum: 0.0,
        n_valid: 0,
    };
    if n == 0 {
        return Ok(res);
    }
    // Validate every label before touching dw, so a bad label leaves the outputs untouched.
    let lab = gpu.dtoh(labels)?;
    if let Some((t, &y)) = lab
        .iter()
        .enumerate()
        .find(|(_, &y)| y != opts.ignore_index && (y < 0 || y as u64 >= vocab as u64))
    {
        return Err(CudaError::shape(
            OP,
            format!("label {y} of token {t} is outside [0, {vocab})"),
        ));
    }
    let chunk = chunk_rows(n, vocab, opts);
    let grads = grad_scale.is_some() && (dx.is_some() || dw.is_some());
    let f = gpu.function(&LINEAR_CE, &entry::<T>("linear_ce_rows"))?;
    // logits (then dlogits) of one chunk: [chunk, vocab]; every row used is written by the
    // GEMM first, so it starts uninitialised.
    let mut logits = unsafe { gpu.alloc::<T>(chunk * vocab) }?;
    let mut losses = gpu.zeros::<f32>(n)?; // [n] fp32, 0 for ignored / skipped tokens
    let (v_i, ignore) = (vocab as i32, opts.ignore_index);
    let (eps, z_loss) = (opts.label_smoothing as f32, opts.z_loss as f32);
    let (cap, has_cap) = (
        opts.softcap.unwrap_or(0.0) as f32,
        opts.softcap.is_some() as i32,
    );
    // The per-token scales go to the device once; a uniform scale passes a 1-element dummy
    // that the kernel does not read.
    let (scale, row_scale, per_row) = match grad_scale {
        Some(GradScale::All(s)) => (s, gpu.zeros::<f32>(1)?, 0i32),
        Some(GradScale::PerToken(s)) => (1.0, gpu.htod(s)?, 1i32),
        None => (0.0, gpu.zeros::<f32>(1)?, 0i32),
    };
    let grads_i = grads as i32;
    for c0 in (0..n).step_by(chunk) {
        let m = chunk.min(n - c0);
        let valid = lab[c0..c0 + m]
            .iter()
            .filter(|&&y| y != opts.ignore_index)
            .count();
        if valid == 0 {
            // Prompt-only chunks (common in SFT): no loss, zero dx, nothing for dw.
            if let Some(d) = dx.as_deref_mut() {
                let mut dxc = d.slice_mut(c0 * hidden..(c0 + m) * hidden);
                gpu.stream().memset_zeros(&mut dxc)?;
            }
            continue;
        }
        res.n_valid += valid;
        let xc = x.slice(c0 * hidden..(c0 + m) * hidden); // [m, hidden]
                                                          // logits_c = x_c · wᵀ: [m, hidden]·[hidden, vocab]
        gemm(
            gpu,
            &GemmSpec::new(m, vocab, hidden, false, true),
            &xc,
            w,
            &mut logits.slice_mut(..m * vocab),
        )?;
        {
            let lab_c = labels.slice(c0..c0 + m);
            let scale_c = if per_row == 1 {
                row_scale.slice(c0..c0 + m)
            } else {
                row_scale.slice(..)
            };
            let mut loss_c = losses.slice_mut(c0..c0 + m);
            let mut lc = logits.slice_mut(..m * vocab);
            let mut b = gpu.stream().launch_builder(&f);
            b.arg(&mut lc)
                .arg(&lab_c)
                .arg(&mut loss_c)
                .arg(&v_i)
                .arg(&ignore)
                .arg(&eps)
                .arg(&z_loss)
                .arg(&cap)
                .arg(&has_cap)
                .arg(&scale)
                .arg(&scale_c)
                .arg(&per_row)
                .arg(&grads_i);
            unsafe { b.launch(grid_rows(m, BLOCK, 0)) }?;
        }
        if !grads {
            continue;
        }
        let dl = logits.slice(..m * vocab); // dlogits: [m, vocab]
        if let Some(d) = dx.as_deref_mut() {
            // dx_c = dlogits · w: [m, vocab]·[vocab, hidden]
            let mut dxc = d.slice_mut(c0 * hidden..(c0 + m) * hidden);
            gemm(
                gpu,
                &GemmSpec::new(m, hidden, vocab, false, false),
                &dl,
                w,
                &mut dxc,
            )?;
        }
        if let Some(d) = dw.as_deref_mut() {
            // dw += dlogitsᵀ · x_c: [vocab, m]·[m, hidden]
            gemm(
                gpu,
                &GemmSpec::new(vocab, hidden, m, true, false).accumulate(),
                &dl,
                &xc,
                d,
            )?;
        }
    }
    // The loss: per-row fp32 losses summed in f64, in token order (deterministic).
    let per_token = gpu.dtoh(&losses)?;
    res.loss_sum = per_token.iter().map(|&l| l as f64).sum();
    if let Some(out) = token_loss {
        *out = per_token.iter().map(|&l| l as f64).collect();
    }
    Ok(res)
}
