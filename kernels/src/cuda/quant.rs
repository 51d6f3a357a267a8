//! Quantized weights on the GPU (`kernels/cuda/dequant.cu`), the twin of `crate::cpu::quant`:
//! bitsandbytes' NF4/FP4 blockwise 4-bit (plain or double-quantized absmax), 8-bit blockwise,
//! and LLM.int8 row-wise int8.
//!
//! - [`GpuQuant4`] / [`GpuInt8Rows`]: device copies of a CPU [`Quant4`] / [`Int8Rows`]
//!   (`upload`), same layout, so a bnb checkpoint goes CPU struct → GPU struct unchanged.
//! - Dequantization ([`dequantize_4bit`], [`dequantize_blockwise_8bit`],
//!   [`dequantize_int8_rows`]): bit-identical to the CPU in f32 (and so, rounded once, in
//!   bf16/f16).
//! - Decoding ([`gemv_4bit`], [`gemv_int8`]): `y = x·Wᵀ` for up to [`GEMV_MAX_ROWS`] input rows,
//!   reading the packed weight once with 16-byte loads; memory bound.
//! - Training batches ([`dequant_matmul`], [`dequant_matmul_t`]): tiles of W's rows are
//!   dequantized into a scratch buffer of the activation dtype (at most [`TILE_ELEMS`]
//!   elements, 32 MB in bf16) and multiplied with cuBLASLt ([`crate::cuda::blas::gemm`]). This
//!   is the CPU twin's algorithm (`cpu::quant::matmul`), and it lets the GEMM run at tensor-core
//!   speed: for a batch the dequantization (one read of W, one write + read of a tile) is small
//!   next to the GEMM, so a fused dequant-in-the-mainloop kernel would gain little for much
//!   more code. `n ≤ GEMV_MAX_ROWS` rows take the GEMV instead.

use super::blas::{gemm, BlasFloat, GemmSpec};
use super::dtype::{entry, GpuFloat};
use super::error::{ensure, CudaResult};
use super::gpu::Gpu;
use super::sources::DEQUANT;
use crate::cpu::quant::{Absmax, FourBit, Int8Rows, Quant4};
use cudarc::driver::{
    CudaSlice, CudaView, CudaViewMut, DevicePtr, DeviceRepr, LaunchArgs, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};

/// Most input rows the GEMV kernels take at once.
pub const GEMV_MAX_ROWS: usize = 8;

/// Most W elements dequantized at once by the tiled matmuls (16 Mi: 32 MB in bf16).
pub const TILE_ELEMS: usize = 1 << 24;

/// Threads per block of the dequantization kernels, and their grid cap (they stride).
const DEQ_BLOCK: u32 = 256;
const DEQ_MAX_GRID: usize = 4096;
/// Threads per block of the GEMV kernels (4 warps).
const GEMV_BLOCK: u32 = 128;

/// The null device pointer, for the double-quant arguments of a plain absmax.
static NULL: u64 = 0;

/// The per-block absmax of a [`GpuQuant4`], as [`Absmax`].
#[derive(Debug)]
pub enum GpuAbsmax {
    /// One f32 per block.
    Plain(CudaSlice<f32>),
    /// Double quantization: `absmax[b] = nested_code[q[b]]·nested_absmax[b / nested_blocksize]
    /// + offset`.
    Double {
        /// 8-bit codes, one per 4-bit block.
        q: CudaSlice<u8>,
        /// f32 absmax of each nested block.
        nested_absmax: CudaSlice<f32>,
        /// The 256-value code of `q`.
        nested_code: CudaSlice<f32>,
        /// Added after the nested dequantization.
        offset: f32,
        /// Elements per nested block.
        nested_blocksize: usize,
    },
}

/// A 4-bit quantized tensor on the GPU, the device copy of a [`Quant4`] (bitsandbytes layout:
/// two codes per byte, first element in the high nibble; one absmax per block).
#[derive(Debug)]
pub struct GpuQuant4 {
    kind: FourBit,
    blocksize: usize,
    packed: CudaSlice<u8>,
    code: CudaSlice<f32>,
    absmax: GpuAbsmax,
    shape: Vec<usize>,
}

