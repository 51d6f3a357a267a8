//! Storage: the buffers behind tensors. `Storage::Cpu` holds one typed host vector,
//! `Storage::Cuda` one typed device buffer (see `cuda_storage`).

use crate::cuda_storage::CudaStorage;
use crate::device::Device;
use crate::dtype::{cast, DType, Element};
use crate::error::{Error, Result};
use crate::layout::{gather_map, Layout};
use half::{bf16, f16};
use rayon::prelude::*;

/// Elements per rayon task: below this, splitting work costs more than it saves.
pub(crate) const PAR_CHUNK: usize = 32 * 1024;

/// A typed host buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum CpuStorage {
    /// f32 elements.
    F32(Vec<f32>),
    /// f64 elements.
    F64(Vec<f64>),
    /// bf16 elements.
    BF16(Vec<bf16>),
    /// f16 elements.
    F16(Vec<f16>),
    /// i32 elements.
    I32(Vec<i32>),
    /// i64 elements.
    I64(Vec<i64>),
    /// u8 elements.
    U8(Vec<u8>),
}

/// Runs `$body` with `$v` bound to the typed vector inside a `CpuStorage`.
macro_rules! with_cpu_storage {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            CpuStorage::F32($v) => $body,
            CpuStorage::F64($v) => $body,
            CpuStorage::BF16($v) => $body,
            CpuStorage::F16($v) => $body,
            CpuStorage::I32($v) => $body,
            CpuStorage::I64($v) => $body,
            CpuStorage::U8($v) => $body,
        }
    };
}

impl CpuStorage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::I32(_) => DType::I32,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::U8(_) => DType::U8,
        }
    }

    /// Number of elements in the buffer.
    pub fn len(&self) -> usize {
        with_cpu_storage!(self, v => v.len())
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements of the view `layout`, row-major, converted to `T` (a plain copy when the
    /// types match).
    pub fn gather<T: Element>(&self, layout: &Layout) -> Vec<T> {
        if let Some(s) = T::slice(self) {
            return gather_map(s, layout, |x| x);
        }
        with_cpu_storage!(self, v => convert_view(v, layout))
    }

    /// A new buffer of `n` copies of `value` converted to `dtype`.
    pub fn full(value: f64, n: usize, dtype: DType) -> CpuStorage {
        fn fill<T: Element>(value: f64, n: usize) -> CpuStorage {
            T::into_storage(vec![T::from_f64(value); n])
        }
        with_dtype!(dtype, T => fill::<T>(value, n))
    }

    /// Wraps `data` (already of type `T`) as storage of `dtype`, converting when they differ.
    pub fn from_vec_as<T: Element>(data: Vec<T>, dtype: DType) -> CpuStorage {
        if T::DTYPE == dtype {
            return T::into_storage(data);
        }
        fn conv<S: Element, U: Element>(data: &[S]) -> CpuStorage {
            U::into_storage(convert_slice(data))
        }
        with_dtype!(dtype, U => conv::<T, U>(&data))
    }
}

/// Converts a row-major slice elementwise (in parallel when large).
pub(crate) fn convert_slice<S: Element, T: Element>(src: &[S]) -> Vec<T> {
    if src.len() >= 2 * PAR_CHUNK {
        src.par_iter()
            .with_min_len(PAR_CHUNK)
            .map(|&x| cast::<S, T>(x))
            .collect()
    } else {
        src.iter().map(|&x| cast::<S, T>(x)).collect()
    }
}

fn convert_view<S: Element, T: Element>(data: &[S], layout: &Layout) -> Vec<T> {
    match layout.contiguous_range() {
        Some(r) => convert_slice(&data[r]),
        None => gather_map(data, layout, cast::<S, T>),
    }
}

/// Where a tensor's elements live.
#[derive(Debug)]
pub enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
    /// Memory of a CUDA device.
    Cuda(CudaStorage),
}

impl Storage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Cuda(s) => s.dtype(),
        }
    }

    /// Number of elements in the buffer.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            Storage::Cuda(s) => s.len(),
        }
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the buffer lives.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => s.device(),
        }
    }

    /// The host buffer; `Err` for device storage (copy it with `Tensor::to_device(Cpu)`).
    pub fn cpu(&self) -> Result<&CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s),
            Storage::Cuda(s) => Err(not_on_host(s)),
        }
    }

    /// The host buffer, mutably; `Err` for device storage.
    pub fn cpu_mut(&mut self) -> Result<&mut CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s),
            Storage::Cuda(s) => Err(not_on_host(s)),
        }
    }

    /// The device buffer, if this is device storage.
    pub fn cuda(&self) -> Option<&CudaStorage> {
        match self {
            Storage::Cpu(_) => None,
            Storage::Cuda(s) => Some(s),
        }
    }
}

fn not_on_host(s: &CudaStorage) -> Error {
    Error::device(
        "host access",
        format!(
            "the tensor lives on {}; copy it to the host first (to_device(Device::Cpu))",
            s.device()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_converts_views() {
        let s = CpuStorage::F32((0..6).map(|x| x as f32 + 0.5).collect());
        let l = Layout::contiguous(&[2, 3]).transpose(0, 1).unwrap();
        assert_eq!(s.gather::<f32>(&l), vec![0.5, 3.5, 1.5, 4.5, 2.5, 5.5]);
        assert_eq!(s.gather::<i64>(&l), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(s.dtype(), DType::F32);
        assert_eq!(
            CpuStorage::full(2.0, 3, DType::U8),
            CpuStorage::U8(vec![2, 2, 2])
        );
        let big: Vec<f32> = (0..100_000).map(|x| x as f32).collect();
        let b = CpuStorage::from_vec_as(big, DType::F64);
        assert!(matches!(&b, CpuStorage::F64(v) if v[99_999] == 99_999.0));
    }
}
