//! Reductions: sum/mean over dims (the grad broadcasts back), max/min over one dim (the
//! grad goes to the first arg-extremum only, like torch's indices).

use super::zero_like;
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_runtime::{DType, Result, Tensor};

/// `g` (reduced over `dims`, kept or not) broadcast back to `shape`.
fn expand_back(g: &Tensor, dims: &[usize], keepdim: bool, shape: &[usize]) -> Result<Tensor> {
    let mut g = g.clone();
    if !keepdim {
        // Re-insert the reduced dims in increasing order so each lands at its own index.
        for &d in dims {
            g = g.unsqueeze(d)?;
        }
    }
    g.broadcast_as(shape)
}

/// Sorted, deduplicated reduction dims (the runtime validated them).
fn sorted(dims: &[usize]) -> Vec<usize> {
    let mut d = dims.to_vec();
    d.sort_unstable();
    d.dedup();
    d
}

impl Var {
    /// Sum over `dims` (empty `dims`: a copy).
    pub fn sum(&self, dims: &[usize], keepdim: bool) -> Result<Var> {
        let out = self.tensor().sum(dims, keepdim)?;
        let (dims, shape) = (sorted(dims), self.shape().to_vec());
        Ok(record1("sum", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || {
                expand_back(ctx.grad(0), &dims, keepdim, &shape)
            })?])
        }))
    }

    /// Sum of every element, shape `[]`.
    pub fn sum_all(&self) -> Result<Var> {
        let dims: Vec<usize> = (0..self.rank()).collect();
        self.sum(&dims, false)
    }

    /// Mean over `dims`.
    pub fn mean(&self, dims: &[usize], keepdim: bool) -> Result<Var> {
        let out = self.tensor().mean(dims, keepdim)?;
        let (dims, shape) = (sorted(dims), self.shape().to_vec());
        let count: usize = dims.iter().map(|&d| shape[d]).product();
        Ok(record1("mean", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || {
                expand_back(
                    &ctx.grad(0).scale(1.0 / count as f64)?,
                    &dims,
                    keepdim,
                    &shape,
                )
            })?])
        }))
    }

    /// Mean of every element, shape `[]`.
    pub fn mean_all(&self) -> Result<Var> {
        let dims: Vec<usize> = (0..self.rank()).collect();
        self.mean(&dims, false)
    }

    /// Max over `dim`.
    pub fn max(&self, dim: usize, keepdim: bool) -> Result<Var> {
        let out = self.tensor().max(dim, keepdim)?;
        let idx = self.tensor().argmax(dim, true)?;
        self.arg_reduce("max", dim, keepdim, out, idx)
    }

    /// Min over `dim`.
    pub fn min(&self, dim: usize, keepdim: bool) -> Result<Var> {
        let out = self.tensor().min(dim, keepdim)?;
        let idx = self.tensor().neg()?.argmax(dim, true)?;
        self.arg_reduce("min", dim, keepdim, out, idx)
    }

    /// Records max/min over `dim`: the grad is scattered to the saved arg index
    /// (`idx`: I64, keepdim shape).
    fn arg_reduce(
        &self,
        name: &'static str,
        dim: usize,
        keepdim: bool,
        out: Tensor,
        idx: Tensor,
    ) -> Result<Var> {
        let shape = self.shape().to_vec();
        Ok(record1(name, &[self], out, vec![idx], move |ctx| {
            let (g, idx) = (ctx.grad(0), ctx.saved(0));
            Ok(vec![grad_if(ctx.needs(0), || {
                let g = if keepdim {
                    g.clone()
                } else {
                    g.unsqueeze(dim)?
                };
                // pos: [1, .., n, .., 1] positions along `dim`; hit = pos == idx, broadcast
                let n = shape[dim];
                let mut pos_shape = vec![1; shape.len()];
                pos_shape[dim] = n;
                let pos =
                    Tensor::arange(0, n as i64, DType::I64, g.device())?.reshape(&pos_shape)?;
                let hit = pos.eq(idx)?.broadcast_as(&shape)?;
                hit.where_cond(&g, &zero_like(&g)?)
            })?])
        }))
    }
}
