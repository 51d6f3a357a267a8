//! Elementwise launchers (`kernels/cuda/elementwise.cu`): unary maps, broadcasting binary
//! ops, comparisons to u8 masks, `where`, and fill. Inputs are strided views ([`Strided`],
//! broadcast dims with stride 0, the view starting at the `CudaView`'s first element); the
//! output is a contiguous `[n]`. The GPU twin of the runtime's CPU elementwise ops.

use super::error::{ensure, CudaResult};
use super::gpu::Gpu;
use super::sources::ELEMENTWISE;
use super::strided::{entry_for, grid_stride, GpuElem, Strided};
use cudarc::driver::{CudaView, CudaViewMut, PushKernelArg};

/// Unary op codes (the numbering of `elementwise.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Unary {
    /// `-x`
    Neg = 0,
    /// `e^x`
    Exp,
    /// `ln x`
    Log,
    /// `√x`
    Sqrt,
    /// `x²`
    Sqr,
    /// `1/x`
    Recip,
    /// `tanh x`
    Tanh,
    /// `sin x`
    Sin,
    /// `cos x`
    Cos,
    /// `|x|`
    Abs,
    /// `max(x, 0)` (NaN stays NaN)
    Relu,
    /// `x·sigmoid(x)`
    Silu,
    /// GELU, tanh approximation
    GeluTanh,
    /// `1/(1 + e^-x)`
    Sigmoid,
    /// `x^a`
    Powf,
    /// `x·a + b`
    Affine,
    /// `x·a`
    Scale,
    /// `min(max(x, a), b)`
    Clamp,
}

/// Binary op codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Binary {
    /// `a + b`
    Add = 0,
    /// `a - b`
    Sub,
    /// `a · b`
    Mul,
    /// `a / b`
    Div,
    /// max (NaN wins)
    Maximum,
    /// min (NaN wins)
    Minimum,
}

/// Comparison op codes (result 0/1 as u8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Compare {
    /// `==`
    Eq = 0,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// Checks that `view` (of `len` elements) holds the strided view `s` of `n` elements.
pub(crate) fn check_view(
    op: &'static str,
    what: &str,
    len: usize,
    s: &Strided,
    n: usize,
) -> CudaResult<()> {
    ensure(s.elem_count() == n && s.span() <= len, op, || {
        format!(
            "{what}: view {s:?} ({} elements, reaching {}) does not fit {n} outputs / a buffer of {len}",
            s.elem_count(),
            s.span()
        )
    })
}

/// `y = op(x)` (compute in f32 for f32/bf16/f16, f64 otherwise); `a`, `b` are the op's
/// scalars (see [`Unary`]). `y`: `[n]` with `n = xs.elem_count()`.
pub fn unary<T: GpuElem>(
    gpu: &Gpu,
    x: &CudaView<T>,
    xs: &Strided,
    op: Unary,
    a: f64,
    b: f64,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let n = y.len();
    check_view("unary", "x", x.len(), xs, n)?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.function(&ELEMENTWISE, &entry_for::<T>("unary"))?;
    let (nn, code) = (n as i64, op as i32);
    let mut bld = gpu.stream().launch_builder(&f);
    bld.arg(x)
        .arg(xs)
        .arg(y)
        .arg(&nn)
        .arg(&code)
        .arg(&a)
        .arg(&b);
    unsafe { bld.launch(grid_stride(n)) }?;
    Ok(())
}

/// `y = op(a, b)` over the broadcast output `[n]` (`as_`, `bs` already broadcast to it).
pub fn binary<T: GpuElem>(
    gpu: &Gpu,
    a: &CudaView<T>,
    as_: &Strided,
    b: &CudaView<T>,
    bs: &Strided,
    op: Binary,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    two_operands(gpu, "binary", (a, as_), (b, bs), op as i32, y)
}

/// `y = (a op b) as u8` over the broadcast output `[n]`.
pub fn compare<T: GpuElem>(
    gpu: &Gpu,
    a: &CudaView<T>,
    as_: &Strided,
    b: &CudaView<T>,
    bs: &Strided,
    op: Compare,
    y: &mut CudaViewMut<u8>,
) -> CudaResult<()> {
    two_operands(gpu, "compare", (a, as_), (b, bs), op as i32, y)
}

/// Launches the two-operand kernel `kernel` (`binary` or `compare`) with op `code`.
fn two_operands<T: GpuElem, O: cudarc::driver::DeviceRepr>(
    gpu: &Gpu,
    kernel: &'static str,
    (a, as_): (&CudaView<T>, &Strided),
    (b, bs): (&CudaView<T>, &Strided),
    code: i32,
    y: &mut CudaViewMut<O>,
) -> CudaResult<()> {
    let n = y.len();
    check_view(kernel, "a", a.len(), as_, n)?;
    check_view(kernel, "b", b.len(), bs, n)?;
    if n == 0 {
        return Ok(());
    }
    let f = gpu.function(&ELEMENTWISE, &entry_for::<T>(kernel))?;
    let nn = n as i64;
    let mut bld = gpu.stream().launch_builder(&f);
    bld.arg(a)
        .arg(as_)
        .arg(b)
        .arg(bs)
        .arg(y)
        .arg(&nn)
        .arg(&code);
    unsafe { bld.launch(grid_stride(n)) }?;
    Ok(())
}

/// `y = mask != 0 ? t : f` over the broadcast output `[n]`.
#[allow(clippy::too_many_arguments)]
pub fn where_cond<T: GpuElem>(
    gpu: &Gpu,
    mask: &CudaView<u8>,
    ms: &Strided,
    t: &CudaView<T>,
    ts: &Strided,
    f: &CudaView<T>,
    fs: &Strided,
    y: &mut CudaViewMut<T>,
) -> CudaResult<()> {
    let n = y.len();
    check_view("where", "mask", mask.len(), ms, n)?;
    check_view("where", "on_true", t.len(), ts, n)?;
    check_view("where", "on_false", f.len(), fs, n)?;
    if n == 0 {
        return Ok(());
    }
    let func = gpu.function(&ELEMENTWISE, &entry_for::<T>("where"))?;
    let nn = n as i64;
    let mut bld = gpu.stream().launch_builder(&func);
    bld.arg(mask)
        .arg(ms)
        .arg(t)
        .arg(ts)
        .arg(f)
        .arg(fs)
        .arg(y)
        .arg(&nn);
    unsafe { bld.launch(grid_stride(n)) }?;
    Ok(())
}

/// Every element of `y` set to `value` converted to `T` (as the CPU's `T::from_f64`).
pub fn fill<T: GpuElem>(gpu: &Gpu, y: &mut CudaViewMut<T>, value: f64) -> CudaResult<()> {
    let n = y.len();
    if n == 0 {
        return Ok(());
    }
    let f = gpu.function(&ELEMENTWISE, &entry_for::<T>("fill"))?;
    let nn = n as i64;
    let mut bld = gpu.stream().launch_builder(&f);
    bld.arg(y).arg(&nn).arg(&value);
    unsafe { bld.launch(grid_stride(n)) }?;
    Ok(())
}
