//! Embedding launchers: the GPU twin of `crate::cpu::embedding` (`kernels/cuda/embedding.cu`).
//! ids are i64 (as the CPU twin takes) or i32 ([`EmbeddingId`]).
//!
//! Out-of-range ids: the CPU twin panics; the launchers cannot check device ids without a
//! round trip, so the kernels never touch memory out of bounds instead: the forward fills the
//! row of a bad id with NaN (the loss shows it), the backward skips that token.
//!
//! The backward is deterministic without atomics: a bitonic sort of `(id, token)` keys groups
//! repeated ids in token order, then each run of equal ids is summed in fp32 in token order and
//! added to its `dtable` row once. It allocates `max(1024, n.next_power_of_two())` u64 keys.

use super::dtype::GpuFloat;
use super::error::{ensure, CudaResult};
use super::gpu::{grid_1d, grid_rows, Gpu};
use super::sources::EMBEDDING;
use cudarc::driver::{CudaView, CudaViewMut, DeviceRepr, LaunchConfig, PushKernelArg};

const BLOCK: u32 = 256;
/// Keys per shared-memory sort tile (`EMB_TILE` in the kernel); its blocks are half that.
const TILE: usize = 1024;

/// A token-id type of the embedding kernels.
pub trait EmbeddingId: DeviceRepr + Copy + Send + Sync + 'static {
    /// The entry-point suffix (`i64`, `i32`).
    const SUFFIX: &'static str;
}

impl EmbeddingId for i64 {
    const SUFFIX: &'static str = "i64";
}

impl EmbeddingId for i32 {
    const SUFFIX: &'static str = "i32";
}

/// Common length checks; returns `n = ids.len()`.
fn check<I: EmbeddingId>(
    op: &'static str,
    ids: &CudaView<I>,
    table_len: usize,
    rows_len: usize,
    vocab: usize,
    dim: usize,
) -> CudaResult<usize> {
    let n = ids.len();
    ensure(table_len == vocab * dim, op, || {
        format!("table holds {table_len} elements, want [vocab {vocab}, dim {dim}]")
    })?;
    ensure(rows_len == n * dim, op, || {
        format!("rows hold {rows_len} elements, want [n {n}, dim {dim}]")
    })?;
    ensure(
        n < (1 << 30) && dim <= i32::MAX as usize && vocab < u32::MAX as usize,
        op,
        || format!("n {n} / dim {dim} / vocab {vocab} too large"),
    )?;
    Ok(n)
}

/// Embedding forward: `out[i, :] = table[ids[i], :]`; `table: [vocab, dim]`,
/// `out: [n, dim]` with `n = ids.len()`. A row whose id is outside `[0, vocab)` becomes NaN.
pub fn embedding_forward<T: GpuFloat, I: EmbeddingId>(
    gpu: &Gpu,
    ids: &CudaView<I>,
    table: &CudaView<T>,
    vocab: usize,
    dim: usize,
    out: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let n = check("embedding_forward", ids, table.len(), out.len(), vocab, dim)?;
    if n == 0 || dim == 0 {
        return Ok(());
    }
    let name = format!("embedding_fwd_{}_{}", T::SUFFIX, I::SUFFIX);
    let f = gpu.function(&EMBEDDING, &name)?;
    let (n32, v64, d32) = (n as i32, vocab as i64, dim as i32);
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(ids).arg(table).arg(out).arg(&n32).arg(&v64).arg(&d32);
    unsafe { b.launch(grid_rows(n, BLOCK, 0)) }?;
    Ok(())
}

/// Embedding backward: scatter-ADD `dtable[ids[i], :] += dout[i, :]` (repeated ids summed in
/// token order, deterministic); `dout: [n, dim]`, `dtable: [vocab, dim]`. Tokens with an id
/// outside `[0, vocab)` are skipped.
pub fn embedding_backward<T: GpuFloat, I: EmbeddingId>(
    gpu: &Gpu,
    ids: &CudaView<I>,
    dout: &CudaView<T>,
    vocab: usize,
    dim: usize,
    dtable: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let n = check(
        "embedding_backward",
        ids,
        dtable.len(),
        dout.len(),
        vocab,
        dim,
    )?;
    if n == 0 || dim == 0 {
        return Ok(());
    }
    let npow2 = n.next_power_of_two().max(TILE);
    let mut keys = unsafe { gpu.alloc::<u64>(npow2) }?;
    let (n32, v64, d32, p32) = (n as i32, vocab as i64, dim as i32, npow2 as i32);

    // 1. keys = (id << 32) | token, all-ones for bad ids and padding.
    let f = gpu.function(&EMBEDDING, &format!("embedding_bwd_keys_{}", I::SUFFIX))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(ids).arg(&mut keys).arg(&n32).arg(&v64).arg(&p32);
    unsafe { b.launch(grid_1d(npow2, BLOCK)) }?;

    // 2. Bitonic sort: tiles in shared memory, then per merge size k > TILE the strides
    //    j >= TILE in global memory and the rest in shared memory.
    let tiles = LaunchConfig {
        grid_dim: ((npow2 / TILE) as u32, 1, 1),
        block_dim: ((TILE / 2) as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let f = gpu.function(&EMBEDDING, "embedding_bwd_sort_tile")?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(&mut keys);
    unsafe { b.launch(tiles) }?;
    let global = gpu.function(&EMBEDDING, "embedding_bwd_sort_global")?;
    let merge = gpu.function(&EMBEDDING, "embedding_bwd_sort_merge_tile")?;
    let mut k = 2 * TILE;
    while k <= npow2 {
        let k32 = k as i32;
        let mut j = k / 2;
        while j >= TILE {
            let j32 = j as i32;
            let mut b = gpu.stream().launch_builder(&global);
            b.arg(&mut keys).arg(&p32).arg(&k32).arg(&j32);
            unsafe { b.launch(grid_1d(npow2 / 2, BLOCK)) }?;
            j /= 2;
        }
        let mut b = gpu.stream().launch_builder(&merge);
        b.arg(&mut keys).arg(&k32);
        unsafe { b.launch(tiles) }?;
        k *= 2;
    }

    // 3. Sum each run of equal ids in token order, add once to its dtable row.
    let name = format!("embedding_bwd_accumulate_{}", T::SUFFIX);
    let f = gpu.function(&EMBEDDING, &name)?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(&keys).arg(dout).arg(dtable).arg(&n32).arg(&d32);
    let cfg = LaunchConfig {
        grid_dim: (n as u32, dim.div_ceil(BLOCK as usize) as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    unsafe { b.launch(cfg) }?;
    Ok(())
}
