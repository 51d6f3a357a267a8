//! Conversions: reading a tensor out as typed data (`to_vec`, `as_slice`), dtype casts, and
//! in-place updates of the storage (`update`, copy-on-write).

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::storage::{convert_slice, CpuStorage, Storage};
use crate::tensor::Tensor;
use std::borrow::Cow;
use std::sync::Arc;

impl Tensor {
    /// The elements in row-major order, converted to `T` from any dtype.
    /// For a CUDA tensor this copies to the host: a sync point (waits for the device's stream).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if self.device.is_cuda() {
            let host = self.cuda_to_host()?;
            return Ok(host.gather::<T>(&Layout::contiguous(&[host.len()])));
        }
        Ok(self.storage.cpu()?.gather::<T>(&self.layout))
    }

    /// The single element of a 1-element tensor (any rank), converted to `T`.
    pub fn to_scalar<T: Element>(&self) -> Result<T> {
        if self.elem_count() != 1 {
            return Err(Error::shape(
                "to_scalar",
                format!("needs exactly one element, got shape {:?}", self.shape()),
            ));
        }
        Ok(self.to_vec::<T>()?[0])
    }

    /// A copy converted to `dtype` (`self` when the dtype already matches); bf16/f16 round to
    /// nearest even, integers truncate towards zero and saturate.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        if self.device.is_cuda() {
            return self.cuda_to_dtype(dtype);
        }
        let cpu = self.storage.cpu()?;
        let data = with_dtype!(dtype, T => T::into_storage(cpu.gather::<T>(&self.layout)));
        Ok(Tensor::from_cpu_storage(data, self.shape()))
    }

    /// Row-major elements as `T`: borrowed when contiguous with dtype `T`, else a converted copy.
    /// A CUDA tensor is copied to the host (a sync point).
    pub fn as_slice<T: Element>(&self) -> Result<Cow<'_, [T]>> {
        if self.device.is_cuda() {
            return Ok(Cow::Owned(self.to_vec::<T>()?));
        }
        self.values::<T>()
    }

    /// Row-major elements as `T` of a host tensor (`Err` for device tensors).
    pub(crate) fn values<T: Element>(&self) -> Result<Cow<'_, [T]>> {
        let cpu = self.storage.cpu()?;
        Ok(match (T::slice(cpu), self.layout.contiguous_range()) {
            (Some(s), Some(r)) => Cow::Borrowed(&s[r]),
            _ => Cow::Owned(cpu.gather::<T>(&self.layout)),
        })
    }

    /// A contiguous tensor of `shape` and `dtype` from row-major compute values `data`
    /// (converted when `dtype` is not `C`).
    pub(crate) fn from_compute<C: Element>(data: Vec<C>, shape: &[usize], dtype: DType) -> Tensor {
        Tensor::from_cpu_storage(CpuStorage::from_vec_as(data, dtype), shape)
    }

    /// Runs `f` on this tensor's elements in place. `T` must be the dtype. A non-contiguous
    /// view is first made contiguous, and storage shared with other tensors is copied first
    /// (copy-on-write), so other tensors never see the change.
    pub fn update<T: Element>(&mut self, f: impl FnOnce(&mut [T])) -> Result<()> {
        if T::DTYPE != self.dtype {
            return Err(Error::dtype(
                "update",
                format!(
                    "tensor is {} but the closure takes {}",
                    self.dtype,
                    T::DTYPE
                ),
            ));
        }
        if self.device.is_cuda() {
            return Err(Error::cuda_unsupported(
                "update",
                "a host closure cannot edit device memory; use to_device(Device::Cpu) and back",
            ));
        }
        if !self.is_contiguous() {
            *self = self.contiguous()?;
        }
        let n = self.elem_count();
        if Arc::get_mut(&mut self.storage).is_none() {
            // Shared: copy just this view's elements into a private buffer.
            let data: Vec<T> = self.values::<T>()?.into_owned();
            self.storage = Arc::new(Storage::Cpu(T::into_storage(data)));
            self.layout = Layout::contiguous(self.shape());
        }
        let off = self.layout.offset();
        let storage = Arc::get_mut(&mut self.storage).expect("storage was just made unique");
        let slice = T::slice_mut(storage.cpu_mut()?).expect("dtype checked above");
        f(&mut slice[off..off + n]);
        Ok(())
    }

    /// Converts a row-major vector between element types (exposed for kernel dispatch).
    pub fn convert_vec<S: Element, T: Element>(data: &[S]) -> Vec<T> {
        convert_slice(data)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Error, Tensor};
    use half::{bf16, f16};
    use std::borrow::Cow;

    #[test]
    fn dtype_round_trips_with_rounding() {
        // Values exactly representable in bf16 survive; others round to nearest even.
        let xs = vec![
            1.0f32,
            -2.5,
            0.15625,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            3.0e38,
        ];
        let t = Tensor::from_vec(xs.clone(), &[6], Device::Cpu).unwrap();
        let b = t.to_dtype(DType::BF16).unwrap();
        assert_eq!(b.dtype(), DType::BF16);
        let back = b.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(&back[..3], &xs[..3]);
        assert_eq!(back[3], 1.0); // tie to even (down)
        assert_eq!(back[4], 1.0 + 1.0 / 64.0); // tie to even (up)
        assert_eq!(back[5], bf16::from_f32(3.0e38).to_f32());
        let h = t.to_dtype(DType::F16).unwrap().to_vec::<f16>().unwrap();
        assert_eq!(h[2], f16::from_f32(0.15625));
        assert!(h[5].is_infinite()); // beyond f16 range
                                     // 1 + 2^-11 is the f16 halfway point between 1 and 1 + 2^-10: ties to even.
        let t = Tensor::from_vec(vec![1.0f64 + 1.0 / 2048.0], &[1], Device::Cpu).unwrap();
        assert_eq!(
            t.to_dtype(DType::F16).unwrap().to_scalar::<f64>().unwrap(),
            1.0
        );
        // floats -> ints truncate towards zero; f64 round trip is exact
        let t = Tensor::from_vec(vec![-1.7f64, 2.9, 1e-300], &[3], Device::Cpu).unwrap();
        assert_eq!(
            t.to_dtype(DType::I64).unwrap().to_vec::<i64>().unwrap(),
            vec![-1, 2, 0]
        );
        assert_eq!(
            t.to_dtype(DType::F32)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .dtype(),
            DType::F64
        );
    }

    #[test]
    fn as_slice_borrows_only_when_it_can() {
        let t = Tensor::arange(0, 6, DType::F32, Device::Cpu)
            .unwrap()
            .reshape(&[2, 3])
            .unwrap();
        assert!(matches!(t.as_slice::<f32>().unwrap(), Cow::Borrowed(_)));
        assert!(matches!(t.as_slice::<f64>().unwrap(), Cow::Owned(_)));
        let v = t.t().unwrap();
        let s = v.as_slice::<f32>().unwrap();
        assert!(matches!(s, Cow::Owned(_)));
        assert_eq!(&*s, &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let n = t.narrow(0, 1, 1).unwrap();
        assert_eq!(&*n.as_slice::<f32>().unwrap(), &[3.0, 4.0, 5.0]);
        assert!(t
            .to_scalar::<f32>()
            .unwrap_err()
            .to_string()
            .contains("to_scalar"));
    }

    #[test]
    fn update_is_in_place_or_copy_on_write() {
        let mut t = Tensor::zeros(&[3], DType::F32, Device::Cpu).unwrap();
        let ptr = t.as_slice::<f32>().unwrap().as_ptr();
        t.update::<f32>(|x| x[1] = 5.0).unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap().as_ptr(), ptr); // unique: no copy
        let other = t.clone();
        t.update::<f32>(|x| x[0] = 1.0).unwrap();
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0, 5.0, 0.0]);
        assert_eq!(other.to_vec::<f32>().unwrap(), vec![0.0, 5.0, 0.0]); // untouched
        let e = t.update::<f64>(|_| ()).unwrap_err();
        assert!(matches!(e, Error::DType { op: "update", .. }));
        // a shared narrowed view updates only its own private copy
        let base = Tensor::arange(0, 6, DType::F32, Device::Cpu).unwrap();
        let mut v = base.narrow(0, 2, 2).unwrap();
        v.update::<f32>(|x| x.iter_mut().for_each(|e| *e *= 10.0))
            .unwrap();
        assert_eq!(v.to_vec::<f32>().unwrap(), vec![20.0, 30.0]);
        assert_eq!(base.to_vec::<f32>().unwrap()[2], 2.0);
    }
}
