//! Tensors: made from a host buffer (copied in), inspected, copied out or borrowed in place
//! (zero-copy for contiguous CPU tensors), viewed, converted and moved between devices. A
//! tensor handle holds an autograd `Var`: a plain tensor is a var that does not require grad,
//! so the same handle goes into every op and into backward.

use half::{bf16, f16};
use lmf_autograd::Var;
use lmf_runtime::{DType, Device, Tensor};

use crate::handle::{self, Object};
use crate::status::{guard, non_null, slice_arg, write_out, FfiError, FfiResult, LmfStatus};

/// An opaque tensor handle (free with `lmf_tensor_free`).
pub struct LmfTensor {
    _private: [u8; 0],
}

/// Element types.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmfDtype {
    /// 32-bit float.
    F32 = 0,
    /// 64-bit float.
    F64 = 1,
    /// bfloat16 (stored as uint16_t bits).
    Bf16 = 2,
    /// IEEE half (stored as uint16_t bits).
    F16 = 3,
    /// 32-bit signed integer.
    I32 = 4,
    /// 64-bit signed integer (token ids).
    I64 = 5,
    /// Unsigned byte.
    U8 = 6,
}

impl LmfDtype {
    pub(crate) fn to_runtime(self) -> DType {
        match self {
            LmfDtype::F32 => DType::F32,
            LmfDtype::F64 => DType::F64,
            LmfDtype::Bf16 => DType::BF16,
            LmfDtype::F16 => DType::F16,
            LmfDtype::I32 => DType::I32,
            LmfDtype::I64 => DType::I64,
            LmfDtype::U8 => DType::U8,
        }
    }

    fn from_runtime(d: DType) -> LmfDtype {
        match d {
            DType::F32 => LmfDtype::F32,
            DType::F64 => LmfDtype::F64,
            DType::BF16 => LmfDtype::Bf16,
            DType::F16 => LmfDtype::F16,
            DType::I32 => LmfDtype::I32,
            DType::I64 => LmfDtype::I64,
            DType::U8 => LmfDtype::U8,
        }
    }

    /// A dtype from C, checked (an out-of-range enum value is an error, not UB).
    pub(crate) fn from_raw(v: i32) -> FfiResult<LmfDtype> {
        Ok(match v {
            0 => LmfDtype::F32,
            1 => LmfDtype::F64,
            2 => LmfDtype::Bf16,
            3 => LmfDtype::F16,
            4 => LmfDtype::I32,
            5 => LmfDtype::I64,
            6 => LmfDtype::U8,
            _ => {
                return Err(FfiError::new(
                    LmfStatus::Dtype,
                    format!("{v} is not an LmfDtype"),
                ))
            }
        })
    }
}

/// Where a tensor lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmfDeviceKind {
    /// Host memory.
    Cpu = 0,
    /// A CUDA GPU (`index` picks which).
    Cuda = 1,
}

pub(crate) fn device_from_raw(kind: i32, index: i32) -> FfiResult<Device> {
    match (kind, index) {
        (0, _) => Ok(Device::Cpu),
        (1, i) if i >= 0 => Ok(Device::Cuda(i as usize)),
        (1, i) => Err(FfiError::arg(format!("CUDA device index {i} is negative"))),
        (k, _) => Err(FfiError::arg(format!("{k} is not an LmfDeviceKind"))),
    }
}

/// Stores `var` as a new tensor handle in `*out`.
pub(crate) fn out_tensor(out: *mut *mut LmfTensor, var: Var) -> FfiResult<()> {
    non_null(out, "out")?;
    write_out(out, "out", handle::insert(Object::Tensor(var)))
}

/// Runs `f` and stores its result as a new tensor handle in `*out`; a NULL `out` fails
/// before any work is done.
pub(crate) fn with_out(out: *mut *mut LmfTensor, f: impl FnOnce() -> FfiResult<Var>) -> LmfStatus {
    guard(|| {
        non_null(out, "out")?;
        out_tensor(out, f()?)
    })
}

/// `dims` from C: each in `[-rank, rank)`, negatives counting from the end (as numpy).
pub(crate) fn norm_dim(d: i64, rank: usize, op: &str) -> FfiResult<usize> {
    let r = rank as i64;
    let n = if d < 0 { d + r } else { d };
    if n < 0 || n >= r.max(1) {
        return Err(FfiError::arg(format!(
            "{op}: dim {d} is out of range for a tensor of rank {rank}"
        )));
    }
    Ok(n as usize)
}

/// The element count of `shape`, or a `Shape` error when it does not fit in `usize`.
pub(crate) fn checked_numel(shape: &[usize]) -> FfiResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| FfiError::new(LmfStatus::Shape, format!("shape {shape:?} is too large")))
}

/// A shape argument (`ndim` dims at `shape`) whose element count fits in `usize`.
pub(crate) fn shape_arg<'a>(shape: *const usize, ndim: usize) -> FfiResult<&'a [usize]> {
    let s = slice_arg(shape, ndim, "shape")?;
    checked_numel(s)?;
    Ok(s)
}

