//! Embedding on CUDA (`lmf_kernels::cuda::embedding`): ids are checked on the host by the
//! caller (they arrive from the data pipeline there), then uploaded as int64.

use super::{dense, gpu_of, uninit, view, with_gpu_float, wrap, zeros};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cuda::embedding::{embedding_backward, embedding_forward};
use lmf_runtime::{Device, Error, Result, Tensor};

const OP: &str = "embedding";

/// `embedding` for a CUDA table; `id_vec` are the checked ids, `shape` the output shape.
pub fn embedding(table: &Var, id_vec: Vec<i64>, shape: &[usize]) -> Result<Var> {
    let tt = dense(table.tensor())?;
    let (vocab, dim) = (tt.shape()[0], tt.shape()[1]);
    let n = id_vec.len();
    let ids = Tensor::from_vec(id_vec, &[n], tt.device())?;
    let gpu = gpu_of(&tt)?;
    let out = with_gpu_float!(tt.dtype(), OP, T => {
        let mut out = uninit::<T>(&gpu, n * dim)?;
        embedding_forward(&gpu, &view::<i64>(&ids)?, &view::<T>(&tt)?, vocab, dim, &mut out.slice_mut(..n * dim))
            .map_err(Error::from)?;
        wrap(&gpu, out, shape)?
    });
    debug_assert!(matches!(tt.device(), Device::Cuda(_)));
    Ok(record1(OP, &[table], out, vec![ids], move |ctx| {
        let (g, ids) = (dense(ctx.grad(0))?, ctx.saved(0));
        Ok(vec![grad_if(ctx.needs(0), || {
            let gpu = gpu_of(&g)?;
            with_gpu_float!(g.dtype(), OP, T => {
                let mut dtable = zeros::<T>(&gpu, vocab * dim)?; // scatter-added into
                embedding_backward(&gpu, &view::<i64>(ids)?, &view::<T>(&g)?, vocab, dim, &mut dtable.slice_mut(..vocab * dim))
                    .map_err(Error::from)?;
                wrap(&gpu, dtable, &[vocab, dim])
            })
        })?])
    }))
}
