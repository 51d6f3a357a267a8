//! Broadcasting binary ops: add, sub, mul, div, maximum, minimum. Each input's grad is
//! summed back to its own shape (`sum_to`), which is how broadcasting accumulates.

use super::{reduce_to, zero_like};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_runtime::Result;

impl Var {
    /// `self + rhs` (broadcasting).
    pub fn add(&self, rhs: &Var) -> Result<Var> {
        let out = self.tensor().add(rhs.tensor())?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(record1("add", &[self, rhs], out, vec![], move |ctx| {
            let g = ctx.grad(0);
            Ok(vec![
                grad_if(ctx.needs(0), || reduce_to(g, &sa))?,
                grad_if(ctx.needs(1), || reduce_to(g, &sb))?,
            ])
        }))
    }

    /// `self - rhs` (broadcasting).
    pub fn sub(&self, rhs: &Var) -> Result<Var> {
        let out = self.tensor().sub(rhs.tensor())?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(record1("sub", &[self, rhs], out, vec![], move |ctx| {
            let g = ctx.grad(0);
            Ok(vec![
                grad_if(ctx.needs(0), || reduce_to(g, &sa))?,
                grad_if(ctx.needs(1), || reduce_to(&g.neg()?, &sb))?,
            ])
        }))
    }

    /// `self · rhs` elementwise (broadcasting).
    pub fn mul(&self, rhs: &Var) -> Result<Var> {
        let out = self.tensor().mul(rhs.tensor())?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        let saved = vec![self.tensor().clone(), rhs.tensor().clone()];
        Ok(record1("mul", &[self, rhs], out, saved, move |ctx| {
            let (g, a, b) = (ctx.grad(0), ctx.saved(0), ctx.saved(1));
            Ok(vec![
                grad_if(ctx.needs(0), || reduce_to(&g.mul(b)?, &sa))?,
                grad_if(ctx.needs(1), || reduce_to(&g.mul(a)?, &sb))?,
            ])
        }))
    }

    /// `self / rhs` elementwise (broadcasting).
    pub fn div(&self, rhs: &Var) -> Result<Var> {
        let out = self.tensor().div(rhs.tensor())?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        let saved = vec![self.tensor().clone(), rhs.tensor().clone()];
        Ok(record1("div", &[self, rhs], out, saved, move |ctx| {
            let (g, a, b) = (ctx.grad(0), ctx.saved(0), ctx.saved(1));
            // d(a/b)/da = 1/b, d(a/b)/db = -a/b²
            Ok(vec![
                grad_if(ctx.needs(0), || reduce_to(&g.div(b)?, &sa))?,
                grad_if(ctx.needs(1), || {
                    reduce_to(&g.mul(a)?.div(&b.sqr()?)?.neg()?, &sb)
                })?,
            ])
        }))
    }

    /// Elementwise max (broadcasting); at ties the gradient goes to `self`.
    pub fn maximum(&self, rhs: &Var) -> Result<Var> {
        let out = self.tensor().maximum(rhs.tensor())?;
        self.select_grad("maximum", rhs, out, true)
    }

    /// Elementwise min (broadcasting); at ties the gradient goes to `self`.
    pub fn minimum(&self, rhs: &Var) -> Result<Var> {
        let out = self.tensor().minimum(rhs.tensor())?;
        self.select_grad("minimum", rhs, out, false)
    }

    /// Records max/min: the grad flows to whichever operand was selected.
    fn select_grad(
        &self,
        name: &'static str,
        rhs: &Var,
        out: lmf_runtime::Tensor,
        is_max: bool,
    ) -> Result<Var> {
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        let saved = vec![self.tensor().clone(), rhs.tensor().clone()];
        Ok(record1(name, &[self, rhs], out, saved, move |ctx| {
            let (g, a, b) = (ctx.grad(0), ctx.saved(0), ctx.saved(1));
            // took_a: [out shape] u8, 1 where `self` was selected
            let took_a = if is_max { a.ge(b)? } else { a.le(b)? };
            let zero = zero_like(g)?;
            Ok(vec![
                grad_if(ctx.needs(0), || {
                    reduce_to(&took_a.where_cond(g, &zero)?, &sa)
                })?,
                grad_if(ctx.needs(1), || {
                    reduce_to(&took_a.where_cond(&zero, g)?, &sb)
                })?,
            ])
        }))
    }
}
