//! Shape ops (views in the forward): reshape, transpose, t, permute, narrow, broadcast_as,
//! unsqueeze, squeeze, flatten_all, contiguous, and cat.

use super::reduce_to;
use crate::tape::{grad_if, record, record1};
use crate::var::Var;
use lmf_runtime::{DType, Error, Result, Tensor};

impl Var {
    /// The same elements with a new shape.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let out = self.tensor().reshape(shape)?;
        let from = self.shape().to_vec();
        Ok(record1("reshape", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || ctx.grad(0).reshape(&from))?])
        }))
    }

    /// All elements as one dim.
    pub fn flatten_all(&self) -> Result<Var> {
        self.reshape(&[self.elem_count()])
    }

    /// Swaps dims `d0` and `d1`.
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Var> {
        let out = self.tensor().transpose(d0, d1)?;
        Ok(record1("transpose", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || {
                ctx.grad(0).transpose(d0, d1)
            })?])
        }))
    }

    /// Swaps the last two dims.
    pub fn t(&self) -> Result<Var> {
        if self.rank() < 2 {
            return Err(Error::shape(
                "t",
                format!("needs at least 2 dims, got {:?}", self.shape()),
            ));
        }
        self.transpose(self.rank() - 2, self.rank() - 1)
    }

    /// Reorders dims: output dim `i` is input dim `dims[i]`.
    pub fn permute(&self, dims: &[usize]) -> Result<Var> {
        let out = self.tensor().permute(dims)?;
        // inverse[dims[i]] = i undoes the permutation
        let mut inverse = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(record1("permute", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || {
                ctx.grad(0).permute(&inverse)
            })?])
        }))
    }

    /// `len` entries of `dim` starting at `start`; the grad is scattered back (zeros
    /// elsewhere).
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Var> {
        let out = self.tensor().narrow(dim, start, len)?;
        let shape = self.shape().to_vec();
        Ok(record1("narrow", &[self], out, vec![], move |ctx| {
            let g = ctx.grad(0);
            Ok(vec![grad_if(ctx.needs(0), || {
                let ids =
                    Tensor::arange(start as i64, (start + len) as i64, DType::I64, g.device())?;
                Tensor::zeros(&shape, g.dtype(), g.device())?.index_add(dim, &ids, g)
            })?])
        }))
    }

    /// Broadcast to `shape` (numpy rules); the grad is summed back.
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Var> {
        let out = self.tensor().broadcast_as(shape)?;
        let from = self.shape().to_vec();
        Ok(record1("broadcast_as", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || {
                reduce_to(ctx.grad(0), &from)
            })?])
        }))
    }

    /// Inserts a size-1 dim at `dim`.
    pub fn unsqueeze(&self, dim: usize) -> Result<Var> {
        let out = self.tensor().unsqueeze(dim)?;
        Ok(record1("unsqueeze", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || ctx.grad(0).squeeze(dim))?])
        }))
    }

    /// Removes the size-1 dim `dim`.
    pub fn squeeze(&self, dim: usize) -> Result<Var> {
        let out = self.tensor().squeeze(dim)?;
        Ok(record1("squeeze", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || ctx.grad(0).unsqueeze(dim))?])
        }))
    }

    /// A row-major copy (or `self`'s data when already contiguous).
    pub fn contiguous(&self) -> Result<Var> {
        let out = self.tensor().contiguous()?;
        Ok(record1("contiguous", &[self], out, vec![], |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || Ok(ctx.grad(0).clone()))?])
        }))
    }

    /// Concatenates along `dim`; each input's grad is its slice of the output grad.
    pub fn cat(vars: &[&Var], dim: usize) -> Result<Var> {
        let tensors: Vec<&Tensor> = vars.iter().map(|v| v.tensor()).collect();
        let out = Tensor::cat(&tensors, dim)?;
        let lens: Vec<usize> = vars.iter().map(|v| v.shape()[dim]).collect();
        let mut outs = record("cat", vars, vec![out], vec![], move |ctx| {
            let g = ctx.grad(0);
            let mut start = 0;
            let mut grads = Vec::with_capacity(lens.len());
            for (i, &len) in lens.iter().enumerate() {
                grads.push(grad_if(ctx.needs(i), || g.narrow(dim, start, len))?);
                start += len;
            }
            Ok(grads)
        });
        Ok(outs.remove(0))
    }
}
