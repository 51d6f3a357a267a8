//! The CUDA side of every `Tensor` op: storage checks, view descriptors, output buffers, and
//! the calls into the `lmf_kernels::cuda` launchers. The public ops (elementwise.rs,
//! reduce.rs, ..) validate their arguments exactly as on the CPU and then branch here for
//! `Device::Cuda` tensors, so both devices share one set of shape rules and error messages.
//!
//! Everything on a device runs on its one stream (kernels, copies, pool allocations), so no
//! op here synchronises; only the host copies (`to_vec`, `to_device(Cpu)`, id checks of the
//! index ops) wait for the stream.

use crate::cuda_storage::{gpu as gpu_of, CudaBuf, CudaElement, CudaStorage};
use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::{row_major_strides, Layout, StridedIndex};
use crate::storage::{CpuStorage, Storage};
use crate::tensor::Tensor;
use lmf_kernels::cuda::cudarc::driver::{CudaSlice, CudaView};
use lmf_kernels::cuda::elementwise::{self as ew, Binary, Compare, Unary};
use lmf_kernels::cuda::random::{philox_fill, Draw};
use lmf_kernels::cuda::reduce::{argmax as k_argmax, reduce as k_reduce, Reduce};
use lmf_kernels::cuda::strided::coalesce;
use lmf_kernels::cuda::{cast::cast, gemm, BlasFloat, GemmSpec, Gpu, Strided};
use std::sync::Arc;

/// The view of `s` starting at element `offset` (to the end of the buffer).
fn tail<T: CudaElement>(s: &CudaSlice<T>, offset: usize) -> Result<CudaView<'_, T>> {
    s.try_slice(offset..).ok_or_else(|| {
        Error::shape(
            "cuda view",
            format!("offset {offset} past a {}-element buffer", s.len()),
        )
    })
}

/// Descriptors for operands of one common `shape` (after coalescing their dims jointly).
fn descs(shape: &[usize], strides: &[&[usize]]) -> Result<Vec<Strided>> {
    let (s, st) = coalesce(shape, strides);
    st.iter()
        .map(|x| Strided::new(&s, x).map_err(Error::from))
        .collect()
}

impl Tensor {
    /// A contiguous tensor owning the device buffer `buf` with `shape`.
    pub(crate) fn from_cuda_buf(gpu: &Arc<Gpu>, buf: CudaBuf, shape: &[usize]) -> Tensor {
        let storage = CudaStorage {
            buf,
            gpu: gpu.clone(),
        };
        Tensor {
            dtype: storage.dtype(),
            device: storage.device(),
            storage: Arc::new(Storage::Cuda(storage)),
            layout: Layout::contiguous(shape),
        }
    }

    /// The device storage of a CUDA tensor.
    pub(crate) fn cuda_storage(&self) -> Result<&CudaStorage> {
        self.storage.cuda().ok_or_else(|| {
            Error::device(
                "cuda op",
                format!("tensor {:?} is not on a CUDA device", self.shape()),
            )
        })
    }

