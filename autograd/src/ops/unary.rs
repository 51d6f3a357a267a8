//! Elementwise unary ops and scalar maps: neg, exp, log, sqrt, sqr, recip, tanh, sigmoid,
//! silu, gelu_tanh, relu, sin, cos, powf, affine, scale, clamp.

use super::zero_like;
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_runtime::{Result, Tensor};

/// `sqrt(2/π)`, the GELU tanh-approximation constant.
const GELU_C: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the GELU tanh approximation.
const GELU_A: f64 = 0.044715;

/// Which tensor a unary op's derivative is written in.
#[derive(Clone, Copy)]
enum Saved {
    /// The input `x`.
    X,
    /// The output `y`.
    Y,
}

impl Var {
    /// Records a unary op whose grad is `g ⊙ dydx(s)`, saving only what `dydx` reads: the
    /// output `y` when `from` is `Y`, else the input `x`.
    fn unary(
        &self,
        name: &'static str,
        out: Tensor,
        from: Saved,
        dydx: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Var {
        let saved = vec![match from {
            Saved::X => self.tensor().clone(),
            Saved::Y => out.clone(),
        }];
        record1(name, &[self], out, saved, move |ctx| {
            let (g, s) = (ctx.grad(0), ctx.saved(0));
            Ok(vec![grad_if(ctx.needs(0), || g.mul(&dydx(s)?))?])
        })
    }

    /// `-x`.
    pub fn neg(&self) -> Result<Var> {
        let out = self.tensor().neg()?;
        Ok(record1("neg", &[self], out, vec![], |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || ctx.grad(0).neg())?])
        }))
    }

    /// `e^x`; `dy/dx = y`.
    pub fn exp(&self) -> Result<Var> {
        let out = self.tensor().exp()?;
        Ok(self.unary("exp", out, Saved::Y, |y| Ok(y.clone())))
    }

    /// `ln x`; `dy/dx = 1/x`.
    pub fn log(&self) -> Result<Var> {
        let out = self.tensor().log()?;
        Ok(self.unary("log", out, Saved::X, |x| x.recip()))
    }

    /// `√x`; `dy/dx = 1/(2y)`.
    pub fn sqrt(&self) -> Result<Var> {
        let out = self.tensor().sqrt()?;
        Ok(self.unary("sqrt", out, Saved::Y, |y| y.recip()?.scale(0.5)))
    }

    /// `x²`; `dy/dx = 2x`.
    pub fn sqr(&self) -> Result<Var> {
        let out = self.tensor().sqr()?;
        Ok(self.unary("sqr", out, Saved::X, |x| x.scale(2.0)))
    }

    /// `1/x`; `dy/dx = -y²`.
    pub fn recip(&self) -> Result<Var> {
        let out = self.tensor().recip()?;
        Ok(self.unary("recip", out, Saved::Y, |y| y.sqr()?.neg()))
    }

    /// `tanh x`; `dy/dx = 1 - y²`.
    pub fn tanh(&self) -> Result<Var> {
        let out = self.tensor().tanh()?;
        Ok(self.unary("tanh", out, Saved::Y, |y| y.sqr()?.affine(-1.0, 1.0)))
    }

    /// `σ(x)`; `dy/dx = y(1 - y)`.
    pub fn sigmoid(&self) -> Result<Var> {
        let out = self.tensor().sigmoid()?;
        Ok(self.unary("sigmoid", out, Saved::Y, |y| y.mul(&y.affine(-1.0, 1.0)?)))
    }

    /// `x·σ(x)`; `dy/dx = σ(x)·(1 + x·(1 - σ(x)))`.
    pub fn silu(&self) -> Result<Var> {
        let out = self.tensor().silu()?;
        Ok(self.unary("silu", out, Saved::X, |x| {
            let s = x.sigmoid()?;
            s.mul(&x.mul(&s.affine(-1.0, 1.0)?)?.affine(1.0, 1.0)?)
        }))
    }

    /// GELU, tanh approximation: `0.5·x·(1 + tanh(u))`, `u = c·(x + a·x³)`;
    /// `dy/dx = 0.5·(1 + t) + 0.5·x·(1 - t²)·c·(1 + 3a·x²)` with `t = tanh(u)`.
    pub fn gelu_tanh(&self) -> Result<Var> {
        let out = self.tensor().gelu_tanh()?;
        Ok(self.unary("gelu_tanh", out, Saved::X, |x| {
            let x2 = x.sqr()?;
            let t = x.mul(&x2.affine(GELU_A, 1.0)?)?.scale(GELU_C)?.tanh()?;
            let du = x2.affine(3.0 * GELU_A * GELU_C, GELU_C)?;
            let rest = x.mul(&t.sqr()?.affine(-1.0, 1.0)?)?.mul(&du)?;
            t.affine(0.5, 0.5)?.add(&rest.scale(0.5)?)
        }))
    }

    /// `max(x, 0)`; the grad passes where `x > 0`.
    pub fn relu(&self) -> Result<Var> {
        let out = self.tensor().relu()?;
        let saved = vec![self.tensor().clone()];
        Ok(record1("relu", &[self], out, saved, |ctx| {
            let (g, x) = (ctx.grad(0), ctx.saved(0));
            let zero = zero_like(x)?;
            Ok(vec![grad_if(ctx.needs(0), || {
                x.gt(&zero)?.where_cond(g, &zero)
            })?])
        }))
    }

    /// `sin x`; `dy/dx = cos x`.
    pub fn sin(&self) -> Result<Var> {
        let out = self.tensor().sin()?;
        Ok(self.unary("sin", out, Saved::X, |x| x.cos()))
    }

    /// `cos x`; `dy/dx = -sin x`.
    pub fn cos(&self) -> Result<Var> {
        let out = self.tensor().cos()?;
        Ok(self.unary("cos", out, Saved::X, |x| x.sin()?.neg()))
    }

    /// `x^e`; `dy/dx = e·x^(e-1)`.
    pub fn powf(&self, e: f64) -> Result<Var> {
        let out = self.tensor().powf(e)?;
        Ok(self.unary("powf", out, Saved::X, move |x| x.powf(e - 1.0)?.scale(e)))
    }

    /// `x·mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Var> {
        let out = self.tensor().affine(mul, add)?;
        Ok(record1("affine", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || ctx.grad(0).scale(mul))?])
        }))
    }

    /// `x·s`.
    pub fn scale(&self, s: f64) -> Result<Var> {
        let out = self.tensor().scale(s)?;
        Ok(record1("scale", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || ctx.grad(0).scale(s))?])
        }))
    }

    /// `min(max(x, min), max)`; the grad passes where `min <= x <= max`.
    pub fn clamp(&self, min: f64, max: f64) -> Result<Var> {
        let out = self.tensor().clamp(min, max)?;
        let saved = vec![self.tensor().clone()];
        Ok(record1("clamp", &[self], out, saved, move |ctx| {
            let (g, x) = (ctx.grad(0), ctx.saved(0));
            let lo = Tensor::scalar(min, x.dtype(), x.device())?;
            let hi = Tensor::scalar(max, x.dtype(), x.device())?;
            let zero = zero_like(x)?;
            Ok(vec![grad_if(ctx.needs(0), || {
                let inside = x.ge(&lo)?.where_cond(g, &zero)?;
                x.le(&hi)?.where_cond(&inside, &zero)
            })?])
        }))
    }
}
