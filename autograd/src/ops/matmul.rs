//! Batched, broadcasting matmul: `[.., m, k] x [.., k, n] -> [.., m, n]`.
//! `da = g·bᵀ`, `db = aᵀ·g`, each summed over the batch dims it was broadcast along.

use super::reduce_to;
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_runtime::{Result, Tensor};

/// `aᵀ·g` reduced to a 2-D `[k, n]` weight when `a: [.., m, k]` has batch dims: the batch
/// is folded into the rows (`[B·m, k]ᵀ · [B·m, n]`), one gemm and no `[B, k, n]` temporary.
fn weight_grad(a: &Tensor, g: &Tensor) -> Result<Tensor> {
    let k = a.shape()[a.rank() - 1];
    let n = g.shape()[g.rank() - 1];
    let a2 = a.reshape(&[a.elem_count() / k.max(1), k])?;
    let g2 = g.reshape(&[g.elem_count() / n.max(1), n])?;
    a2.t()?.matmul(&g2)
}

impl Var {
    /// Matrix product with numpy-broadcast batch dims; a 1-D lhs is a row vector and a 1-D
    /// rhs a column vector (that dim is dropped from the result, like torch).
    pub fn matmul(&self, rhs: &Var) -> Result<Var> {
        if self.rank() == 1 || rhs.rank() == 1 {
            let a = if self.rank() == 1 {
                self.unsqueeze(0)?
            } else {
                self.clone()
            };
            let b = if rhs.rank() == 1 {
                rhs.unsqueeze(1)?
            } else {
                rhs.clone()
            };
            let mut out = a.matmul(&b)?;
            if rhs.rank() == 1 {
                out = out.squeeze(out.rank() - 1)?;
            }
            if self.rank() == 1 {
                let d = if rhs.rank() == 1 {
                    out.rank() - 1
                } else {
                    out.rank() - 2
                };
                out = out.squeeze(d)?;
            }
            return Ok(out);
        }
        let out = self.tensor().matmul(rhs.tensor())?;
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        let saved = vec![self.tensor().clone(), rhs.tensor().clone()];
        Ok(record1("matmul", &[self, rhs], out, saved, move |ctx| {
            let (g, a, b) = (ctx.grad(0), ctx.saved(0), ctx.saved(1));
            Ok(vec![
                // da: [.., m, k] = g [.., m, n] · bᵀ [.., n, k]
                grad_if(ctx.needs(0), || reduce_to(&g.matmul(&b.t()?)?, &sa))?,
                // db: [.., k, n] = aᵀ [.., k, m] · g [.., m, n]
                grad_if(ctx.needs(1), || {
                    if sb.len() == 2 && sa.len() > 2 {
                        weight_grad(a, g)
                    } else {
                        reduce_to(&a.t()?.matmul(g)?, &sb)
                    }
                })?,
            ])
        }))
    }
}