    /// The typed buffer of this CUDA tensor, from the view's first element on.
    fn cuda_tail<T: CudaElement>(&self) -> Result<CudaView<'_, T>> {
        tail(self.cuda_storage()?.slice::<T>()?, self.layout.offset())
    }

    /// The exact elements of a contiguous CUDA tensor.
    pub(crate) fn cuda_dense<T: CudaElement>(&self) -> Result<CudaView<'_, T>> {
        debug_assert!(self.is_contiguous());
        let s = self.cuda_storage()?.slice::<T>()?;
        let (off, n) = (self.layout.offset(), self.elem_count());
        s.try_slice(off..off + n).ok_or_else(|| {
            Error::shape(
                "cuda view",
                format!(
                    "elements {off}..{} of a {}-element buffer",
                    off + n,
                    s.len()
                ),
            )
        })
    }

    // ---- constructors and copies -------------------------------------------------------

    /// A CUDA tensor holding the host buffer `cpu` (row-major, `shape`).
    pub(crate) fn cuda_from_host(
        cpu: &CpuStorage,
        shape: &[usize],
        ordinal: usize,
    ) -> Result<Tensor> {
        let gpu = gpu_of(ordinal)?;
        let s = CudaStorage::from_cpu(&gpu, cpu)?;
        Ok(Tensor::from_cuda_buf(&gpu, s.buf, shape))
    }

    /// `n = prod(shape)` copies of `value` (converted to `dtype`) on `cuda:ordinal`.
    pub(crate) fn cuda_full(
        value: f64,
        shape: &[usize],
        dtype: DType,
        ordinal: usize,
    ) -> Result<Tensor> {
        fn go<T: CudaElement>(gpu: &Arc<Gpu>, value: f64, shape: &[usize]) -> Result<Tensor> {
            let n: usize = shape.iter().product();
            let mut out = CudaStorage::alloc::<T>(gpu, n)?;
            ew::fill(gpu, &mut out.slice_mut(0..n), value)?;
            Ok(Tensor::from_cuda_buf(gpu, T::wrap(out), shape))
        }
        let gpu = gpu_of(ordinal)?;
        with_dtype!(dtype, T => go::<T>(&gpu, value, shape))
    }

    /// A fresh buffer with this CUDA tensor's elements, row-major, converted `S -> D`.
    fn cuda_cast_raw<S: CudaElement, D: CudaElement>(&self) -> Result<CudaSlice<D>> {
        let gpu = &self.cuda_storage()?.gpu;
        let n = self.elem_count();
        let mut out = CudaStorage::alloc::<D>(gpu, n)?;
        if n > 0 {
            let x = self.cuda_tail::<S>()?;
            let d = descs(
                self.shape(),
                &[self.strides(), &row_major_strides(self.shape())],
            )?;
            cast(gpu, &x, &d[0], &mut out.slice_mut(0..n), &d[1])?;
        }
        Ok(out)
    }

    /// A fresh contiguous copy converted to `dtype` (always a new buffer).
    pub(crate) fn cuda_copy_as(&self, dtype: DType) -> Result<Tensor> {
        let gpu = self.cuda_storage()?.gpu.clone();
        let buf = with_dtype!(dtype, D => with_dtype!(self.dtype, S => D::wrap(self.cuda_cast_raw::<S, D>()?)));
        Ok(Tensor::from_cuda_buf(&gpu, buf, self.shape()))
    }

    /// `to_dtype` on CUDA (the cast kernel).
    pub(crate) fn cuda_to_dtype(&self, dtype: DType) -> Result<Tensor> {
        self.cuda_copy_as(dtype)
    }

    /// `contiguous` on CUDA (the strided-copy kernel; `self` when already contiguous).
    pub(crate) fn cuda_contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        self.cuda_copy_as(self.dtype)
    }

    /// The view's elements on the host, row-major (D2H: waits for the stream).
    pub(crate) fn cuda_to_host(&self) -> Result<CpuStorage> {
        let c = self.cuda_contiguous()?;
        c.cuda_storage()?
            .range_to_cpu(c.layout.offset(), c.elem_count())
    }

    /// `to_device` when either side is CUDA.
    pub(crate) fn cuda_to_device(&self, device: Device) -> Result<Tensor> {
        match (self.device, device) {
            (Device::Cpu, Device::Cuda(n)) => {
                let cpu = self.storage.cpu()?;
                match self.layout.contiguous_range() {
                    // The host buffer is uploaded as it is when the view covers all of it.
                    Some(r) if r.start == 0 && r.end == cpu.len() => {
                        Tensor::cuda_from_host(cpu, self.shape(), n)
                    }
                    // Otherwise the view's elements, row-major (one host gather).
                    _ => {
                        let host = with_dtype!(self.dtype, T => T::into_storage(cpu.gather::<T>(&self.layout)));
                        Tensor::cuda_from_host(&host, self.shape(), n)
                    }
                }
            }
            (Device::Cuda(_), Device::Cpu) => {
                Ok(Tensor::from_cpu_storage(self.cuda_to_host()?, self.shape()))
            }
            (Device::Cuda(a), Device::Cuda(b)) if a == b => Ok(self.clone()),
            (Device::Cuda(_), Device::Cuda(b)) => {
                // Between devices through the host (a sync point).
                Tensor::cuda_from_host(&self.cuda_to_host()?, self.shape(), b)
            }
            (Device::Cpu, Device::Cpu) => Ok(self.clone()),
        }
    }

    // ---- elementwise ------------------------------------------------------------------

    /// A unary map on CUDA (`a`, `b`: the op's scalars).
    pub(crate) fn cuda_unary(&self, op: Unary, a: f64, b: f64) -> Result<Tensor> {
        fn go<T: CudaElement>(t: &Tensor, op: Unary, a: f64, b: f64) -> Result<Tensor> {
            let gpu = &t.cuda_storage()?.gpu;
            let n = t.elem_count();
            let mut out = CudaStorage::alloc::<T>(gpu, n)?;
            if n > 0 {
                let d = descs(t.shape(), &[t.strides()])?;
                ew::unary(
                    gpu,
                    &t.cuda_tail::<T>()?,
                    &d[0],
                    op,
                    a,
                    b,
                    &mut out.slice_mut(0..n),
                )?;
            }
            Ok(Tensor::from_cuda_buf(gpu, T::wrap(out), t.shape()))
        }
        with_dtype!(self.dtype, T => go::<T>(self, op, a, b))
    }

    /// A broadcasting binary op on CUDA (`shape`: the broadcast shape, already checked).
    pub(crate) fn cuda_binary(&self, rhs: &Tensor, shape: &[usize], op: Binary) -> Result<Tensor> {
        fn go<T: CudaElement>(
            a: &Tensor,
            b: &Tensor,
            shape: &[usize],
            op: Binary,
        ) -> Result<Tensor> {
            let gpu = &a.cuda_storage()?.gpu;
            let n: usize = shape.iter().product();
            let mut out = CudaStorage::alloc::<T>(gpu, n)?;
            if n > 0 {
                let (la, lb) = (a.layout.broadcast_as(shape)?, b.layout.broadcast_as(shape)?);
                let d = descs(shape, &[la.strides(), lb.strides()])?;
                let (va, vb) = (a.cuda_tail::<T>()?, b.cuda_tail::<T>()?);
                ew::binary(gpu, &va, &d[0], &vb, &d[1], op, &mut out.slice_mut(0..n))?;
            }
            Ok(Tensor::from_cuda_buf(gpu, T::wrap(out), shape))
        }
        with_dtype!(self.dtype, T => go::<T>(self, rhs, shape, op))
    }

    /// A broadcasting comparison on CUDA, giving a U8 mask.
    pub(crate) fn cuda_compare(
        &self,
        rhs: &Tensor,
        shape: &[usize],
        op: Compare,
    ) -> Result<Tensor> {
        fn go<T: CudaElement>(
            a: &Tensor,
            b: &Tensor,
            shape: &[usize],
            op: Compare,
        ) -> Result<Tensor> {
            let gpu = &a.cuda_storage()?.gpu;
            let n: usize = shape.iter().product();
            let mut out = CudaStorage::alloc::<u8>(gpu, n)?;
            if n > 0 {
                let (la, lb) = (a.layout.broadcast_as(shape)?, b.layout.broadcast_as(shape)?);
                let d = descs(shape, &[la.strides(), lb.strides()])?;
                let (va, vb) = (a.cuda_tail::<T>()?, b.cuda_tail::<T>()?);
                ew::compare(gpu, &va, &d[0], &vb, &d[1], op, &mut out.slice_mut(0..n))?;
            }
            Ok(Tensor::from_cuda_buf(gpu, CudaBuf::U8(out), shape))
        }
        with_dtype!(self.dtype, T => go::<T>(self, rhs, shape, op))
    }

    /// `where_cond` on CUDA (`self` the U8 mask; `shape` the common broadcast shape).
    pub(crate) fn cuda_where(&self, t: &Tensor, f: &Tensor, shape: &[usize]) -> Result<Tensor> {
        fn go<T: CudaElement>(
            m: &Tensor,
            t: &Tensor,
            f: &Tensor,
            shape: &[usize],
        ) -> Result<Tensor> {
            let gpu = &m.cuda_storage()?.gpu;
            let n: usize = shape.iter().product();
            let mut out = CudaStorage::alloc::<T>(gpu, n)?;
            if n > 0 {
                let lm = m.layout.broadcast_as(shape)?;
                let lt = t.layout.broadcast_as(shape)?;
                let lf = f.layout.broadcast_as(shape)?;
                let d = descs(shape, &[lm.strides(), lt.strides(), lf.strides()])?;
                let (vm, vt, vf) = (
                    m.cuda_tail::<u8>()?,
                    t.cuda_tail::<T>()?,
                    f.cuda_tail::<T>()?,
                );
                ew::where_cond(
                    gpu,
                    &vm,
                    &d[0],
                    &vt,
                    &d[1],
                    &vf,
                    &d[2],
                    &mut out.slice_mut(0..n),
                )?;
            }
            Ok(Tensor::from_cuda_buf(gpu, T::wrap(out), shape))
        }
        with_dtype!(t.dtype, T => go::<T>(self, t, f, shape))
    }

    // ---- reductions -------------------------------------------------------------------

    /// `x: [outer, r, inner]` (this tensor made contiguous) reduced over `r` into `shape`.
    pub(crate) fn cuda_reduce(
        &self,
        (outer, r, inner): (usize, usize, usize),
        op: Reduce,
        scale: f64,
        shape: &[usize],
    ) -> Result<Tensor> {
        fn go<T: CudaElement>(
            x: &Tensor,
            (outer, r, inner): (usize, usize, usize),
            op: Reduce,
            scale: f64,
            shape: &[usize],
        ) -> Result<Tensor> {
            let gpu = &x.cuda_storage()?.gpu;
            let n = outer * inner;
            let mut out = CudaStorage::alloc::<T>(gpu, n)?;
            k_reduce(
                gpu,
                &x.cuda_dense::<T>()?,
                outer,
                r,
                inner,
                op,
                scale,
                &mut out.slice_mut(0..n),
            )?;
            Ok(Tensor::from_cuda_buf(gpu, T::wrap(out), shape))
        }
        let x = self.cuda_contiguous()?;
        with_dtype!(self.dtype, T => go::<T>(&x, (outer, r, inner), op, scale, shape))
    }

    /// Argmax over `r` of `x: [outer, r, inner]` (I64) into `shape`.
    pub(crate) fn cuda_argmax(
        &self,
        (outer, r, inner): (usize, usize, usize),
        shape: &[usize],
    ) -> Result<Tensor> {
        fn go<T: CudaElement>(
            x: &Tensor,
            (outer, r, inner): (usize, usize, usize),
            shape: &[usize],
        ) -> Result<Tensor> {
            let gpu = &x.cuda_storage()?.gpu;
            let n = outer * inner;
            let mut out = CudaStorage::alloc::<i64>(gpu, n)?;
            k_argmax(
                gpu,
                &x.cuda_dense::<T>()?,
                outer,
                r,
                inner,
                &mut out.slice_mut(0..n),
            )?;
            Ok(Tensor::from_cuda_buf(gpu, CudaBuf::I64(out), shape))
        }
        let x = self.cuda_contiguous()?;
        with_dtype!(self.dtype, T => go::<T>(&x, (outer, r, inner), shape))
    }

    /// Softmax (or log-softmax) over the last dim of this (contiguous) CUDA tensor.
    pub(crate) fn cuda_softmax_last(&self, log: bool) -> Result<Tensor> {
        fn go<T: CudaElement>(x: &Tensor, log: bool) -> Result<Tensor> {
            let gpu = &x.cuda_storage()?.gpu;
            let total = x.elem_count();
            let n = x.shape().last().copied().unwrap_or(1);
            let rows = total.checked_div(n).unwrap_or(0);
            let mut out = CudaStorage::alloc::<T>(gpu, total)?;
            lmf_kernels::cuda::softmax::softmax(
                gpu,
                &x.cuda_dense::<T>()?,
                rows,
                n,
                log,
                &mut out.slice_mut(0..total),
            )?;
            Ok(Tensor::from_cuda_buf(gpu, T::wrap(out), x.shape()))
        }
        let x = self.cuda_contiguous()?;
        with_dtype!(self.dtype, T => go::<T>(&x, log))
    }

    // ---- indexing ---------------------------------------------------------------------

    /// The checked ids as a device i64 buffer on this tensor's device.
    fn cuda_ids(&self, idx: &[usize]) -> Result<CudaSlice<i64>> {
        let gpu = &self.cuda_storage()?.gpu;
        let v: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        if v.is_empty() {
            return Ok(gpu.zeros::<i64>(1)?);
        }
        Ok(gpu.htod(&v)?)
    }

    /// `index_select` on CUDA with ids already checked (`shape`: the result's shape).
    pub(crate) fn cuda_index_select(
        &self,
        idx: &[usize],
        shape: &[usize],
        (outer, size, inner): (usize, usize, usize),
    ) -> Result<Tensor> {
        fn go<T: CudaElement>(
            x: &Tensor,
            ids: &CudaSlice<i64>,
            nids: usize,
            shape: &[usize],
            (outer, size, inner): (usize, usize, usize),
        ) -> Result<Tensor> {
            let gpu = &x.cuda_storage()?.gpu;
            let n = outer * nids * inner;
            let mut out = CudaStorage::alloc::<T>(gpu, n)?;
            lmf_kernels::cuda::index::index_select(
                gpu,
                &x.cuda_dense::<T>()?,
                &ids.slice(0..nids),
                outer,
                size,
                inner,
                &mut out.slice_mut(0..n),
            )?;
            Ok(Tensor::from_cuda_buf(gpu, T::wrap(out), shape))
        }
        let x = self.cuda_contiguous()?;
        let ids = self.cuda_ids(idx)?;
        with_dtype!(self.dtype, T => go::<T>(&x, &ids, idx.len(), shape, (outer, size, inner)))
    }

    /// `index_add` on CUDA with ids and shapes already checked: accumulates in the compute
    /// type (f32 for F32/BF16/F16, f64 otherwise), rounding once at the end, like the CPU.
    pub(crate) fn cuda_index_add(
        &self,
        idx: &[usize],
        src: &Tensor,
        (outer, size, inner): (usize, usize, usize),
    ) -> Result<Tensor> {
        fn go<C: CudaElement>(
            me: &Tensor,
            src: &Tensor,
            ids: &CudaSlice<i64>,
            nids: usize,
            (outer, size, inner): (usize, usize, usize),
        ) -> Result<Tensor> {
            let gpu = me.cuda_storage()?.gpu.clone();
            let mut acc: CudaSlice<C> = with_dtype!(me.dtype, S => me.cuda_cast_raw::<S, C>()?);
            let s = src.to_dtype(C::DTYPE)?.cuda_contiguous()?;
            let n = me.elem_count();
            lmf_kernels::cuda::index::index_add(
                &gpu,
                &mut acc.slice_mut(0..n),
                &ids.slice(0..nids),
                &s.cuda_dense::<C>()?,
                outer,
                size,
                inner,
            )?;
            Tensor::from_cuda_buf(&gpu, C::wrap(acc), me.shape()).to_dtype(me.dtype)
        }
        let ids = self.cuda_ids(idx)?;
        if self.dtype.computes_in_f32() {
            go::<f32>(self, src, &ids, idx.len(), (outer, size, inner))
        } else {
            go::<f64>(self, src, &ids, idx.len(), (outer, size, inner))
        }
    }

    /// `cat` on CUDA (arguments already checked; `shape` the result's shape).
    pub(crate) fn cuda_cat(tensors: &[&Tensor], dim: usize, shape: &[usize]) -> Result<Tensor> {
        fn go<T: CudaElement>(tensors: &[&Tensor], dim: usize, shape: &[usize]) -> Result<Tensor> {
            let gpu = tensors[0].cuda_storage()?.gpu.clone();
            let n: usize = shape.iter().product();
            let mut out = CudaStorage::alloc::<T>(&gpu, n)?;
            let whole = Layout::contiguous(shape);
            let mut start = 0;
            for t in tensors {
                let len = t.shape()[dim];
                let dst = whole.narrow(dim, start, len)?;
                start += len;
                if t.elem_count() == 0 {
                    continue;
                }
                let d = descs(t.shape(), &[t.strides(), dst.strides()])?;
                let mut view = out.slice_mut(dst.offset()..n);
                cast(&gpu, &t.cuda_tail::<T>()?, &d[0], &mut view, &d[1])?;
            }
            Ok(Tensor::from_cuda_buf(&gpu, T::wrap(out), shape))
        }
        with_dtype!(tensors[0].dtype, T => go::<T>(tensors, dim, shape))
    }

    // ---- matmul -----------------------------------------------------------------------

    /// `[batch.., m, k] x [batch.., k, n]` on CUDA through cuBLASLt (`a`, `b` have rank >= 2
    /// and broadcast to `batch`); f32 (exact fp32), bf16/f16 (fp32 accumulation).
    pub(crate) fn cuda_matmul(
        a: &Tensor,
        b: &Tensor,
        batch: &[usize],
        (m, k, n): (usize, usize, usize),
    ) -> Result<Tensor> {
        match a.dtype {
            DType::F32 => matmul_impl::<f32>(a, b, batch, (m, k, n)),
            DType::BF16 => matmul_impl::<half::bf16>(a, b, batch, (m, k, n)),
            DType::F16 => matmul_impl::<half::f16>(a, b, batch, (m, k, n)),
            d => Err(Error::cuda_unsupported(
                "matmul",
                format!("{d} matmul; use f32, bf16 or f16"),
            )),
        }
    }

    // ---- random -----------------------------------------------------------------------

    /// A Philox tensor on `cuda:ordinal` (`dtype` already checked to be a float type).
    pub(crate) fn cuda_random(
        seed: u64,
        offset: u64,
        shape: &[usize],
        dtype: DType,
        ordinal: usize,
        draw: Draw,
    ) -> Result<Tensor> {
        fn go<T: CudaElement>(
            gpu: &Arc<Gpu>,
            seed: u64,
            offset: u64,
            shape: &[usize],
            draw: Draw,
        ) -> Result<Tensor> {
            let n: usize = shape.iter().product();
            let mut out = CudaStorage::alloc::<T>(gpu, n)?;
            philox_fill(gpu, &mut out.slice_mut(0..n), seed, offset, draw)?;
            Ok(Tensor::from_cuda_buf(gpu, T::wrap(out), shape))
        }
        let gpu = gpu_of(ordinal)?;
        match dtype {
            DType::F32 => go::<f32>(&gpu, seed, offset, shape, draw),
            DType::F64 => go::<f64>(&gpu, seed, offset, shape, draw),
            DType::BF16 => go::<half::bf16>(&gpu, seed, offset, shape, draw),
            DType::F16 => go::<half::f16>(&gpu, seed, offset, shape, draw),
            d => Err(Error::dtype(
                "random",
                format!("needs a float dtype, got {d}"),
            )),
        }
    }
}

