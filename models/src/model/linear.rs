//! A dense layer with HF's weight layout: `weight: [out, in]`, optional `bias: [out]`,
//! `y = x · Wᵀ + b` (the transposed view costs no copy: the gemm takes strides).

use lmf_autograd::{Result, Var};

/// `nn.Linear` as a pair of leaf variables.
#[derive(Clone)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Var,
    /// `[out]`.
    pub bias: Option<Var>,
}

impl Linear {
    /// `x: [n, in]` → `[n, out]`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> (usize, usize) {
        let s = self.weight.shape();
        (s[0], s[1])
    }
}
