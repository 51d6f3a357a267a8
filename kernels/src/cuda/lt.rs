//! One cuBLASLt matmul in column-major terms, with what cudarc's safe wrapper does not set:
//! exact fp32 compute for f32, and the minimum-alignment preferences taken from the actual
//! pointers (cuBLASLt otherwise assumes 256-byte-aligned operands and may pick an algorithm
//! that faults on a view that starts mid-buffer). The handle and a 32 MiB workspace belong to
//! the `Gpu` and are used on its one stream.

use super::error::{CudaError, CudaResult};
use super::gpu::Gpu;
use cudarc::cublaslt::{result, sys};
use cudarc::driver::{sys::CUdeviceptr, CudaSlice};
use std::ffi::c_void;
use std::mem::size_of;

/// Workspace bytes offered to cuBLASLt (what PyTorch gives it on Hopper).
pub const WORKSPACE_BYTES: usize = 32 << 20;

/// The cuBLASLt handle of a device and its workspace.
pub struct LtHandle {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
}

// SAFETY: the handle is only used on the device's one stream, under the `Gpu`'s lock.
unsafe impl Send for LtHandle {}

impl LtHandle {
    /// A new handle and workspace on `gpu`.
    pub fn new(gpu: &Gpu) -> CudaResult<LtHandle> {
        if !std::panic::catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false) {
            return Err(CudaError::Blas(
                "libcublasLt not found (put the CUDA lib folder on LD_LIBRARY_PATH)".into(),
            ));
        }
        let handle = result::create_handle()?;
        let workspace = gpu.zeros::<u8>(WORKSPACE_BYTES)?;
        Ok(LtHandle { handle, workspace })
    }
}

impl Drop for LtHandle {
    fn drop(&mut self) {
        let _ = unsafe { result::destroy_handle(self.handle) };
    }
}

/// A column-major (batched, strided) GEMM `C = alpha op(A) op(B) + beta C`.
#[derive(Clone, Copy, Debug)]
pub struct ColMajor {
    /// Use A transposed.
    pub trans_a: bool,
    /// Use B transposed.
    pub trans_b: bool,
    /// Rows of C.
    pub m: u64,
    /// Columns of C.
    pub n: u64,
    /// Contracted size.
    pub k: u64,
    /// Leading dimension of A as stored.
    pub lda: i64,
    /// Leading dimension of B as stored.
    pub ldb: i64,
    /// Leading dimension of C.
    pub ldc: i64,
    /// Batch count (1: no batch attributes).
    pub batch: i32,
    /// Elements between A matrices.
    pub stride_a: i64,
    /// Elements between B matrices.
    pub stride_b: i64,
    /// Elements between C matrices.
    pub stride_c: i64,
    /// Product scale.
    pub alpha: f32,
    /// Old-C scale.
    pub beta: f32,
}

/// Frees a cuBLASLt descriptor when dropped.
struct Guard<F: FnMut()>(F);
impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// The largest power of two (≤ 256) dividing `ptr`.
fn alignment(ptr: CUdeviceptr) -> u32 {
    if ptr == 0 {
        256
    } else {
        (1u64 << ptr.trailing_zeros().min(8)) as u32
    }
}

fn layout(
    dt: sys::cudaDataType,
    rows: u64,
    cols: u64,
    ld: i64,
    batch: i32,
    stride: i64,
) -> CudaResult<sys::cublasLtMatrixLayout_t> {
    let l = result::create_matrix_layout(dt, rows, cols, ld)?;
    if batch > 1 {
        unsafe {
            result::set_matrix_layout_attribute(
                l,
                sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                &batch as *const i32 as *const c_void,
                size_of::<i32>(),
            )?;
            result::set_matrix_layout_attribute(
                l,
                sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                &stride as *const i64 as *const c_void,
                size_of::<i64>(),
            )?;
        }
    }
    Ok(l)
}

/// Runs `c = alpha op(a) op(b) + beta c` on the device's stream.
///
/// # Safety
/// `a`, `b`, `c` must hold the extents `g` describes, in the data type `dt`.
pub unsafe fn lt_matmul(
    gpu: &Gpu,
    dt: sys::cudaDataType,
    compute: sys::cublasComputeType_t,
    g: &ColMajor,
    a: CUdeviceptr,
    b: CUdeviceptr,
    c: CUdeviceptr,
) -> CudaResult<()> {
    let lt = gpu.lt()?;
    let lt = lt.lock().unwrap_or_else(|e| e.into_inner());
    let desc = result::create_matmul_desc(compute, sys::cudaDataType_t::CUDA_R_32F)?;
    let _d = Guard(|| {
        let _ = result::destroy_matmul_desc(desc);
    });
    for (attr, on) in [
        (
            sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
            g.trans_a,
        ),
        (
            sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB,
            g.trans_b,
        ),
    ] {
        // cublasOperation_t: CUBLAS_OP_N = 0, CUBLAS_OP_T = 1.
        let v: i32 = on as i32;
        result::set_matmul_desc_attribute(
            desc,
            attr,
            &v as *const i32 as *const c_void,
            size_of::<i32>(),
        )?;
    }
    let (ar, ac) = if g.trans_a { (g.k, g.m) } else { (g.m, g.k) };
    let (br, bc) = if g.trans_b { (g.n, g.k) } else { (g.k, g.n) };
    let la = layout(dt, ar, ac, g.lda, g.batch, g.stride_a)?;
    let _la = Guard(|| {
        let _ = result::destroy_matrix_layout(la);
    });
    let lb = layout(dt, br, bc, g.ldb, g.batch, g.stride_b)?;
    let _lb = Guard(|| {
        let _ = result::destroy_matrix_layout(lb);
    });
    let lc = layout(dt, g.m, g.n, g.ldc, g.batch, g.stride_c)?;
    let _lc = Guard(|| {
        let _ = result::destroy_matrix_layout(lc);
    });
    let pref = result::create_matmul_pref()?;
    let _p = Guard(|| {
        let _ = result::destroy_matmul_pref(pref);
    });
    let ws = WORKSPACE_BYTES as u64;
    result::set_matmul_pref_attribute(
        pref,
        sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
        &ws as *const u64 as *const c_void,
        size_of::<u64>(),
    )?;
    for (attr, ptr) in [
        (
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
            a,
        ),
        (
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            b,
        ),
        (
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
            c,
        ),
        (
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
            c,
        ),
    ] {
        let al = alignment(ptr);
        result::set_matmul_pref_attribute(
            pref,
            attr,
            &al as *const u32 as *const c_void,
            size_of::<u32>(),
        )?;
    }
    let heur = result::get_matmul_algo_heuristic(lt.handle, desc, la, lb, lc, lc, pref)?;
    let stream = gpu.stream();
    let (wp, _gw) = cudarc::driver::DevicePtr::device_ptr(&lt.workspace, stream);
    result::matmul(
        lt.handle,
        desc,
        &g.alpha as *const f32 as *const c_void,
        &g.beta as *const f32 as *const c_void,
        a as *const c_void,
        la,
        b as *const c_void,
        lb,
        c as *const c_void,
        lc,
        c as *mut c_void,
        lc,
        &heur.algo,
        wp as *mut c_void,
        WORKSPACE_BYTES,
        stream.cu_stream() as sys::cudaStream_t,
    )?;
    Ok(())
}
