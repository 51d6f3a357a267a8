//! The runtime's ops on tensor handles: elementwise (unary, binary with numpy broadcasting,
//! affine/pow/clamp), matmul, softmax, reductions, views, and the fused kernel-level ops
//! (RMSNorm, SwiGLU, embedding). Each runs through autograd: the result records a graph node
//! when an input requires grad and grad mode is on, so `lmf_backward` can differentiate it.
//! Every result is a new handle in `*out`; dims may be negative (counted from the end).

use lmf_autograd::ops::fused;
use lmf_autograd::Var;

use crate::handle;
use crate::status::{slice_arg, FfiError, FfiResult, LmfStatus};
use crate::tensor::{norm_dim, shape_arg, with_out, LmfTensor};

/// Elementwise functions of one tensor.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmfUnaryOp {
    /// -x
    Neg = 0,
    /// e^x
    Exp = 1,
    /// ln x
    Log = 2,
    /// √x
    Sqrt = 3,
    /// x²
    Sqr = 4,
    /// 1/x
    Recip = 5,
    /// tanh x
    Tanh = 6,
    /// 1/(1+e^-x)
    Sigmoid = 7,
    /// x·sigmoid(x)
    Silu = 8,
    /// GELU, tanh approximation
    GeluTanh = 9,
    /// max(x, 0)
    Relu = 10,
    /// sin x
    Sin = 11,
    /// cos x
    Cos = 12,
}

/// Elementwise functions of two tensors (numpy broadcasting).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmfBinaryOp {
    /// a + b
    Add = 0,
    /// a - b
    Sub = 1,
    /// a · b
    Mul = 2,
    /// a / b
    Div = 3,
    /// max(a, b)
    Maximum = 4,
    /// min(a, b)
    Minimum = 5,
}

/// Reductions over dims.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmfReduceOp {
    /// Sum over the dims.
    Sum = 0,
    /// Mean over the dims.
    Mean = 1,
    /// Maximum over one dim.
    Max = 2,
    /// Minimum over one dim.
    Min = 3,
}

fn unary(op: i32, x: &Var) -> FfiResult<Var> {
    Ok(match op {
        0 => x.neg()?,
        1 => x.exp()?,
        2 => x.log()?,
        3 => x.sqrt()?,
        4 => x.sqr()?,
        5 => x.recip()?,
        6 => x.tanh()?,
        7 => x.sigmoid()?,
        8 => x.silu()?,
        9 => x.gelu_tanh()?,
        10 => x.relu()?,
        11 => x.sin()?,
        12 => x.cos()?,
        _ => return Err(FfiError::arg(format!("{op} is not an LmfUnaryOp"))),
    })
}

fn binary(op: i32, a: &Var, b: &Var) -> FfiResult<Var> {
    Ok(match op {
        0 => a.add(b)?,
        1 => a.sub(b)?,
        2 => a.mul(b)?,
        3 => a.div(b)?,
        4 => a.maximum(b)?,
        5 => a.minimum(b)?,
        _ => return Err(FfiError::arg(format!("{op} is not an LmfBinaryOp"))),
    })
}

/// Runs `f` on the tensor behind `x` and stores the result in `*out`.
fn map1(
    x: *const LmfTensor,
    out: *mut *mut LmfTensor,
    f: impl FnOnce(&Var) -> FfiResult<Var>,
) -> LmfStatus {
    with_out(out, || {
        let x = handle::tensor(x)?;
        f(&x)
    })
}

/// `op(x)` elementwise (`op` an `LmfUnaryOp` value).
#[no_mangle]
pub unsafe extern "C" fn lmf_unary(
    x: *const LmfTensor,
    op: i32,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| unary(op, x))
}

/// `op(a, b)` elementwise with broadcasting (`op` an `LmfBinaryOp` value).
#[no_mangle]
pub unsafe extern "C" fn lmf_binary(
    a: *const LmfTensor,
    b: *const LmfTensor,
    op: i32,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let (a, b) = (handle::tensor(a)?, handle::tensor(b)?);
        binary(op, &a, &b)
    })
}

/// `x · mul + add` elementwise.
#[no_mangle]
pub unsafe extern "C" fn lmf_affine(
    x: *const LmfTensor,
    mul: f64,
    add: f64,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| Ok(x.affine(mul, add)?))
}

/// `x^e` elementwise.
#[no_mangle]
pub unsafe extern "C" fn lmf_powf(
    x: *const LmfTensor,
    e: f64,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| Ok(x.powf(e)?))
}

/// `min(max(x, lo), hi)` elementwise.
#[no_mangle]
pub unsafe extern "C" fn lmf_clamp(
    x: *const LmfTensor,
    lo: f64,
    hi: f64,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| Ok(x.clamp(lo, hi)?))
}

/// Matrix product with batch broadcasting: `[.., m, k] × [.., k, n] → [.., m, n]`.
#[no_mangle]
pub unsafe extern "C" fn lmf_matmul(
    a: *const LmfTensor,
    b: *const LmfTensor,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let (a, b) = (handle::tensor(a)?, handle::tensor(b)?);
        Ok(a.matmul(&b)?)
    })
}

/// Softmax along `dim`.
#[no_mangle]
pub unsafe extern "C" fn lmf_softmax(
    x: *const LmfTensor,
    dim: i64,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| {
        Ok(x.softmax(norm_dim(dim, x.rank(), "softmax")?)?)
    })
}

/// Log-softmax along `dim`.
#[no_mangle]
pub unsafe extern "C" fn lmf_log_softmax(
    x: *const LmfTensor,
    dim: i64,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| {
        Ok(x.log_softmax(norm_dim(dim, x.rank(), "log_softmax")?)?)
    })
}

