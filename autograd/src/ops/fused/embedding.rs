//! Fused embedding node (`lmf_kernels::cpu::embedding`): rows of a `[vocab, dim]` table by
//! token id; the backward is the kernel's deterministic scatter-add. Saves only the ids.

use super::{from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::embedding::{embedding_backward, embedding_forward};
use lmf_runtime::{DType, Error, Result, Tensor};

const OP: &str = "embedding";

/// `table[ids]`: `table: [vocab, dim]`, `ids` (I64/I32, any shape) -> `[ids.shape.., dim]`.
pub fn embedding(table: &Var, ids: &Tensor) -> Result<Var> {
    let tt = table.tensor();
    if tt.rank() != 2 || tt.shape()[1] == 0 || !tt.dtype().is_float() {
        return Err(Error::shape(
            OP,
            format!(
                "table {:?} {} must be a float [vocab, dim > 0]",
                tt.shape(),
                tt.dtype()
            ),
        ));
    }
    let (vocab, dim) = (tt.shape()[0], tt.shape()[1]);
    let id_vec: Vec<i64> = ids.to_vec::<i64>()?;
    if let Some((t, id)) = id_vec
        .iter()
        .enumerate()
        .find(|(_, &i)| i < 0 || i as u64 >= vocab as u64)
    {
        return Err(Error::index(
            OP,
            format!("token id {id} at position {t} is outside [0, {vocab})"),
        ));
    }
    let mut shape = ids.shape().to_vec();
    shape.push(dim);
    let (dtype, device) = (tt.dtype(), tt.device());
    if device.is_cuda() {
        return super::cuda::embedding::embedding(table, id_vec, &shape);
    }
    let out = with_real!(dtype, T => {
        let mut out = vec![T::default(); id_vec.len() * dim];
        embedding_forward(&id_vec, &tt.as_slice::<T>()?, vocab, dim, &mut out);
        from_kernel(out, &shape, dtype, device)?
    });
    let saved = vec![Tensor::from_vec(id_vec, &[ids.elem_count()], device)?];
    Ok(record1(OP, &[table], out, saved, move |ctx| {
        let (g, ids) = (ctx.grad(0), ctx.saved(0));
        Ok(vec![grad_if(ctx.needs(0), || {
            debug_assert_eq!(ids.dtype(), DType::I64);
            with_real!(g.dtype(), T => {
                let mut dtable = vec![T::default(); vocab * dim]; // scatter-added into
                embedding_backward(&ids.as_slice::<i64>()?, &g.as_slice::<T>()?, vocab, dim, &mut dtable);
                from_kernel(dtable, &[vocab, dim], g.dtype(), g.device())
            })
        })?])
    }))
}
