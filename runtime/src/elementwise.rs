//! Elementwise ops: unary maps, scalar/affine maps, binary ops with numpy broadcasting,
//! comparisons (-> U8 masks) and `where_cond`.
//!
//! F32/BF16/F16 compute in f32, F64 and integers in f64; results keep the input dtype
//! (comparisons give U8). Contiguous or strided F32/F64 storage is read in place.

use crate::broadcast::{zip_map, Operand};
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::{broadcast_shape, Layout};
use crate::storage::PAR_CHUNK;
use crate::tensor::Tensor;
use lmf_kernels::cuda::elementwise::{Binary, Compare, Unary};
use lmf_kernels::Real;
use rayon::prelude::*;
use std::borrow::Cow;

/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, the GELU of GPT-2/Gemma.
#[inline(always)]
fn gelu_tanh<T: Real>(x: T) -> T {
    let c = T::of((2.0 / std::f64::consts::PI).sqrt());
    let inner = c * (x + T::of(0.044715) * x * x * x);
    T::of(0.5) * x * (T::one() + inner.tanh())
}

/// `1 / (1 + e^-x)`; saturates to exactly 0 or 1 without NaN.
#[inline(always)]
fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// Defines a unary op from a closure over the compute type `C`.
macro_rules! unary_ops {
    ($($name:ident, $doc:literal, $code:ident, |$x:ident| $e:expr;)*) => {
        $(
            #[doc = $doc]
            pub fn $name(&self) -> Result<Tensor> {
                if self.device.is_cuda() {
                    return self.cuda_unary(Unary::$code, 0.0, 0.0);
                }
                with_compute!(self.dtype, C => self.map::<C>(|$x: C| $e))
            }
        )*
    };
}

/// Defines a broadcasting binary op from a closure over the compute type `C`.
macro_rules! binary_ops {
    ($($name:ident, $doc:literal, $code:ident, |$a:ident, $b:ident| $e:expr;)*) => {
        $(
            #[doc = $doc]
            pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
                if self.device.is_cuda() {
                    let shape = self.zip_shape(stringify!($name), rhs)?;
                    return self.cuda_binary(rhs, &shape, Binary::$code);
                }
                with_compute!(self.dtype, C => self.zip::<C, C>(stringify!($name), rhs, |$a: C, $b: C| $e))
            }
        )*
    };
}

/// Defines a broadcasting comparison producing a U8 mask.
macro_rules! compare_ops {
    ($($name:ident, $doc:literal, $code:ident, $op:tt;)*) => {
        $(
            #[doc = $doc]
            pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
                if self.device.is_cuda() {
                    let shape = self.zip_shape(stringify!($name), rhs)?;
                    return self.cuda_compare(rhs, &shape, Compare::$code);
                }
                with_compute!(self.dtype, C => self.zip::<C, u8>(stringify!($name), rhs, |a: C, b: C| (a $op b) as u8))
            }
        )*
    };
}

impl Tensor {
    /// `f` over every element in compute type `C`, result in this tensor's dtype.
    fn map<C: Element + Real>(&self, f: impl Fn(C) -> C + Sync) -> Result<Tensor> {
        let x = self.values::<C>()?;
        let out: Vec<C> = if x.len() >= 2 * PAR_CHUNK {
            x.par_iter()
                .with_min_len(PAR_CHUNK)
                .map(|&v| f(v))
                .collect()
        } else {
            x.iter().map(|&v| f(v)).collect()
        };
        Ok(Tensor::from_compute(out, self.shape(), self.dtype))
    }

    /// This tensor as a `C` operand broadcast to `shape`: the storage itself when it already
    /// holds `C` (any strides), else a converted row-major copy.
    pub(crate) fn operand<C: Element>(&self, shape: &[usize]) -> Result<(Cow<'_, [C]>, Layout)> {
        let cpu = self.storage.cpu()?;
        Ok(match C::slice(cpu) {
            Some(s) => (Cow::Borrowed(s), self.layout.broadcast_as(shape)?),
            None => {
                let data = cpu.gather::<C>(&self.layout);
                (
                    Cow::Owned(data),
                    Layout::contiguous(self.shape()).broadcast_as(shape)?,
                )
            }
        })
    }