impl GpuQuant4 {
    /// Uploads `q` (checking that its buffers agree with its shape and blocksize).
    pub fn upload(gpu: &Gpu, q: &Quant4) -> CudaResult<GpuQuant4> {
        let numel = q.numel();
        let bs = q.blocksize;
        ensure(bs >= 2 && bs.is_multiple_of(2), "GpuQuant4::upload", || {
            format!("blocksize {bs} (must be even, >= 2)")
        })?;
        ensure(
            q.packed.len() == numel.div_ceil(2) && q.absmax.len() == numel.div_ceil(bs),
            "GpuQuant4::upload",
            || {
                format!(
                    "packed/absmax hold {}/{} for shape {:?}, blocksize {bs}",
                    q.packed.len(),
                    q.absmax.len(),
                    q.shape
                )
            },
        )?;
        let absmax = match &q.absmax {
            Absmax::Plain(v) => GpuAbsmax::Plain(htod_nonempty(gpu, v)?),
            Absmax::Double {
                q: codes,
                nested_absmax,
                nested_code,
                offset,
                nested_blocksize,
            } => {
                let nbs = *nested_blocksize;
                ensure(
                    nbs > 0
                        && nested_code.len() == 256
                        && nested_absmax.len() == codes.len().div_ceil(nbs),
                    "GpuQuant4::upload",
                    || {
                        format!(
                            "nested code/absmax hold {}/{} for {} blocks, nested blocksize {nbs}",
                            nested_code.len(),
                            nested_absmax.len(),
                            codes.len()
                        )
                    },
                )?;
                GpuAbsmax::Double {
                    q: htod_nonempty(gpu, codes)?,
                    nested_absmax: htod_nonempty(gpu, nested_absmax)?,
                    nested_code: gpu.htod(nested_code)?,
                    offset: *offset,
                    nested_blocksize: nbs,
                }
            }
        };
        Ok(GpuQuant4 {
            kind: q.kind,
            blocksize: bs,
            packed: htod_nonempty(gpu, &q.packed)?,
            code: gpu.htod(q.kind.code())?,
            absmax,
            shape: q.shape.clone(),
        })
    }

    /// NF4 or FP4.
    pub fn kind(&self) -> FourBit {
        self.kind
    }

    /// Elements per absmax block.
    pub fn blocksize(&self) -> usize {
        self.blocksize
    }

    /// The tensor shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The per-block absmax.
    pub fn absmax(&self) -> &GpuAbsmax {
        &self.absmax
    }

    /// Bytes a GEMV over the whole tensor reads from W (packed codes + absmax storage): the
    /// numerator of a GB/s figure.
    pub fn weight_bytes(&self) -> usize {
        let blocks = self.numel().div_ceil(self.blocksize);
        let am = match &self.absmax {
            GpuAbsmax::Plain(_) => 4 * blocks,
            GpuAbsmax::Double {
                nested_blocksize, ..
            } => blocks + 4 * blocks.div_ceil(*nested_blocksize),
        };
        self.numel().div_ceil(2) + am
    }

    /// `(out, in)` of a 2-D weight.
    fn dims2(&self, op: &'static str) -> CudaResult<(usize, usize)> {
        ensure(self.shape.len() == 2, op, || {
            format!("4-bit weight of shape {:?} is not 2-D", self.shape)
        })?;
        Ok((self.shape[0], self.shape[1]))
    }

    /// Pushes the absmax arguments `absmax, qa, ncode, offset` (then the caller pushes nbs).
    fn push_absmax<'a>(&'a self, b: &mut LaunchArgs<'a>, offset: &'a f32) {
        match &self.absmax {
            GpuAbsmax::Plain(a) => {
                b.arg(a).arg(&NULL).arg(&NULL).arg(offset);
            }
            GpuAbsmax::Double {
                q,
                nested_absmax,
                nested_code,
                ..
            } => {
                b.arg(nested_absmax).arg(q).arg(nested_code).arg(offset);
            }
        }
    }

    /// `(offset, nested blocksize)` (0 and 1 for a plain absmax).
    fn nested(&self) -> (f32, usize) {
        match &self.absmax {
            GpuAbsmax::Plain(_) => (0.0, 1),
            GpuAbsmax::Double {
                offset,
                nested_blocksize,
                ..
            } => (*offset, *nested_blocksize),
        }
    }
}