/// Reduces `x` over `dims` (`ndims` of them; none = every dim) with `op` (an
/// `LmfReduceOp`); `keepdim` keeps the reduced dims as size 1. Max and min take exactly one
/// dim.
#[no_mangle]
pub unsafe extern "C" fn lmf_reduce(
    x: *const LmfTensor,
    op: i32,
    dims: *const i64,
    ndims: usize,
    keepdim: bool,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let x = handle::tensor(x)?;
        let raw = slice_arg(dims, ndims, "dims")?;
        let mut ds = raw
            .iter()
            .map(|&d| norm_dim(d, x.rank(), "reduce"))
            .collect::<FfiResult<Vec<usize>>>()?;
        if ds.is_empty() {
            ds = (0..x.rank()).collect();
        }
        let one = |what: &str| -> FfiResult<usize> {
            match ds[..] {
                [d] => Ok(d),
                _ => Err(FfiError::arg(format!(
                    "{what} reduces exactly one dim, got {raw:?}"
                ))),
            }
        };
        let y = match op {
            0 => x.sum(&ds, keepdim)?,
            1 => x.mean(&ds, keepdim)?,
            2 => x.max(one("max")?, keepdim)?,
            3 => x.min(one("min")?, keepdim)?,
            _ => return Err(FfiError::arg(format!("{op} is not an LmfReduceOp"))),
        };
        Ok(y)
    })
}

/// The same elements in `shape` (`ndim` dims; a view when the layout allows).
#[no_mangle]
pub unsafe extern "C" fn lmf_reshape(
    x: *const LmfTensor,
    shape: *const usize,
    ndim: usize,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| Ok(x.reshape(shape_arg(shape, ndim)?)?))
}

/// Swaps dims `d0` and `d1` (a view).
#[no_mangle]
pub unsafe extern "C" fn lmf_transpose(
    x: *const LmfTensor,
    d0: i64,
    d1: i64,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| {
        let r = x.rank();
        Ok(x.transpose(norm_dim(d0, r, "transpose")?, norm_dim(d1, r, "transpose")?)?)
    })
}

/// Reorders the dims (`dims` is a permutation of `0..ndim`; a view).
#[no_mangle]
pub unsafe extern "C" fn lmf_permute(
    x: *const LmfTensor,
    dims: *const i64,
    ndims: usize,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| {
        let ds = slice_arg(dims, ndims, "dims")?
            .iter()
            .map(|&d| norm_dim(d, x.rank(), "permute"))
            .collect::<FfiResult<Vec<usize>>>()?;
        Ok(x.permute(&ds)?)
    })
}

/// `len` entries of `dim` from `start` (a view).
#[no_mangle]
pub unsafe extern "C" fn lmf_narrow(
    x: *const LmfTensor,
    dim: i64,
    start: usize,
    len: usize,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| {
        let d = norm_dim(dim, x.rank(), "narrow")?;
        if start.checked_add(len).is_none_or(|end| end > x.shape()[d]) {
            return Err(FfiError::new(
                LmfStatus::Shape,
                format!(
                    "narrow: {start}+{len} is past dim {d} of shape {:?}",
                    x.shape()
                ),
            ));
        }
        Ok(x.narrow(d, start, len)?)
    })
}

/// A contiguous (row-major) copy, or the same data when already contiguous.
#[no_mangle]
pub unsafe extern "C" fn lmf_contiguous(
    x: *const LmfTensor,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    map1(x, out, |x| Ok(x.contiguous()?))
}

/// Concatenates `n` tensors along `dim`.
#[no_mangle]
pub unsafe extern "C" fn lmf_cat(
    xs: *const *const LmfTensor,
    n: usize,
    dim: i64,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let vars = slice_arg(xs, n, "xs")?
            .iter()
            .map(|&h| handle::tensor(h))
            .collect::<FfiResult<Vec<Var>>>()?;
        let first = vars
            .first()
            .ok_or_else(|| FfiError::arg("lmf_cat: no tensors"))?;
        let d = norm_dim(dim, first.rank(), "cat")?;
        let refs: Vec<&Var> = vars.iter().collect();
        Ok(Var::cat(&refs, d)?)
    })
}

/// Rows `ids` (an I64 or I32 tensor of any shape) of `table: [vocab, dim]` →
/// `[ids.shape.., dim]` (the embedding lookup; repeated ids accumulate their gradients).
#[no_mangle]
pub unsafe extern "C" fn lmf_embedding(
    table: *const LmfTensor,
    ids: *const LmfTensor,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let (table, ids) = (handle::tensor(table)?, handle::tensor(ids)?);
        Ok(fused::embedding(&table, ids.tensor())?)
    })
}

/// RMSNorm over the last dim: `x · rsqrt(mean(x²) + eps) · (w + offset)` (`offset` 0 for
/// Llama, 1 for Gemma).
#[no_mangle]
pub unsafe extern "C" fn lmf_rmsnorm(
    x: *const LmfTensor,
    w: *const LmfTensor,
    eps: f64,
    offset: f64,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let (x, w) = (handle::tensor(x)?, handle::tensor(w)?);
        Ok(fused::rmsnorm(&x, &w, eps, offset)?)
    })
}

/// SwiGLU: `silu(gate) · up` (same shapes).
#[no_mangle]
pub unsafe extern "C" fn lmf_swiglu(
    gate: *const LmfTensor,
    up: *const LmfTensor,
    out: *mut *mut LmfTensor,
) -> LmfStatus {
    with_out(out, || {
        let (g, u) = (handle::tensor(gate)?, handle::tensor(up)?);
        Ok(fused::swiglu(&g, &u)?)
    })
}