fn elem_bytes(dtype: DType) -> usize {
    dtype.size_in_bytes()
}

/// Builds a CPU tensor of `dtype` from `bytes` (row-major, `shape`).
fn tensor_from_bytes(bytes: &[u8], dtype: DType, shape: &[usize]) -> FfiResult<Tensor> {
    fn typed<T: bytemuck::Pod + lmf_runtime::Element>(b: &[u8], s: &[usize]) -> FfiResult<Tensor> {
        Ok(Tensor::from_vec(
            bytemuck::pod_collect_to_vec::<u8, T>(b),
            s,
            Device::Cpu,
        )?)
    }
    match dtype {
        DType::F32 => typed::<f32>(bytes, shape),
        DType::F64 => typed::<f64>(bytes, shape),
        DType::BF16 => typed::<bf16>(bytes, shape),
        DType::F16 => typed::<f16>(bytes, shape),
        DType::I32 => typed::<i32>(bytes, shape),
        DType::I64 => typed::<i64>(bytes, shape),
        DType::U8 => typed::<u8>(bytes, shape),
    }
}

/// A tensor's elements, row-major, as bytes in its own dtype (copied from any device).
fn tensor_bytes(t: &Tensor) -> FfiResult<Vec<u8>> {
    fn typed<T: bytemuck::Pod + lmf_runtime::Element>(t: &Tensor) -> FfiResult<Vec<u8>> {
        Ok(bytemuck::cast_slice::<T, u8>(&t.to_vec::<T>()?).to_vec())
    }
    match t.dtype() {
        DType::F32 => typed::<f32>(t),
        DType::F64 => typed::<f64>(t),
        DType::BF16 => typed::<bf16>(t),
        DType::F16 => typed::<f16>(t),
        DType::I32 => typed::<i32>(t),
        DType::I64 => typed::<i64>(t),
        DType::U8 => typed::<u8>(t),
    }
}

/// Makes a CPU tensor of `dtype` and `shape` (`ndim` dims; 0 = a scalar) by copying
/// `product(shape) * sizeof(dtype)` bytes from `data` (row-major). `data` may be NULL only
/// when the tensor is empty.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_from_data(
    data: *const std::ffi::c_void,
    dtype: i32,
    shape: *const usize,
    ndim: usize,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let dtype = LmfDtype::from_raw(dtype)?.to_runtime();
        let shape = shape_arg(shape, ndim)?;
        let nbytes = checked_numel(shape)?
            .checked_mul(elem_bytes(dtype))
            .ok_or_else(|| {
                FfiError::new(LmfStatus::Shape, format!("shape {shape:?} is too large"))
            })?;
        let bytes = slice_arg(data.cast::<u8>(), nbytes, "data")?;
        Ok(Var::constant(tensor_from_bytes(bytes, dtype, shape)?))
    })
}

/// Makes a tensor of `shape` filled with `value`, on the device `(kind, index)`.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_full(
    value: f64,
    dtype: i32,
    shape: *const usize,
    ndim: usize,
    device_kind: i32,
    device_index: i32,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let dtype = LmfDtype::from_raw(dtype)?.to_runtime();
        let shape = shape_arg(shape, ndim)?;
        let device = device_from_raw(device_kind, device_index)?;
        Ok(Var::constant(Tensor::full(value, shape, dtype, device)?))
    })
}

/// Frees a tensor handle. The data goes when no other tensor (a view, a graph node) shares
/// it. NULL is ignored; a handle that is not live is `LMF_STATUS_INVALID_HANDLE`.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_free(t: *mut LmfTensor) -> LmfStatus {
    if t.is_null() {
        return LmfStatus::Ok;
    }
    guard(|| handle::remove(t, "LmfTensor"))
}

/// The number of dimensions.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_ndim(t: *const LmfTensor, out: *mut usize) -> LmfStatus {
    guard(|| write_out(out, "out", handle::tensor(t)?.rank()))
}

/// Copies the shape into `dims` (room for `capacity` entries; `capacity` must be at least
/// the rank).
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_shape(
    t: *const LmfTensor,
    dims: *mut usize,
    capacity: usize,
) -> LmfStatus {
    guard(|| {
        let v = handle::tensor(t)?;
        let shape = v.shape();
        if capacity < shape.len() {
            return Err(FfiError::arg(format!(
                "lmf_tensor_shape: capacity {capacity} < rank {}",
                shape.len()
            )));
        }
        if !shape.is_empty() {
            non_null(dims, "dims")?;
            unsafe { std::ptr::copy_nonoverlapping(shape.as_ptr(), dims, shape.len()) };
        }
        Ok(())
    })
}

/// The number of elements.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_numel(t: *const LmfTensor, out: *mut usize) -> LmfStatus {
    guard(|| write_out(out, "out", handle::tensor(t)?.elem_count()))
}

