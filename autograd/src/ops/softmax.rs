//! Softmax and log-softmax along a dim.

use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_runtime::Result;

impl Var {
    /// Softmax along `dim`; `dx = y ⊙ (g - Σ_dim g ⊙ y)`.
    pub fn softmax(&self, dim: usize) -> Result<Var> {
        let out = self.tensor().softmax(dim)?;
        let saved = vec![out.clone()];
        Ok(record1("softmax", &[self], out, saved, move |ctx| {
            let (g, y) = (ctx.grad(0), ctx.saved(0));
            Ok(vec![grad_if(ctx.needs(0), || {
                let dot = g.mul(y)?.sum(&[dim], true)?;
                y.mul(&g.sub(&dot)?)
            })?])
        }))
    }

    /// Log-softmax along `dim`; `dx = g - softmax(x) ⊙ Σ_dim g` with `softmax = e^y`.
    pub fn log_softmax(&self, dim: usize) -> Result<Var> {
        let out = self.tensor().log_softmax(dim)?;
        let saved = vec![out.clone()];
        Ok(record1("log_softmax", &[self], out, saved, move |ctx| {
            let (g, y) = (ctx.grad(0), ctx.saved(0));
            Ok(vec![grad_if(ctx.needs(0), || {
                let total = g.sum(&[dim], true)?;
                g.sub(&y.exp()?.mul(&total)?)
            })?])
        }))
    }
}
