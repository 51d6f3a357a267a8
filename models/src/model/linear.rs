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

    /// Appends this layer's parameters as `{prefix}.weight` / `{prefix}.bias` (adapters add
    /// theirs here too, under PEFT's names).
    pub fn push_params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Var)>) {
        out.push((format!("{prefix}.weight"), &self.weight));
        if let Some(b) = &self.bias {
            out.push((format!("{prefix}.bias"), b));
        }
    }

    /// [`Linear::push_params`] with mutable access (optimizer steps, freezing).
    pub fn push_params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Var)>) {
        out.push((format!("{prefix}.weight"), &mut self.weight));
        if let Some(b) = &mut self.bias {
            out.push((format!("{prefix}.bias"), b));
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> (usize, usize) {
        let s = self.weight.shape();
        (s[0], s[1])
    }
}