    /// Checks that `rhs` matches this tensor's dtype and device for `op`.
    pub(crate) fn check_same(&self, op: &'static str, rhs: &Tensor) -> Result<()> {
        if self.dtype != rhs.dtype {
            return Err(Error::dtype(
                op,
                format!(
                    "lhs is {} {:?} but rhs is {} {:?}",
                    self.dtype,
                    self.shape(),
                    rhs.dtype,
                    rhs.shape()
                ),
            ));
        }
        if self.device != rhs.device {
            return Err(Error::device(
                op,
                format!("lhs on {} but rhs on {}", self.device, rhs.device),
            ));
        }
        Ok(())
    }

    /// The checked broadcast shape of a binary op `op` (same dtype and device required).
    fn zip_shape(&self, op: &'static str, rhs: &Tensor) -> Result<Vec<usize>> {
        self.check_same(op, rhs)?;
        broadcast_shape(op, self.shape(), rhs.shape())
    }

    /// `f(self, rhs)` with numpy broadcasting; `O = C` keeps the dtype, `O = u8` gives a mask.
    fn zip<C, O>(
        &self,
        op: &'static str,
        rhs: &Tensor,
        f: impl Fn(C, C) -> O + Sync,
    ) -> Result<Tensor>
    where
        C: Element + Real,
        O: Element + Default,
    {
        self.check_same(op, rhs)?;
        let shape = broadcast_shape(op, self.shape(), rhs.shape())?;
        let (a, la) = self.operand::<C>(&shape)?;
        let (b, lb) = rhs.operand::<C>(&shape)?;
        let out = zip_map(
            &shape,
            &Operand {
                data: &a,
                layout: la,
            },
            &Operand {
                data: &b,
                layout: lb,
            },
            f,
        );
        let dtype = if O::DTYPE == DType::U8 {
            DType::U8
        } else {
            self.dtype
        };
        Ok(Tensor::from_compute(out, &shape, dtype))
    }

    unary_ops! {
        neg, "`-x`.", Neg, |x| -x;
        exp, "`e^x`.", Exp, |x| x.exp();
        log, "Natural log.", Log, |x| x.ln();
        sqrt, "Square root.", Sqrt, |x| x.sqrt();
        sqr, "`x²`.", Sqr, |x| x * x;
        recip, "`1 / x`.", Recip, |x| x.recip();
        tanh, "Hyperbolic tangent.", Tanh, |x| x.tanh();
        sin, "Sine.", Sin, |x| x.sin();
        cos, "Cosine.", Cos, |x| x.cos();
        abs, "Absolute value.", Abs, |x| x.abs();
        relu, "`max(x, 0)` (NaN stays NaN).", Relu, |x| if x < C::of(0.0) { C::of(0.0) } else { x };
        silu, "`x·sigmoid(x)` (SwiGLU's gate).", Silu, |x| x * sigmoid(x);
        gelu_tanh, "GELU, tanh approximation.", GeluTanh, |x| gelu_tanh(x);
        sigmoid, "`1 / (1 + e^-x)`.", Sigmoid, |x| sigmoid(x);
    }

    /// `x^e`.
    pub fn powf(&self, e: f64) -> Result<Tensor> {
        if self.device.is_cuda() {
            return self.cuda_unary(Unary::Powf, e, 0.0);
        }
        with_compute!(self.dtype, C => { let e = C::of(e); self.map::<C>(|x| x.powf(e)) })
    }

