//! Dense GEMM through cuBLASLt, in row-major terms (the rest of lmf is row-major):
//! `C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b]` for f32, bf16 and f16 storage with fp32
//! accumulation. f32 uses exact fp32 compute (not TF32), so GPU and CPU agree to 1e-5.
//! The cuBLASLt call itself (descriptors, alignment, workspace) is in `lt.rs`.
//!
//! Row-major `C[m, n]` is column-major `Cᵀ[n, m]`, and `Cᵀ = op(B)ᵀ · op(A)ᵀ`: the call swaps
//! A and B and the roles of m and n.

use super::dtype::GpuFloat;
use super::error::{ensure, CudaResult};
use super::gpu::Gpu;
use super::lt::{lt_matmul, ColMajor};
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, DevicePtrMut};

/// One (batched) row-major GEMM: `op(A): [m, k]`, `op(B): [k, n]`, `C: [m, n]`.
#[derive(Clone, Copy, Debug)]
pub struct GemmSpec {
    /// Rows of `C`.
    pub m: usize,
    /// Columns of `C`.
    pub n: usize,
    /// The contracted size.
    pub k: usize,
    /// `A` is stored `[k, m]` and used transposed.
    pub trans_a: bool,
    /// `B` is stored `[n, k]` and used transposed.
    pub trans_b: bool,
    /// Row stride of `A` as stored.
    pub lda: usize,
    /// Row stride of `B` as stored.
    pub ldb: usize,
    /// Row stride of `C`.
    pub ldc: usize,
    /// Number of matrices (1 for a plain GEMM).
    pub batch: usize,
    /// Elements between consecutive `A` matrices (0 broadcasts one `A`).
    pub stride_a: usize,
    /// Elements between consecutive `B` matrices (0 broadcasts one `B`).
    pub stride_b: usize,
    /// Elements between consecutive `C` matrices.
    pub stride_c: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the old `C` (0 overwrites, 1 accumulates).
    pub beta: f32,
}

impl GemmSpec {
    /// A dense, unbatched `C = op(A) op(B)` with tight row strides.
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> GemmSpec {
        GemmSpec {
            m,
            n,
            k,
            trans_a,
            trans_b,
            lda: if trans_a { m } else { k },
            ldb: if trans_b { k } else { n },
            ldc: n,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// The same GEMM, accumulating into `C` (`beta = 1`).
    pub fn accumulate(mut self) -> GemmSpec {
        self.beta = 1.0;
        self
    }

    /// Elements of `A`, `B`, `C` the spec reaches (for bounds checks).
    fn extents(&self) -> (usize, usize, usize) {
        let (ar, ac) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let (br, bc) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        let last = self.batch.saturating_sub(1);
        let ext = |rows: usize, cols: usize, ld: usize, stride: usize| {
            if rows == 0 || cols == 0 {
                0
            } else {
                last * stride + (rows - 1) * ld + cols
            }
        };
        (
            ext(ar, ac, self.lda, self.stride_a),
            ext(br, bc, self.ldb, self.stride_b),
            ext(self.m, self.n, self.ldc, self.stride_c),
        )
    }
}

/// Storage types cuBLASLt multiplies here, with their cuBLASLt data and compute types.
pub trait BlasFloat: GpuFloat {
    /// The cuBLASLt data type.
    const DATA: sys::cudaDataType;
    /// The compute type: exact fp32 for every storage type (f32 is not TF32).
    const COMPUTE: sys::cublasComputeType_t = sys::cublasComputeType_t::CUBLAS_COMPUTE_32F;
}

impl BlasFloat for f32 {
    const DATA: sys::cudaDataType = sys::cudaDataType_t::CUDA_R_32F;
}
impl BlasFloat for half::bf16 {
    const DATA: sys::cudaDataType = sys::cudaDataType_t::CUDA_R_16BF;
}
impl BlasFloat for half::f16 {
    const DATA: sys::cudaDataType = sys::cudaDataType_t::CUDA_R_16F;
}

/// `C = alpha · op(A) · op(B) + beta · C` (row-major, see [`GemmSpec`]).
pub fn gemm<T: BlasFloat>(
    gpu: &Gpu,
    s: &GemmSpec,
    a: &CudaView<T>,
    b: &CudaView<T>,
    c: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let (ea, eb, ec) = s.extents();
    ensure(
        a.len() >= ea && b.len() >= eb && c.len() >= ec,
        "gemm",
        || {
            format!(
                "{s:?} reaches {ea}/{eb}/{ec} elements of A/B/C, which hold {}/{}/{}",
                a.len(),
                b.len(),
                c.len()
            )
        },
    )?;
    if s.m == 0 || s.n == 0 || s.batch == 0 {
        return Ok(());
    }
    if s.k == 0 {
        // cuBLASLt rejects k = 0; C = beta · C is what it means (only 0 and 1 arise here).
        ensure(s.beta == 0.0 || s.beta == 1.0, "gemm", || {
            format!("k = 0 with beta {}", s.beta)
        })?;
        let dense = s.ldc == s.n && (s.batch == 1 || s.stride_c == s.m * s.n);
        ensure(dense || s.beta == 1.0, "gemm", || {
            "k = 0 into a strided C".into()
        })?;
        if s.beta == 0.0 {
            gpu.stream().memset_zeros(&mut c.slice_mut(..ec))?;
        }
        return Ok(());
    }
    // Column-major view of the row-major call: m' = n, n' = m, A' = B, B' = A.
    let cm = ColMajor {
        trans_a: s.trans_b,
        trans_b: s.trans_a,
        m: s.n as u64,
        n: s.m as u64,
        k: s.k as u64,
        lda: s.ldb as i64,
        ldb: s.lda as i64,
        ldc: s.ldc as i64,
        batch: s.batch as i32,
        stride_a: s.stride_b as i64,
        stride_b: s.stride_a as i64,
        stride_c: s.stride_c as i64,
        alpha: s.alpha,
        beta: s.beta,
    };
    let stream = gpu.stream();
    let (bp, _gb) = b.device_ptr(stream);
    let (ap, _ga) = a.device_ptr(stream);
    let (cp, _gc) = c.device_ptr_mut(stream);
    // SAFETY: the extents were checked against the buffers above.
    unsafe { lt_matmul(gpu, T::DATA, T::COMPUTE, &cm, bp, ap, cp) }
}
