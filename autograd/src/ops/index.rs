//! Indexing ops: `index_select` (gather rows; grad by `index_add`) and `where_cond` (select
//! by a constant mask).

use super::{reduce_to, zero_like};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_runtime::{Result, Tensor};

impl Var {
    /// Entries `ids` (I64/I32, any shape, constant) along `dim`; repeated ids accumulate
    /// their grads.
    pub fn index_select(&self, ids: &Tensor, dim: usize) -> Result<Var> {
        let out = self.tensor().index_select(ids, dim)?;
        let shape = self.shape().to_vec();
        Ok(record1(
            "index_select",
            &[self],
            out,
            vec![ids.clone()],
            move |ctx| {
                let (g, ids) = (ctx.grad(0), ctx.saved(0));
                Ok(vec![grad_if(ctx.needs(0), || {
                    Tensor::zeros(&shape, g.dtype(), g.device())?.index_add(dim, ids, g)
                })?])
            },
        ))
    }

    /// `mask ? on_true : on_false` elementwise with a constant U8 `mask`; all broadcast.
    pub fn where_cond(mask: &Tensor, on_true: &Var, on_false: &Var) -> Result<Var> {
        let out = mask.where_cond(on_true.tensor(), on_false.tensor())?;
        let (st, sf) = (on_true.shape().to_vec(), on_false.shape().to_vec());
        let saved = vec![mask.clone()];
        Ok(record1(
            "where_cond",
            &[on_true, on_false],
            out,
            saved,
            move |ctx| {
                let (g, mask) = (ctx.grad(0), ctx.saved(0));
                let zero = zero_like(g)?;
                // The mask may be smaller than the output: broadcast it to g's shape first.
                let mask = mask.broadcast_as(g.shape())?;
                Ok(vec![
                    grad_if(ctx.needs(0), || reduce_to(&mask.where_cond(g, &zero)?, &st))?,
                    grad_if(ctx.needs(1), || reduce_to(&mask.where_cond(&zero, g)?, &sf))?,
                ])
            },
        ))
    }
}