    /// `x·mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        if self.device.is_cuda() {
            return self.cuda_unary(Unary::Affine, mul, add);
        }
        with_compute!(self.dtype, C => {
            let (m, a) = (C::of(mul), C::of(add));
            self.map::<C>(|x| x * m + a)
        })
    }

    /// `x·s`.
    pub fn scale(&self, s: f64) -> Result<Tensor> {
        if self.device.is_cuda() {
            return self.cuda_unary(Unary::Scale, s, 0.0);
        }
        with_compute!(self.dtype, C => { let s = C::of(s); self.map::<C>(|x| x * s) })
    }

    /// `min(max(x, min), max)`.
    pub fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        if min > max {
            return Err(Error::invalid("clamp", format!("min {min} > max {max}")));
        }
        if self.device.is_cuda() {
            return self.cuda_unary(Unary::Clamp, min, max);
        }
        with_compute!(self.dtype, C => {
            let (lo, hi) = (C::of(min), C::of(max));
            self.map::<C>(|x| if x < lo { lo } else if x > hi { hi } else { x })
        })
    }

    binary_ops! {
        add, "`self + rhs` (broadcasting).", Add, |a, b| a + b;
        sub, "`self - rhs` (broadcasting).", Sub, |a, b| a - b;
        mul, "`self · rhs` (broadcasting).", Mul, |a, b| a * b;
        div, "`self / rhs` (broadcasting; integers truncate).", Div, |a, b| a / b;
        maximum, "Elementwise max (broadcasting; NaN wins).", Maximum, |a, b| if a > b || a.is_nan() { a } else { b };
        minimum, "Elementwise min (broadcasting; NaN wins).", Minimum, |a, b| if a < b || a.is_nan() { a } else { b };
    }

    compare_ops! {
        eq, "`self == rhs` as a U8 mask (broadcasting).", Eq, ==;
        ne, "`self != rhs` as a U8 mask (broadcasting).", Ne, !=;
        lt, "`self < rhs` as a U8 mask (broadcasting).", Lt, <;
        le, "`self <= rhs` as a U8 mask (broadcasting).", Le, <=;
        gt, "`self > rhs` as a U8 mask (broadcasting).", Gt, >;
        ge, "`self >= rhs` as a U8 mask (broadcasting).", Ge, >=;
    }

    /// `mask ? on_true : on_false` elementwise, `self` being the U8 mask; all three broadcast.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        const OP: &str = "where_cond";
        if self.dtype != DType::U8 {
            return Err(Error::dtype(
                OP,
                format!("mask must be u8, got {}", self.dtype),
            ));
        }
        on_true.check_same(OP, on_false)?;
        if self.device != on_true.device {
            return Err(Error::device(
                OP,
                format!("mask on {} but values on {}", self.device, on_true.device),
            ));
        }
        let shape = broadcast_shape(OP, self.shape(), on_true.shape())
            .and_then(|s| broadcast_shape(OP, &s, on_false.shape()))
            .map_err(|_| {
                Error::shape(
                    OP,
                    format!(
                        "cannot broadcast mask {:?}, on_true {:?}, on_false {:?}",
                        self.shape(),
                        on_true.shape(),
                        on_false.shape()
                    ),
                )
            })?;
        if self.device.is_cuda() {
            return self.cuda_where(on_true, on_false, &shape);
        }
        let mask = self.broadcast_as(&shape)?.contiguous()?;
        let mask = mask.values::<u8>()?;
        with_dtype!(on_true.dtype, T => {
            let (t, lt) = on_true.operand::<T>(&shape)?;
            let (f, lf) = on_false.operand::<T>(&shape)?;
            let out: Vec<T> = mask
                .iter()
                .zip(lt.offsets().zip(lf.offsets()))
                .map(|(&m, (i, j))| if m != 0 { t[i] } else { f[j] })
                .collect();
            Ok(Tensor::from_compute(out, &shape, on_true.dtype))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Error, Tensor};

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, Device::Cpu).unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "[{i}] {x} vs {y}");
        }
    }

    #[test]
    fn unary_ops_match_scalar_math() {
        let xs = [-3.0f32, -0.5, 0.0, 0.7, 2.0];
        let x = t(&xs, &[5]);
        let check = |got: Tensor, f: fn(f32) -> f32| {
            close(&got.to_vec::<f32>().unwrap(), &xs.map(f), 1e-6);
        };
        check(x.neg().unwrap(), |v| -v);
        check(x.exp().unwrap(), f32::exp);
        check(x.sqr().unwrap(), |v| v * v);
        check(x.tanh().unwrap(), f32::tanh);
        check(x.abs().unwrap(), f32::abs);
        check(x.relu().unwrap(), |v| v.max(0.0));
        check(x.sigmoid().unwrap(), |v| 1.0 / (1.0 + (-v).exp()));
        check(x.silu().unwrap(), |v| v / (1.0 + (-v).exp()));
        check(x.sin().unwrap(), f32::sin);
        check(x.cos().unwrap(), f32::cos);
        check(x.affine(2.0, 1.0).unwrap(), |v| 2.0 * v + 1.0);
        check(x.scale(-0.5).unwrap(), |v| -0.5 * v);
        check(x.clamp(-1.0, 1.0).unwrap(), |v| v.clamp(-1.0, 1.0));
        // gelu_tanh reference values (torch.nn.functional.gelu(approximate="tanh"))
        let g = x.gelu_tanh().unwrap().to_vec::<f32>().unwrap();
        close(
            &g,
            &[-0.0036374, -0.154286, 0.0, 0.5305701, 1.9545977],
            1e-6,
        );
        let p = t(&[1.0, 4.0, 9.0], &[3]);
        close(
            &p.sqrt().unwrap().to_vec::<f32>().unwrap(),
            &[1.0, 2.0, 3.0],
            1e-7,
        );
        close(
            &p.log().unwrap().to_vec::<f32>().unwrap(),
            &[0.0, 4f32.ln(), 9f32.ln()],
            1e-6,
        );
        close(
            &p.recip().unwrap().to_vec::<f32>().unwrap(),
            &[1.0, 0.25, 1.0 / 9.0],
            1e-7,
        );
        close(
            &p.powf(1.5).unwrap().to_vec::<f32>().unwrap(),
            &[1.0, 8.0, 27.0],
            1e-6,
        );
        // sigmoid saturates without NaN
        let s = t(&[-1000.0, 1000.0], &[2])
            .sigmoid()
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(s, vec![0.0, 1.0]);
        assert!(x.clamp(1.0, 0.0).unwrap_err().to_string().contains("clamp"));
    }

    #[test]
    fn unary_keeps_dtype_and_reads_strided_views() {
        let x = Tensor::arange(0, 6, DType::F32, Device::Cpu)
            .unwrap()
            .reshape(&[2, 3])
            .unwrap();
        let y = x.t().unwrap().scale(2.0).unwrap();
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(
            y.to_vec::<f32>().unwrap(),
            vec![0.0, 6.0, 2.0, 8.0, 4.0, 10.0]
        );
        let b = x.to_dtype(DType::BF16).unwrap().exp().unwrap();
        assert_eq!(b.dtype(), DType::BF16);
        let want: Vec<f32> = (0..6)
            .map(|i| half::bf16::from_f32((i as f32).exp()).to_f32())
            .collect();
        assert_eq!(b.to_vec::<f32>().unwrap(), want);
        let i = Tensor::arange(-2, 2, DType::I64, Device::Cpu)
            .unwrap()
            .abs()
            .unwrap();
        assert_eq!(
            (i.dtype(), i.to_vec::<i64>().unwrap()),
            (DType::I64, vec![2, 1, 0, 1])
        );
    }

    #[test]
    fn binary_broadcasting() {
        let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let row = t(&[10.0, 20.0, 30.0], &[3]);
        let col = t(&[100.0, 200.0], &[2, 1]);
        assert_eq!(
            a.add(&row).unwrap().to_vec::<f32>().unwrap(),
            vec![11., 22., 33., 14., 25., 36.]
        );
        assert_eq!(col.add(&row).unwrap().shape(), &[2, 3]);
        assert_eq!(
            col.sub(&row).unwrap().to_vec::<f32>().unwrap(),
            vec![90., 80., 70., 190., 180., 170.]
        );
        assert_eq!(
            a.mul(&col).unwrap().to_vec::<f32>().unwrap(),
            vec![100., 200., 300., 800., 1000., 1200.]
        );
        assert_eq!(
            a.div(&t(&[2.0], &[])).unwrap().to_vec::<f32>().unwrap(),
            vec![0.5, 1., 1.5, 2., 2.5, 3.]
        );
        // [2, 1, 3] with [4, 1] -> [2, 4, 3]
        let x = Tensor::arange(0, 6, DType::F32, Device::Cpu)
            .unwrap()
            .reshape(&[2, 1, 3])
            .unwrap();
        let y = Tensor::arange(0, 4, DType::F32, Device::Cpu)
            .unwrap()
            .reshape(&[4, 1])
            .unwrap();
        let z = x.maximum(&y).unwrap();
        assert_eq!(z.shape(), &[2, 4, 3]);
        let zv = z.to_vec::<f32>().unwrap();
        for i in 0..2 {
            for j in 0..4 {
                for k in 0..3 {
                    let want = ((i * 3 + k) as f32).max(j as f32);
                    assert_eq!(zv[(i * 4 + j) * 3 + k], want);
                }
            }
        }
        assert_eq!(
            a.minimum(&row).unwrap().to_vec::<f32>().unwrap(),
            a.to_vec::<f32>().unwrap()
        );
        // strided operand: a transposed view added to a contiguous tensor
        let s = a.t().unwrap().add(&t(&[0.0; 6], &[3, 2])).unwrap();
        assert_eq!(s.to_vec::<f32>().unwrap(), vec![1., 4., 2., 5., 3., 6.]);
        // NaN propagates through maximum
        let n = t(&[f32::NAN, 1.0], &[2])
            .maximum(&t(&[0.0, f32::NAN], &[2]))
            .unwrap();
        assert!(n.to_vec::<f32>().unwrap().iter().all(|v| v.is_nan()));
    }

    #[test]
    fn binary_errors_name_the_op_and_shapes() {
        let a = t(&[0.0; 6], &[2, 3]);
        let e = a.add(&t(&[0.0; 2], &[2])).unwrap_err();
        assert!(matches!(e, Error::Shape { op: "add", .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("add") && msg.contains("[2, 3]") && msg.contains("[2]"),
            "{msg}"
        );
        let e = a.mul(&a.to_dtype(DType::F64).unwrap()).unwrap_err();
        assert!(matches!(e, Error::DType { op: "mul", .. }), "{e}");
    }

    #[test]
    fn bf16_binary_rounds_once_from_f32() {
        let a = t(&[1.0, 3.0], &[2]).to_dtype(DType::BF16).unwrap();
        let b = t(&[1.0 / 256.0, 3.0 / 128.0], &[2])
            .to_dtype(DType::BF16)
            .unwrap();
        let s = a.add(&b).unwrap();
        assert_eq!(s.dtype(), DType::BF16);
        // 1 + 2^-8 ties to 1.0; 3 + 3/128 = 3.0234375 rounds to 3.03125 (bf16 step 1/64)
        assert_eq!(s.to_vec::<f32>().unwrap(), vec![1.0, 3.03125]);
    }

    #[test]
    fn comparisons_and_where() {
        let a = t(&[1.0, 2.0, 3.0], &[3]);
        let b = t(&[2.0], &[1]);
        let m = a.lt(&b).unwrap();
        assert_eq!(
            (m.dtype(), m.to_vec::<u8>().unwrap()),
            (DType::U8, vec![1, 0, 0])
        );
        assert_eq!(a.le(&b).unwrap().to_vec::<u8>().unwrap(), vec![1, 1, 0]);
        assert_eq!(a.gt(&b).unwrap().to_vec::<u8>().unwrap(), vec![0, 0, 1]);
        assert_eq!(a.ge(&b).unwrap().to_vec::<u8>().unwrap(), vec![0, 1, 1]);
        assert_eq!(a.eq(&b).unwrap().to_vec::<u8>().unwrap(), vec![0, 1, 0]);
        assert_eq!(a.ne(&b).unwrap().to_vec::<u8>().unwrap(), vec![1, 0, 1]);
        // mask [2, 1] broadcast against values [3]
        let mask = Tensor::from_vec(vec![1u8, 0], &[2, 1], Device::Cpu).unwrap();
        let w = mask.where_cond(&a, &t(&[-1.0], &[])).unwrap();
        assert_eq!(w.shape(), &[2, 3]);
        assert_eq!(w.to_vec::<f32>().unwrap(), vec![1., 2., 3., -1., -1., -1.]);
        let e = a.where_cond(&a, &a).unwrap_err();
        assert!(matches!(
            e,
            Error::DType {
                op: "where_cond",
                ..
            }
        ));
        let e = mask
            .where_cond(&t(&[0.0; 4], &[4]), &a)
            .unwrap_err()
            .to_string();
        assert!(e.contains("where_cond") && e.contains("[4]"), "{e}");
    }

    #[test]
    fn large_ops_run_in_parallel_and_agree() {
        let n = 200_003;
        let v: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.01).collect();
        let x = t(&v, &[n]);
        let y = x.mul(&x).unwrap().sub(&x.sqr().unwrap()).unwrap();
        assert!(y.to_vec::<f32>().unwrap().iter().all(|&d| d == 0.0));
        let e = x.exp().unwrap().to_vec::<f32>().unwrap();
        assert!(e.iter().zip(&v).all(|(a, b)| *a == b.exp()));
    }
}
