//! Dtype conversion: the grad is converted back to the input's dtype.

use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_runtime::{DType, Error, Result};

impl Var {
    /// A copy in float dtype `dtype` (`self`'s data when it already matches).
    pub fn to_dtype(&self, dtype: DType) -> Result<Var> {
        if self.requires_grad() && !dtype.is_float() {
            return Err(Error::dtype(
                "to_dtype",
                format!(
                    "cannot differentiate a cast to {}: detach first",
                    dtype.name()
                ),
            ));
        }
        let out = self.tensor().to_dtype(dtype)?;
        let from = self.dtype();
        Ok(record1("to_dtype", &[self], out, vec![], move |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || ctx.grad(0).to_dtype(from))?])
        }))
    }
}