/// Whether the tensor is contiguous (row-major, no gaps): what `lmf_tensor_data_ptr` needs,
/// besides living on the CPU.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_is_contiguous(
    t: *const LmfTensor,
    out: *mut bool,
) -> LmfStatus {
    guard(|| write_out(out, "out", handle::tensor(t)?.tensor().is_contiguous()))
}

/// The element type (an `LmfDtype` value).
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_dtype(t: *const LmfTensor, out: *mut LmfDtype) -> LmfStatus {
    guard(|| {
        write_out(
            out,
            "out",
            LmfDtype::from_runtime(handle::tensor(t)?.dtype()),
        )
    })
}

/// Where the tensor lives: `*kind` an `LmfDeviceKind` value, `*index` the GPU index (0 on CPU).
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_device(
    t: *const LmfTensor,
    kind: *mut LmfDeviceKind,
    index: *mut i32,
) -> LmfStatus {
    guard(|| {
        let (k, i) = match handle::tensor(t)?.device() {
            Device::Cpu => (LmfDeviceKind::Cpu, 0),
            Device::Cuda(n) => (LmfDeviceKind::Cuda, n as i32),
        };
        write_out(kind, "kind", k)?;
        write_out(index, "index", i)
    })
}

/// Copies the elements, row-major in the tensor's own dtype, into `buffer`; `nbytes` must be
/// exactly `numel * sizeof(dtype)`. Works on any device and any layout (views included).
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_copy_to(
    t: *const LmfTensor,
    buffer: *mut std::ffi::c_void,
    nbytes: usize,
) -> LmfStatus {
    guard(|| {
        let v = handle::tensor(t)?;
        let want = v.elem_count() * elem_bytes(v.dtype());
        if nbytes != want {
            return Err(FfiError::new(
                LmfStatus::Dtype,
                format!(
                    "lmf_tensor_copy_to: buffer of {nbytes} bytes for {} elements of {} ({want} bytes)",
                    v.elem_count(),
                    v.dtype()
                ),
            ));
        }
        if want == 0 {
            return Ok(());
        }
        non_null(buffer, "buffer")?;
        let bytes = tensor_bytes(v.tensor())?;
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.cast::<u8>(), want) };
        Ok(())
    })
}

/// Zero-copy read access: `*data` points at the first element of a contiguous CPU tensor
/// (row-major, the tensor's dtype), valid while the handle lives. Any other tensor (a
/// strided view, a GPU tensor) is `LMF_STATUS_INVALID_ARGUMENT`: use `lmf_tensor_contiguous`
/// or `lmf_tensor_copy_to`. The memory must not be written.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_data_ptr(
    t: *const LmfTensor,
    data: *mut *const std::ffi::c_void,
) -> LmfStatus {
    guard(|| {
        let v = handle::tensor(t)?;
        let x = v.tensor();
        if x.device() != Device::Cpu || !x.is_contiguous() {
            return Err(FfiError::arg(format!(
                "lmf_tensor_data_ptr: the tensor is {} and {}; only contiguous CPU tensors can be borrowed",
                x.device(),
                if x.is_contiguous() { "contiguous" } else { "strided" }
            )));
        }
        fn borrowed<T: lmf_runtime::Element>(x: &Tensor) -> FfiResult<*const std::ffi::c_void> {
            match x.as_slice::<T>()? {
                std::borrow::Cow::Borrowed(s) => Ok(s.as_ptr().cast()),
                std::borrow::Cow::Owned(_) => Err(FfiError::new(
                    LmfStatus::Runtime,
                    "lmf_tensor_data_ptr: the tensor's storage could not be borrowed",
                )),
            }
        }
        let ptr = match x.dtype() {
            DType::F32 => borrowed::<f32>(x)?,
            DType::F64 => borrowed::<f64>(x)?,
            DType::BF16 => borrowed::<bf16>(x)?,
            DType::F16 => borrowed::<f16>(x)?,
            DType::I32 => borrowed::<i32>(x)?,
            DType::I64 => borrowed::<i64>(x)?,
            DType::U8 => borrowed::<u8>(x)?,
        };
        write_out(data, "data", ptr)
    })
}

/// A copy of the tensor converted to `dtype` (tracked by autograd).
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_to_dtype(
    t: *const LmfTensor,
    dtype: i32,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let dtype = LmfDtype::from_raw(dtype)?.to_runtime();
        Ok(handle::tensor(t)?.to_dtype(dtype)?)
    })
}

/// A copy of the tensor on the device `(kind, index)` (a constant: device moves are not
/// tracked by autograd). Without a CUDA GPU, moving to CUDA is `LMF_STATUS_RUNTIME`.
#[no_mangle]
pub unsafe extern "C" fn lmf_tensor_to_device(
    t: *const LmfTensor,
    device_kind: i32,
    device_index: i32,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let device = device_from_raw(device_kind, device_index)?;
        let moved = handle::tensor(t)?.tensor().to_device(device)?;
        Ok(Var::constant(moved))
    })
}