/// How cuBLASLt can read a `[rows, cols]` matrix with strides `(rs, cs)`: `(transposed, ld)`,
/// or `None` when neither dim is unit-stride (the operand is then copied).
fn gemm_layout(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(bool, usize)> {
    if cols <= 1 || cs == 1 {
        let ld = if rows <= 1 { cols.max(1) } else { rs };
        if ld >= cols.max(1) {
            return Some((false, ld));
        }
    }
    if rows <= 1 || rs == 1 {
        let ld = if cols <= 1 { rows.max(1) } else { cs };
        if ld >= rows.max(1) {
            return Some((true, ld));
        }
    }
    None
}

/// cuBLASLt picks kernels assuming 256-byte aligned matrix pointers; pool allocations are.
const GEMM_ALIGN_BYTES: usize = 256;

/// A gemm operand: the tensor whose buffer is read, its layout broadcast to
/// `[batch.., rows, cols]`, `(trans, ld)`, the first batch entry's offset and the batch stride.
struct GemmOperand {
    t: Tensor,
    trans: bool,
    ld: usize,
    base: usize,
    stride: usize,
}

/// Plans how gemm reads `t` broadcast to `full = [batch.., rows, cols]`: in place when the
/// matrix has a unit stride, the batch entries are evenly spaced and the start is aligned;
/// else from a fresh dense copy of the broadcast view.
fn gemm_operand<T: CudaElement>(t: &Tensor, full: &[usize]) -> Result<GemmOperand> {
    let plan = |t: &Tensor| -> Result<Option<GemmOperand>> {
        let l = t.layout.broadcast_as(full)?;
        let r = l.rank();
        let (rows, cols) = (full[r - 2], full[r - 1]);
        let Some((trans, ld)) = gemm_layout(rows, cols, l.strides()[r - 2], l.strides()[r - 1])
        else {
            return Ok(None);
        };
        let offs: Vec<usize> =
            StridedIndex::new(&full[..r - 2], &l.strides()[..r - 2], l.offset(), 0).collect();
        let base = offs.first().copied().unwrap_or(l.offset());
        let stride = if offs.len() > 1 {
            offs[1] as i64 - offs[0] as i64
        } else {
            0
        };
        let even = stride >= 0 && offs.windows(2).all(|w| w[1] as i64 - w[0] as i64 == stride);
        let aligned = (base * std::mem::size_of::<T>()).is_multiple_of(GEMM_ALIGN_BYTES);
        Ok((even && aligned).then(|| GemmOperand {
            t: t.clone(),
            trans,
            ld,
            base,
            stride: stride as usize,
        }))
    };
    if let Some(p) = plan(t)? {
        return Ok(p);
    }
    let dense = t.broadcast_as(full)?.cuda_copy_as(t.dtype)?;
    plan(&dense)?.ok_or_else(|| Error::Cuda("matmul: a dense copy is not gemm-readable".into()))
}

fn matmul_impl<T: CudaElement + BlasFloat>(
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    (m, k, n): (usize, usize, usize),
) -> Result<Tensor> {
    let gpu = a.cuda_storage()?.gpu.clone();
    let nb: usize = batch.iter().product();
    let mut out_shape = batch.to_vec();
    out_shape.extend([m, n]);
    let total = nb * m * n;
    if k == 0 {
        // An empty contraction: zeros (cuBLASLt rejects k = 0).
        return Tensor::cuda_full(0.0, &out_shape, a.dtype, gpu.ordinal());
    }
    let mut c = CudaStorage::alloc::<T>(&gpu, total)?;
    if total > 0 {
        let mut fa = batch.to_vec();
        fa.extend([m, k]);
        let mut fb = batch.to_vec();
        fb.extend([k, n]);
        let pa = gemm_operand::<T>(a, &fa)?;
        let pb = gemm_operand::<T>(b, &fb)?;
        let spec = GemmSpec {
            m,
            n,
            k,
            trans_a: pa.trans,
            trans_b: pb.trans,
            lda: pa.ld,
            ldb: pb.ld,
            ldc: n,
            batch: nb,
            stride_a: pa.stride,
            stride_b: pb.stride,
            stride_c: m * n,
            alpha: 1.0,
            beta: 0.0,
        };
        let va = tail(pa.t.cuda_storage()?.slice::<T>()?, pa.base)?;
        let vb = tail(pb.t.cuda_storage()?.slice::<T>()?, pb.base)?;
        gemm(&gpu, &spec, &va, &vb, &mut c.slice_mut(0..total))?;
    }
    Ok(Tensor::from_cuda_buf(&gpu, T::wrap(c), &out_shape))
}

#[cfg(test)]
mod tests {
    use super::gemm_layout;

    #[test]
    fn gemm_reads_unit_stride_matrices_in_place() {
        // row-major [4, 6] and its transpose view [6, 4] (strides [1, 6])
        assert_eq!(gemm_layout(4, 6, 6, 1), Some((false, 6)));
        assert_eq!(gemm_layout(6, 4, 1, 6), Some((true, 6)));
        // a narrowed row-major matrix keeps its row stride
        assert_eq!(gemm_layout(4, 3, 6, 1), Some((false, 6)));
        // one row / one column: any stride on the size-1 dim
        assert_eq!(gemm_layout(1, 5, 999, 1), Some((false, 5)));
        assert_eq!(gemm_layout(9, 1, 1, 1), Some((false, 1)));
        assert_eq!(gemm_layout(9, 1, 1, 0), Some((false, 1)));
        // neither dim unit-stride, or rows broadcast (stride 0): copied
        assert_eq!(gemm_layout(4, 6, 12, 2), None);
        assert_eq!(gemm_layout(4, 6, 0, 1), None);
    }
}