/// A row-wise int8 matrix on the GPU, the device copy of an [`Int8Rows`].
#[derive(Debug)]
pub struct GpuInt8Rows {
    q: CudaSlice<i8>,
    absmax: CudaSlice<f32>,
    rows: usize,
    cols: usize,
}

impl GpuInt8Rows {
    /// Uploads `w` (checking its buffer sizes).
    pub fn upload(gpu: &Gpu, w: &Int8Rows) -> CudaResult<GpuInt8Rows> {
        ensure(
            w.q.len() == w.rows * w.cols && w.absmax.len() == w.rows,
            "GpuInt8Rows::upload",
            || {
                format!(
                    "q/absmax hold {}/{} for {}x{}",
                    w.q.len(),
                    w.absmax.len(),
                    w.rows,
                    w.cols
                )
            },
        )?;
        let nonempty_i8 = |v: &[i8]| {
            if v.is_empty() {
                gpu.zeros(1)
            } else {
                gpu.htod(v)
            }
        };
        let nonempty_f32 = |v: &[f32]| {
            if v.is_empty() {
                gpu.zeros(1)
            } else {
                gpu.htod(v)
            }
        };
        Ok(GpuInt8Rows {
            q: nonempty_i8(&w.q)?,
            absmax: nonempty_f32(&w.absmax)?,
            rows: w.rows,
            cols: w.cols,
        })
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Bytes a GEMV over the whole matrix reads from W (codes + row absmax).
    pub fn weight_bytes(&self) -> usize {
        self.rows * self.cols + 4 * self.rows
    }
}

/// A device copy of `v`, or one zero element for an empty `v` (an empty tensor still gets a
/// valid device pointer; its kernels read nothing).
fn htod_nonempty<T: DeviceRepr + ValidAsZeroBits>(gpu: &Gpu, v: &[T]) -> CudaResult<CudaSlice<T>> {
    if v.is_empty() {
        gpu.zeros(1)
    } else {
        gpu.htod(v)
    }
}

/// Whether a device buffer starts on a 16-byte boundary (the fast GEMVs' vector loads).
fn aligned16<T, S: DevicePtr<T>>(gpu: &Gpu, s: &S) -> bool {
    let (p, _sync) = s.device_ptr(gpu.stream());
    p.is_multiple_of(16)
}

/// A grid-stride launch of `units` warps of work, `DEQ_BLOCK` threads per block.
fn warps_grid(units: usize) -> LaunchConfig {
    let blocks = units
        .div_ceil((DEQ_BLOCK / 32) as usize)
        .clamp(1, DEQ_MAX_GRID);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (DEQ_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn fits_i32(v: usize) -> bool {
    v <= i32::MAX as usize
}

/// Dequantizes the flattened elements `start .. start + out.len()` of `w` into `out` (the twin
/// of [`Quant4::dequantize_range`]; `start = 0` and `out.len() = numel` is `dequantize_4bit`).
pub fn dequantize_4bit<T: GpuFloat>(
    gpu: &Gpu,
    w: &GpuQuant4,
    start: usize,
    out: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let count = out.len();
    ensure(start + count <= w.numel(), "dequantize_4bit", || {
        format!(
            "elements {start}..{} of a tensor of {}",
            start + count,
            w.numel()
        )
    })?;
    if count == 0 {
        return Ok(());
    }
    let (offset, nbs) = w.nested();
    let (nbs, bs) = (nbs as u32, w.blocksize as u32);
    let (start64, count64) = (start as u64, count as u64);
    let blocks = (start + count).div_ceil(w.blocksize) - start / w.blocksize;
    let f = gpu.function(&DEQUANT, &entry::<T>("dequant4"))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(&w.packed).arg(&w.code);
    w.push_absmax(&mut b, &offset);
    b.arg(&nbs).arg(&bs).arg(&start64).arg(&count64).arg(out);
    unsafe { b.launch(warps_grid(blocks)) }?;
    Ok(())
}

/// `out[k] = code[q[k]]·absmax[k / blocksize]`: the twin of
/// [`crate::cpu::quant::dequantize_blockwise_8bit`] (`code`: 256 values).
pub fn dequantize_blockwise_8bit<T: GpuFloat>(
    gpu: &Gpu,
    q: &CudaView<u8>,
    absmax: &CudaView<f32>,
    code: &CudaView<f32>,
    blocksize: usize,
    out: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let n = q.len();
    ensure(
        blocksize > 0
            && code.len() == 256
            && absmax.len() == n.div_ceil(blocksize)
            && out.len() == n
            && blocksize <= u32::MAX as usize,
        "dequantize_blockwise_8bit",
        || {
            format!(
                "q/absmax/code/out hold {n}/{}/{}/{}, blocksize {blocksize}",
                absmax.len(),
                code.len(),
                out.len()
            )
        },
    )?;
    if n == 0 {
        return Ok(());
    }
    let (bs, n64) = (blocksize as u32, n as u64);
    let f = gpu.function(&DEQUANT, &entry::<T>("dequant8"))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(q).arg(absmax).arg(code).arg(&bs).arg(&n64).arg(out);
    unsafe { b.launch(warps_grid(n.div_ceil(blocksize))) }?;
    Ok(())
}

/// Dequantizes rows `r0 .. r0 + out.len() / cols` of `w` into `out: [rows, cols]` (the twin of
/// [`Int8Rows::dequantize_row`]; `r0 = 0`, all rows is `dequantize_int8_rows`).
pub fn dequantize_int8_rows<T: GpuFloat>(
    gpu: &Gpu,
    w: &GpuInt8Rows,
    r0: usize,
    out: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let cols = w.cols;
    if out.is_empty() {
        return Ok(());
    }
    let rows = out.len().checked_div(cols).unwrap_or(0);
    ensure(
        cols > 0 && rows * cols == out.len() && r0 + rows <= w.rows && fits_i32(w.rows),
        "dequantize_int8_rows",
        || {
            format!(
                "out holds {} elements from row {r0} of a {}x{cols} matrix",
                out.len(),
                w.rows
            )
        },
    )?;
    let (r0i, rowsi, colsi) = (r0 as i32, rows as i32, cols as i32);
    let f = gpu.function(&DEQUANT, &entry::<T>("dequant_int8_rows"))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(&w.q)
        .arg(&w.absmax)
        .arg(&r0i)
        .arg(&rowsi)
        .arg(&colsi)
        .arg(out);
    unsafe { b.launch(warps_grid(rows)) }?;
    Ok(())
}

/// `(MAXM, rows per warp)` of the fast GEMV instantiation for `m` input rows.
fn gemv_variant(m: usize) -> (usize, usize) {
    match m {
        1 => (1, 4),
        2..=4 => (4, 2),
        _ => (8, 2),
    }
}

/// Checks the GEMV arguments: `x: [m, in]`, `y: [m, out]`, `1 ≤ m ≤ GEMV_MAX_ROWS`.
fn check_gemv(
    op: &'static str,
    (out_f, in_f): (usize, usize),
    x_len: usize,
    m: usize,
    y_len: usize,
) -> CudaResult<()> {
    ensure((1..=GEMV_MAX_ROWS).contains(&m), op, || {
        format!("{m} input rows (1..={GEMV_MAX_ROWS})")
    })?;
    ensure(x_len == m * in_f && y_len == m * out_f, op, || {
        format!("x/y hold {x_len}/{y_len}, want {m}x{in_f} / {m}x{out_f}")
    })?;
    ensure(fits_i32(out_f) && fits_i32(in_f), op, || {
        format!("{out_f}x{in_f} is too large for 32-bit row/column indices")
    })
}

/// Decoding GEMV: `y[j] = W·x[j]` for `x: [m, in]`, `y: [m, out]` (overwritten), `m ≤ 8`, with
/// `W: [out, in]` 4-bit. The fast kernel (16-byte loads of W, one chunk of 32 elements per lane
/// step) needs `in % 32 == 0`, a power-of-two blocksize ≥ 32 (every bnb blocksize) and a
/// power-of-two nested blocksize, and `x` 16-byte aligned; anything else runs the general
/// kernel (one element per lane step).
pub fn gemv_4bit<T: GpuFloat>(
    gpu: &Gpu,
    w: &GpuQuant4,
    x: &CudaView<T>,
    m: usize,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let (out_f, in_f) = w.dims2("gemv_4bit")?;
    check_gemv("gemv_4bit", (out_f, in_f), x.len(), m, y.len())?;
    if out_f == 0 {
        return Ok(());
    }
    let (offset, nbs) = w.nested();
    let bs = w.blocksize;
    let fast = in_f.is_multiple_of(32)
        && bs.is_power_of_two()
        && bs >= 32
        && nbs.is_power_of_two()
        && aligned16(gpu, &w.packed)
        && aligned16(gpu, x);
    let (mi, ni, ki) = (m as i32, out_f as i32, in_f as i32);
    if fast {
        let (maxm, rows_per_warp) = gemv_variant(m);
        let (nbs_log2, bs_log2) = (nbs.trailing_zeros() as i32, bs.trailing_zeros() as i32);
        let f = gpu.function(&DEQUANT, &entry::<T>(&format!("gemv4_m{maxm}")))?;
        let mut b = gpu.stream().launch_builder(&f);
        b.arg(&w.packed).arg(&w.code);
        w.push_absmax(&mut b, &offset);
        b.arg(&nbs_log2)
            .arg(&bs_log2)
            .arg(x)
            .arg(y)
            .arg(&mi)
            .arg(&ni)
            .arg(&ki);
        let rows_per_block = (GEMV_BLOCK as usize / 32) * rows_per_warp;
        unsafe { b.launch(gemv_grid(out_f, rows_per_block)) }?;
    } else {
        ensure(fits_i32(nbs) && fits_i32(bs), "gemv_4bit", || {
            format!("blocksize {bs} / nested blocksize {nbs}")
        })?;
        let (nbsi, bsi) = (nbs as i32, bs as i32);
        let f = gpu.function(&DEQUANT, &entry::<T>("gemv4_any"))?;
        let mut b = gpu.stream().launch_builder(&f);
        b.arg(&w.packed).arg(&w.code);
        w.push_absmax(&mut b, &offset);
        b.arg(&nbsi)
            .arg(&bsi)
            .arg(x)
            .arg(y)
            .arg(&mi)
            .arg(&ni)
            .arg(&ki);
        unsafe { b.launch(gemv_grid(out_f, GEMV_BLOCK as usize / 32)) }?;
    }
    Ok(())
}

/// Decoding GEMV for int8 rows: `y[j] = W·x[j]` (see [`gemv_4bit`]); the fast kernel needs
/// `in % 16 == 0` and `x` 16-byte aligned.
pub fn gemv_int8<T: GpuFloat>(
    gpu: &Gpu,
    w: &GpuInt8Rows,
    x: &CudaView<T>,
    m: usize,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let (out_f, in_f) = w.dims();
    check_gemv("gemv_int8", (out_f, in_f), x.len(), m, y.len())?;
    if out_f == 0 {
        return Ok(());
    }
    let fast = in_f.is_multiple_of(16) && aligned16(gpu, &w.q) && aligned16(gpu, x);
    let (mi, ni, ki) = (m as i32, out_f as i32, in_f as i32);
    let (name, rows_per_block) = if fast {
        let (maxm, rows_per_warp) = gemv_variant(m);
        (
            format!("gemv_int8_m{maxm}"),
            (GEMV_BLOCK as usize / 32) * rows_per_warp,
        )
    } else {
        ("gemv_int8_any".to_string(), GEMV_BLOCK as usize / 32)
    };
    let f = gpu.function(&DEQUANT, &entry::<T>(&name))?;
    let mut b = gpu.stream().launch_builder(&f);
    b.arg(&w.q)
        .arg(&w.absmax)
        .arg(x)
        .arg(y)
        .arg(&mi)
        .arg(&ni)
        .arg(&ki);
    unsafe { b.launch(gemv_grid(out_f, rows_per_block)) }?;
    Ok(())
}

fn gemv_grid(out_f: usize, rows_per_block: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (out_f.div_ceil(rows_per_block).max(1) as u32, 1, 1),
        block_dim: (GEMV_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A quantized matrix `W: [rows, cols]` on the GPU (rows = out features), the twin of
/// [`crate::cpu::quant::QuantMatrix`].
pub trait GpuQuantMatrix {
    /// `(rows, cols)` of W (an error for a 4-bit tensor that is not 2-D).
    fn dims(&self) -> CudaResult<(usize, usize)>;
    /// Dequantizes rows `r0 .. r0 + out.len() / cols` into `out`.
    fn dequant_rows<T: GpuFloat>(
        &self,
        gpu: &Gpu,
        r0: usize,
        out: &mut CudaViewMut<T>,
    ) -> CudaResult<()>;
    /// `y = x·Wᵀ` for `x: [m, cols]`, `m ≤ GEMV_MAX_ROWS`.
    fn gemv<T: GpuFloat>(
        &self,
        gpu: &Gpu,
        x: &CudaView<T>,
        m: usize,
        y: &mut CudaViewMut<T>,
    ) -> CudaResult<()>;
}

impl GpuQuantMatrix for GpuQuant4 {
    fn dims(&self) -> CudaResult<(usize, usize)> {
        self.dims2("dequant matmul")
    }
    fn dequant_rows<T: GpuFloat>(
        &self,
        gpu: &Gpu,
        r0: usize,
        out: &mut CudaViewMut<T>,
    ) -> CudaResult<()> {
        let (_, cols) = self.dims2("dequant matmul")?;
        ensure(
            cols > 0 && out.len().is_multiple_of(cols),
            "dequant matmul",
            || format!("{} elements are not whole rows of {cols}", out.len()),
        )?;
        dequantize_4bit(gpu, self, r0 * cols, out)
    }
    fn gemv<T: GpuFloat>(
        &self,
        gpu: &Gpu,
        x: &CudaView<T>,
        m: usize,
        y: &mut CudaViewMut<T>,
    ) -> CudaResult<()> {
        gemv_4bit(gpu, self, x, m, y)
    }
}

impl GpuQuantMatrix for GpuInt8Rows {
    fn dims(&self) -> CudaResult<(usize, usize)> {
        Ok((self.rows, self.cols))
    }
    fn dequant_rows<T: GpuFloat>(
        &self,
        gpu: &Gpu,
        r0: usize,
        out: &mut CudaViewMut<T>,
    ) -> CudaResult<()> {
        dequantize_int8_rows(gpu, self, r0, out)
    }
    fn gemv<T: GpuFloat>(
        &self,
        gpu: &Gpu,
        x: &CudaView<T>,
        m: usize,
        y: &mut CudaViewMut<T>,
    ) -> CudaResult<()> {
        gemv_int8(gpu, self, x, m, y)
    }
}

/// Rows of W per tile for `cols` columns (at most [`TILE_ELEMS`] elements).
pub fn tile_rows(rows: usize, cols: usize) -> usize {
    (TILE_ELEMS / cols.max(1)).clamp(1, rows.max(1))
}

/// `y = x·dequant(W)ᵀ` with `x: [n, in]`, `W: [out, in]`, `y: [n, out]` (overwritten), the
/// twin of [`crate::cpu::quant::dequant_matmul`]: the GEMV for `n ≤ GEMV_MAX_ROWS`, else
/// dequantized tiles of W times x on cuBLASLt.
pub fn dequant_matmul<T: BlasFloat, Q: GpuQuantMatrix>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &Q,
    n: usize,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let (out_f, in_f) = w.dims()?;
    if (1..=GEMV_MAX_ROWS).contains(&n) {
        return w.gemv(gpu, x, n, y);
    }
    dequant_matmul_tiled(gpu, x, w, n, y, tile_rows(out_f, in_f))
}

/// [`dequant_matmul`] always through tiles of `tile` rows of W (the last tile may be partial).
pub fn dequant_matmul_tiled<T: BlasFloat, Q: GpuQuantMatrix>(
    gpu: &Gpu,
    x: &CudaView<T>,
    w: &Q,
    n: usize,
    y: &mut CudaViewMut<T>,
    tile: usize,
) -> CudaResult<()> {
    let (out_f, in_f) = w.dims()?;
    ensure(
        x.len() == n * in_f && y.len() == n * out_f,
        "dequant_matmul",
        || {
            format!(
                "x/y hold {}/{}, want {n}x{in_f} / {n}x{out_f}",
                x.len(),
                y.len()
            )
        },
    )?;
    if n == 0 || out_f == 0 {
        return Ok(());
    }
    if in_f == 0 {
        gpu.stream().memset_zeros(y)?;
        return Ok(());
    }
    let tile = tile.clamp(1, out_f);
    let mut buf = unsafe { gpu.alloc::<T>(tile * in_f) }?; // W tile: [tile, in]
    for r0 in (0..out_f).step_by(tile) {
        let rows = tile.min(out_f - r0);
        w.dequant_rows(gpu, r0, &mut buf.slice_mut(..rows * in_f))?;
        // y[:, r0..r0+rows] = x · W_tileᵀ: [n, in]·[in, rows] into columns of y (ldc = out)
        let mut spec = GemmSpec::new(n, rows, in_f, false, true);
        spec.ldc = out_f;
        gemm(
            gpu,
            &spec,
            x,
            &buf.slice(..rows * in_f),
            &mut y.slice_mut(r0..),
        )?;
    }
    Ok(())
}

/// `dx = dy·dequant(W)` with `dy: [n, out]`, `W: [out, in]`, `dx: [n, in]` (overwritten), the
/// twin of [`crate::cpu::quant::dequant_matmul_t`] (the backward of [`dequant_matmul`] to its
/// input; W is frozen).
pub fn dequant_matmul_t<T: BlasFloat, Q: GpuQuantMatrix>(
    gpu: &Gpu,
    dy: &CudaView<T>,
    w: &Q,
    n: usize,
    dx: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let (out_f, in_f) = w.dims()?;
    dequant_matmul_t_tiled(gpu, dy, w, n, dx, tile_rows(out_f, in_f))
}

/// [`dequant_matmul_t`] through tiles of `tile` rows of W.
pub fn dequant_matmul_t_tiled<T: BlasFloat, Q: GpuQuantMatrix>(
    gpu: &Gpu,
    dy: &CudaView<T>,
    w: &Q,
    n: usize,
    dx: &mut CudaViewMut<T>,
    tile: usize,
) -> CudaResult<()> {
    let (out_f, in_f) = w.dims()?;
    ensure(
        dy.len() == n * out_f && dx.len() == n * in_f,
        "dequant_matmul_t",
        || {
            format!(
                "dy/dx hold {}/{}, want {n}x{out_f} / {n}x{in_f}",
                dy.len(),
                dx.len()
            )
        },
    )?;
    if n == 0 || in_f == 0 {
        return Ok(());
    }
    gpu.stream().memset_zeros(dx)?;
    if out_f == 0 {
        return Ok(());
    }
    let tile = tile.clamp(1, out_f);
    let mut buf = unsafe { gpu.alloc::<T>(tile * in_f) }?;
    for r0 in (0..out_f).step_by(tile) {
        let rows = tile.min(out_f - r0);
        w.dequant_rows(gpu, r0, &mut buf.slice_mut(..rows * in_f))?;
        // dx += dy[:, r0..r0+rows] · W_tile: [n, rows]·[rows, in] (dy's row stride is out)
        let mut spec = GemmSpec::new(n, in_f, rows, false, false).accumulate();
        spec.lda = out_f;
        gemm(gpu, &spec, &dy.slice(r0..), &buf.slice(..rows * in_f), dx)?;
    }
    Ok(())
}
