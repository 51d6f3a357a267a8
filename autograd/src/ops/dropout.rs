//! Dropout with the counter-based RNG: the mask comes from the autograd RNG cursor
//! (`rng::reserve`), so a checkpoint's recompute reproduces it exactly, and the backward
//! regenerates it rather than keeping it on the tape.

use crate::rng::reserve;
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_runtime::{Error, Result, Tensor};

impl Var {
    /// Zeroes each element with probability `p` and scales the rest by `1/(1-p)`
    /// (`p = 0`: the identity, no RNG used).
    pub fn dropout(&self, p: f64) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        if p == 0.0 {
            return Ok(self.clone());
        }
        let st = reserve(self.elem_count() as u64);
        // mask: [shape], 0 or 1/(1-p)
        let mask = Tensor::dropout_mask(
            st.seed,
            st.offset,
            p,
            self.shape(),
            self.dtype(),
            self.device(),
        )?;
        let out = self.tensor().mul(&mask)?;
        // The backward regenerates the mask from (seed, offset) instead of saving it.
        let shape = self.shape().to_vec();
        Ok(record1("dropout", &[self], out, vec![], move |ctx| {
            let g = ctx.grad(0);
            Ok(vec![grad_if(ctx.needs(0), || {
                g.mul(&Tensor::dropout_mask(
                    st.seed,
                    st.offset,
                    p,
                    &shape,
                    g.dtype(),
                    g.device(),
                )?)
            })?])
        }))
    }
}
