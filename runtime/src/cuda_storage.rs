//! CUDA storage: one typed device buffer (`CudaSlice<f32|f64|bf16|f16|i32|i64|u8>`) from the
//! device's stream-ordered pool, plus the shared `Gpu` handle (one stream per device, so
//! every kernel, copy and free on a device is ordered on that stream).
//!
//! Host <-> device copies live here: `CudaStorage::from_cpu` (H2D) and
//! `CudaStorage::range_to_cpu` (D2H, a sync point: it waits for the stream).

use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::storage::CpuStorage;
use half::{bf16, f16};
use lmf_kernels::cuda::cudarc::driver::CudaSlice;
use lmf_kernels::cuda::{CudaError, Gpu, GpuElem};
use std::sync::Arc;

/// A typed device buffer.
pub enum CudaBuf {
    /// f32 elements.
    F32(CudaSlice<f32>),
    /// f64 elements.
    F64(CudaSlice<f64>),
    /// bf16 elements.
    BF16(CudaSlice<bf16>),
    /// f16 elements.
    F16(CudaSlice<f16>),
    /// i32 elements.
    I32(CudaSlice<i32>),
    /// i64 elements.
    I64(CudaSlice<i64>),
    /// u8 elements.
    U8(CudaSlice<u8>),
}

/// Runs `$body` with `$v` bound to the typed `CudaSlice` inside a `CudaBuf`.
macro_rules! with_cuda_buf {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            CudaBuf::F32($v) => $body,
            CudaBuf::F64($v) => $body,
            CudaBuf::BF16($v) => $body,
            CudaBuf::F16($v) => $body,
            CudaBuf::I32($v) => $body,
            CudaBuf::I64($v) => $body,
            CudaBuf::U8($v) => $body,
        }
    };
}

impl From<CudaError> for Error {
    fn from(e: CudaError) -> Error {
        Error::Cuda(e.to_string())
    }
}

/// A device buffer and the device it lives on.
pub struct CudaStorage {
    /// The elements.
    pub buf: CudaBuf,
    /// The device (its stream orders every use of `buf`).
    pub gpu: Arc<Gpu>,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage({} x {}, cuda:{})",
            self.len(),
            self.dtype(),
            self.gpu.ordinal()
        )
    }
}

/// An element type that can live in a `CudaBuf` (every `Element`).
pub trait CudaElement: Element + GpuElem {
    /// The typed buffer, if `b` holds this type.
    #[doc(hidden)]
    fn buf(b: &CudaBuf) -> Option<&CudaSlice<Self>>;
    /// Wraps a typed buffer.
    #[doc(hidden)]
    fn wrap(s: CudaSlice<Self>) -> CudaBuf;
}

macro_rules! cuda_element {
    ($t:ty, $v:ident) => {
        impl CudaElement for $t {
            fn buf(b: &CudaBuf) -> Option<&CudaSlice<Self>> {
                match b {
                    CudaBuf::$v(s) => Some(s),
                    _ => None,
                }
            }
            fn wrap(s: CudaSlice<Self>) -> CudaBuf {
                CudaBuf::$v(s)
            }
        }
    };
}
cuda_element!(f32, F32);
cuda_element!(f64, F64);
cuda_element!(bf16, BF16);
cuda_element!(f16, F16);
cuda_element!(i32, I32);
cuda_element!(i64, I64);
cuda_element!(u8, U8);

/// The shared handle of CUDA device `ordinal`, or `Error::Cuda` saying why not.
pub fn gpu(ordinal: usize) -> Result<Arc<Gpu>> {
    Ok(Gpu::get(ordinal)?)
}

impl CudaStorage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match &self.buf {
            CudaBuf::F32(_) => DType::F32,
            CudaBuf::F64(_) => DType::F64,
            CudaBuf::BF16(_) => DType::BF16,
            CudaBuf::F16(_) => DType::F16,
            CudaBuf::I32(_) => DType::I32,
            CudaBuf::I64(_) => DType::I64,
            CudaBuf::U8(_) => DType::U8,
        }
    }

    /// Number of elements in the buffer.
    pub fn len(&self) -> usize {
        with_cuda_buf!(&self.buf, s => s.len())
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Device::Cuda(ordinal)`.
    pub fn device(&self) -> Device {
        Device::Cuda(self.gpu.ordinal())
    }

    /// The typed buffer; `T` must be the dtype.
    pub fn slice<T: CudaElement>(&self) -> Result<&CudaSlice<T>> {
        T::buf(&self.buf).ok_or_else(|| {
            Error::dtype(
                "cuda storage",
                format!("buffer is {} but {} was asked for", self.dtype(), T::DTYPE),
            )
        })
    }

    /// `n` uninitialised elements of `T` on `gpu` (every kernel output is fully written);
    /// never a zero-byte allocation.
    pub fn alloc<T: CudaElement>(gpu: &Arc<Gpu>, n: usize) -> Result<CudaSlice<T>> {
        // SAFETY: callers write all n elements before anything reads them.
        Ok(unsafe { gpu.alloc::<T>(n.max(1)) }?)
    }

    /// A device copy of a host buffer (H2D on the device's stream).
    pub fn from_cpu(gpu: &Arc<Gpu>, cpu: &CpuStorage) -> Result<CudaStorage> {
        fn up<T: CudaElement>(gpu: &Arc<Gpu>, v: &[T]) -> Result<CudaBuf> {
            if v.is_empty() {
                return Ok(T::wrap(gpu.zeros::<T>(1)?));
            }
            Ok(T::wrap(gpu.htod(v)?))
        }
        let buf = match cpu {
            CpuStorage::F32(v) => up(gpu, v)?,
            CpuStorage::F64(v) => up(gpu, v)?,
            CpuStorage::BF16(v) => up(gpu, v)?,
            CpuStorage::F16(v) => up(gpu, v)?,
            CpuStorage::I32(v) => up(gpu, v)?,
            CpuStorage::I64(v) => up(gpu, v)?,
            CpuStorage::U8(v) => up(gpu, v)?,
        };
        Ok(CudaStorage {
            buf,
            gpu: gpu.clone(),
        })
    }

    /// A host copy of elements `start .. start + n` (D2H; waits for the stream).
    pub fn range_to_cpu(&self, start: usize, n: usize) -> Result<CpuStorage> {
        fn down<T: CudaElement>(
            gpu: &Gpu,
            s: &CudaSlice<T>,
            start: usize,
            n: usize,
        ) -> Result<CpuStorage> {
            if n == 0 {
                return Ok(T::into_storage(Vec::new()));
            }
            if start + n > s.len() {
                return Err(Error::shape(
                    "to_host",
                    format!(
                        "range {start}..{} of a {}-element buffer",
                        start + n,
                        s.len()
                    ),
                ));
            }
            Ok(T::into_storage(gpu.dtoh(&s.slice(start..start + n))?))
        }
        let g = &self.gpu;
        with_cuda_buf!(&self.buf, s => down(g, s, start, n))
    }
}
