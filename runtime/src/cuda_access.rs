//! Raw access to CUDA tensors for the layers above (the fused autograd ops call the
//! `lmf_kernels::cuda` launchers directly): the device buffer of a contiguous tensor, and a
//! tensor around a buffer a kernel filled.

use crate::cuda_storage::CudaElement;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use lmf_kernels::cuda::cudarc::driver::{CudaSlice, CudaView};
use lmf_kernels::cuda::Gpu;
use std::sync::Arc;

impl Tensor {
    /// The device and the row-major elements of a contiguous CUDA tensor of element type `T`
    /// (call `contiguous()` first for a strided view).
    pub fn cuda_slice<T: CudaElement>(&self) -> Result<(Arc<Gpu>, CudaView<'_, T>)> {
        if !self.is_contiguous() {
            return Err(Error::invalid(
                "cuda_slice",
                format!(
                    "tensor {:?} is a strided view; make it contiguous",
                    self.shape()
                ),
            ));
        }
        let gpu = self.cuda_storage()?.gpu.clone();
        Ok((gpu, self.cuda_dense::<T>()?))
    }

    /// The `Gpu` a CUDA tensor lives on.
    pub fn cuda_slice_gpu(&self) -> Result<Arc<Gpu>> {
        Ok(self.cuda_storage()?.gpu.clone())
    }

    /// A contiguous tensor of `shape` owning `buf` (which holds at least `prod(shape)`
    /// elements; the rest is unused).
    pub fn from_cuda<T: CudaElement>(
        gpu: &Arc<Gpu>,
        buf: CudaSlice<T>,
        shape: &[usize],
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if buf.len() < n {
            return Err(Error::shape(
                "from_cuda",
                format!("{} elements for shape {shape:?}", buf.len()),
            ));
        }
        Ok(Tensor::from_cuda_buf(gpu, T::wrap(buf), shape))
    }
}
