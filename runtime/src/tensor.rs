//! The `Tensor` struct: constructors, accessors and views (reshape, transpose, narrow, ..).
//!
//! A tensor is an `Arc`'d storage buffer plus a layout (shape, strides, offset): cloning
//! and viewing are O(rank), never a copy. Ops that need row-major data copy on demand.

use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::{check_dim, Layout};
use crate::storage::{CpuStorage, Storage};
use std::sync::Arc;

/// An n-dimensional array: shared storage + a strided view into it.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Arc<Storage>,
    pub(crate) layout: Layout,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor[{:?}, {}, {}]",
            self.shape(),
            self.dtype,
            self.device
        )
    }
}

impl Tensor {
    /// A contiguous CPU tensor owning `storage` with `shape` (caller checked the length).
    pub fn from_cpu_storage(storage: CpuStorage, shape: &[usize]) -> Tensor {
        debug_assert_eq!(storage.len(), shape.iter().product::<usize>());
        Tensor {
            dtype: storage.dtype(),
            storage: Arc::new(Storage::Cpu(storage)),
            layout: Layout::contiguous(shape),
            device: Device::Cpu,
        }
    }

    /// A tensor owning `data` (row-major) with `shape`.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize], device: Device) -> Result<Tensor> {
        device.check_available()?;
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(Error::shape(
                "from_vec",
                format!(
                    "{} elements given for shape {shape:?} ({n} elements)",
                    data.len()
                ),
            ));
        }
        let cpu = T::into_storage(data);
        match device {
            Device::Cpu => Ok(Tensor::from_cpu_storage(cpu, shape)),
            Device::Cuda(n) => Tensor::cuda_from_host(&cpu, shape, n),
        }
    }

    /// A tensor holding a copy of `data` (row-major) with `shape`.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize], device: Device) -> Result<Tensor> {
        device.check_available()?;
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(Error::shape(
                "from_slice",
                format!(
                    "{} elements given for shape {shape:?} ({n} elements)",
                    data.len()
                ),
            ));
        }
        Tensor::from_vec(data.to_vec(), shape, device)
    }

    /// A tensor of `value` (converted to `dtype`).
    pub fn full(value: f64, shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        device.check_available()?;
        if let Device::Cuda(ord) = device {
            return Tensor::cuda_full(value, shape, dtype, ord);
        }
        let n = shape.iter().product();
        Ok(Tensor::from_cpu_storage(
            CpuStorage::full(value, n, dtype),
            shape,
        ))
    }

    /// A rank-0 tensor holding `value` (converted to `dtype`).
    pub fn scalar(value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full(value, &[], dtype, device)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full(0.0, shape, dtype, device)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full(1.0, shape, dtype, device)
    }

    /// `[start, start + 1, .., end - 1]` (empty when `end <= start`).
    pub fn arange(start: i64, end: i64, dtype: DType, device: Device) -> Result<Tensor> {
        device.check_available()?;
        let values: Vec<f64> = (start..end).map(|v| v as f64).collect();
        let n = values.len();
        let cpu = CpuStorage::from_vec_as(values, dtype);
        match device {
            Device::Cpu => Ok(Tensor::from_cpu_storage(cpu, &[n])),
            Device::Cuda(ord) => Tensor::cuda_from_host(&cpu, &[n], ord),
        }
    }

    /// Zeros with this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Tensor::zeros(self.shape(), self.dtype, self.device)
    }

    /// Ones with this tensor's shape, dtype and device.
    pub fn ones_like(&self) -> Result<Tensor> {
        Tensor::ones(self.shape(), self.dtype, self.device)
    }

    /// The dims.
    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.layout.rank()
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.layout.elem_count()
    }

    /// Size of dim `d`.
    pub fn dim(&self, d: usize) -> Result<usize> {
        check_dim("dim", d, self.shape())?;
        Ok(self.shape()[d])
    }

    /// Strides in elements.
    pub fn strides(&self) -> &[usize] {
        self.layout.strides()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Where the storage lives.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The full layout (shape, strides, offset) for kernel dispatch.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The backing storage (may be larger than this view).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Whether the view is row-major and gap-free.
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// Whether both tensors view the same buffer.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// The same storage seen through `layout`.
    pub(crate) fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor {
            storage: self.storage.clone(),
            layout,
            dtype: self.dtype,
            device: self.device,
        }
    }

    /// Same elements with a new shape (a view when contiguous, else a copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.is_contiguous() {
            Ok(self.with_layout(self.layout.reshape("reshape", shape)?))
        } else {
            let n: usize = shape.iter().product();
            if n != self.elem_count() {
                return Err(Error::shape(
                    "reshape",
                    format!("cannot reshape {:?} to {shape:?}", self.shape()),
                ));
            }
            self.contiguous()?.reshape(shape)
        }
    }

    /// Swaps dims `d0` and `d1` (a view).
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.transpose(d0, d1)?))
    }

    /// Swaps the last two dims (a view); needs rank >= 2.
    pub fn t(&self) -> Result<Tensor> {
        let r = self.rank();
        if r < 2 {
            return Err(Error::shape(
                "t",
                format!("needs rank >= 2, got {:?}", self.shape()),
            ));
        }
        self.transpose(r - 2, r - 1)
    }

    /// Reorders dims: new dim `i` is old dim `dims[i]` (a view).
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.permute(dims)?))
    }

    /// Elements `start..start + len` along `dim` (a view).
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.narrow(dim, start, len)?))
    }

    /// Stretched to `shape` by numpy rules (a view with stride 0 on stretched dims).
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.broadcast_as(shape)?))
    }

    /// Inserts a dim of size 1 at `dim` (a view).
    pub fn unsqueeze(&self, dim: usize) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.unsqueeze(dim)?))
    }

    /// Removes `dim` when its size is 1; like torch, a no-op for other sizes (a view).
    pub fn squeeze(&self, dim: usize) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.squeeze(dim)?))
    }

    /// Merges all dims into one (a view when contiguous).
    pub fn flatten_all(&self) -> Result<Tensor> {
        self.reshape(&[self.elem_count()])
    }

    /// A row-major copy (or `self` when already contiguous).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        if self.device.is_cuda() {
            return self.cuda_contiguous();
        }
        let cpu = self.storage.cpu()?;
        let data = with_dtype!(self.dtype, T => T::into_storage(cpu.gather::<T>(&self.layout)));
        Ok(Tensor::from_cpu_storage(data, self.shape()))
    }

    /// The tensor on `device` (same device: a cheap clone). CPU -> CUDA uploads; CUDA -> CPU
    /// copies to the host (a sync point); between two CUDA devices it goes through the host.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        device.check_available()?;
        if device == self.device {
            return Ok(self.clone());
        }
        self.cuda_to_device(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_accessors() {
        let t = Tensor::from_vec(vec![1f32, 2., 3., 4., 5., 6.], &[2, 3], Device::Cpu).unwrap();
        assert_eq!((t.shape(), t.rank(), t.elem_count()), (&[2, 3][..], 2, 6));
        assert_eq!(t.dim(1).unwrap(), 3);
        assert!(t.dim(2).unwrap_err().to_string().contains("dim"));
        assert_eq!(t.dtype(), DType::F32);
        let e = Tensor::from_vec(vec![1f32; 5], &[2, 3], Device::Cpu).unwrap_err();
        assert!(matches!(e, Error::Shape { op: "from_vec", .. }), "{e}");
        assert!(e.to_string().contains("[2, 3]"));
        let z = Tensor::zeros(&[2, 2], DType::BF16, Device::Cpu).unwrap();
        assert_eq!(z.to_vec::<f32>().unwrap(), vec![0.0; 4]);
        let o = t.ones_like().unwrap();
        assert_eq!(o.to_vec::<f32>().unwrap(), vec![1.0; 6]);
        let s = Tensor::scalar(2.5, DType::F16, Device::Cpu).unwrap();
        assert_eq!((s.rank(), s.to_scalar::<f32>().unwrap()), (0, 2.5));
        let f = Tensor::full(7.5, &[3], DType::I64, Device::Cpu).unwrap();
        assert_eq!(f.to_vec::<i64>().unwrap(), vec![7, 7, 7]);
        let a = Tensor::arange(-2, 3, DType::I32, Device::Cpu).unwrap();
        assert_eq!(a.to_vec::<i32>().unwrap(), vec![-2, -1, 0, 1, 2]);
        assert_eq!(
            Tensor::arange(3, 1, DType::F32, Device::Cpu)
                .unwrap()
                .shape(),
            &[0]
        );
        assert!(format!("{t:?}").contains("[2, 3]"));
    }

    #[test]
    fn missing_cuda_device_is_a_clear_error() {
        // A device that cannot exist: a clear Err (no driver, or "no CUDA device 1000").
        let e = Tensor::zeros(&[2], DType::F32, Device::Cuda(1000)).unwrap_err();
        assert!(matches!(e, Error::Cuda(_)), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("no CUDA device 1000") || msg.contains("no CUDA driver"),
            "{msg}"
        );
        assert!(Tensor::from_vec(vec![1f32], &[1], Device::Cuda(1000)).is_err());
        let t = Tensor::ones(&[2], DType::F32, Device::Cpu).unwrap();
        assert!(matches!(
            t.to_device(Device::Cuda(1000)).unwrap_err(),
            Error::Cuda(_)
        ));
        assert!(t.to_device(Device::Cpu).unwrap().same_storage(&t));
        // Device 0: an Err on a machine without a GPU, a tensor on one with a GPU.
        let z = Tensor::zeros(&[2], DType::F32, Device::Cuda(0));
        if lmf_kernels::cuda::device_count() == 0 {
            let e = z.unwrap_err();
            assert!(
                matches!(e, Error::Cuda(_)) && e.to_string().starts_with("CUDA: "),
                "{e}"
            );
            assert!(Device::Cuda(0).check_available().is_err());
        } else {
            assert_eq!(z.unwrap().to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
        }
    }

    #[test]
    fn views_share_storage_and_read_right() {
        let t = Tensor::arange(0, 24, DType::F32, Device::Cpu)
            .unwrap()
            .reshape(&[2, 3, 4])
            .unwrap();
        let v = t.transpose(0, 2).unwrap(); // [4, 3, 2]
        assert!(v.same_storage(&t) && !v.is_contiguous());
        assert_eq!(v.shape(), &[4, 3, 2]);
        assert_eq!(v.to_vec::<f32>().unwrap()[..4], [0.0, 12.0, 4.0, 16.0]);
        let n = t.narrow(2, 1, 2).unwrap().narrow(1, 2, 1).unwrap(); // [2, 1, 2]
        assert_eq!(n.to_vec::<f32>().unwrap(), vec![9.0, 10.0, 21.0, 22.0]);
        let c = n.contiguous().unwrap();
        assert!(c.is_contiguous() && !c.same_storage(&t));
        assert_eq!(c.to_vec::<f32>().unwrap(), n.to_vec::<f32>().unwrap());
        // reshape of a non-contiguous view copies
        let r = v.reshape(&[24]).unwrap();
        assert_eq!(r.to_vec::<f32>().unwrap(), v.to_vec::<f32>().unwrap());
        let p = t.permute(&[1, 2, 0]).unwrap();
        assert_eq!(p.shape(), &[3, 4, 2]);
        assert_eq!(p.to_vec::<f32>().unwrap()[..4], [0.0, 12.0, 1.0, 13.0]);
        assert_eq!(t.t().unwrap().shape(), &[2, 4, 3]);
        let b = Tensor::arange(0, 3, DType::F32, Device::Cpu)
            .unwrap()
            .broadcast_as(&[2, 3])
            .unwrap();
        assert_eq!(
            b.to_vec::<f32>().unwrap(),
            vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
        );
        let u = t.unsqueeze(0).unwrap();
        assert_eq!(u.shape(), &[1, 2, 3, 4]);
        assert_eq!(u.squeeze(0).unwrap().shape(), &[2, 3, 4]);
        let e = t.reshape(&[5, 5]).unwrap_err().to_string();
        assert!(
            e.contains("reshape") && e.contains("[2, 3, 4]") && e.contains("[5, 5]"),
            "{e}"
        );
        let e = t.narrow(1, 2, 2).unwrap_err().to_string();
        assert!(e.contains("narrow") && e.contains("[2, 3, 4]"), "{e}");
        assert!(t.transpose(0, 3).is_err());
    }
}
