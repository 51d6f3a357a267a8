//! Gradient checks of any function of `Var`s against f64 central finite differences: the
//! scalar checked is `loss = Σ f(inputs) ⊙ w` with fixed random weights `w`, so every
//! output element contributes with a distinct weight.

use crate::grad_mode::no_grad;
use crate::var::Var;
use lmf_kernels::testing::{assert_close, Lcg};
use lmf_runtime::{DType, Error, Result, Tensor};

/// Settings of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// Finite-difference step.
    pub h: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// At most this many elements per input are perturbed (evenly spaced), to bound time.
    pub max_elems: usize,
    /// Seed of the output weights `w`.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            h: 1e-6,
            atol: 1e-6,
            rtol: 1e-5,
            max_elems: usize::MAX,
            seed: 7,
        }
    }
}

/// `Σ out ⊙ w` in f64.
fn weighted_sum(out: &Tensor, w: &[f64]) -> Result<f64> {
    Ok(out.to_vec::<f64>()?.iter().zip(w).map(|(a, b)| a * b).sum())
}

/// Indices `0..n` thinned to at most `max` evenly spaced ones.
fn sample(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    (0..max).map(|i| i * n / max).collect()
}

impl GradCheck {
    /// Checks d loss / d input for every input (all F64, made params), panicking with the
    /// input and element index on a mismatch; op errors are returned.
    pub fn run(
        &self,
        what: &str,
        inputs: &[Tensor],
        f: impl Fn(&[Var]) -> Result<Var>,
    ) -> Result<()> {
        if let Some(t) = inputs.iter().find(|t| t.dtype() != DType::F64) {
            return Err(Error::dtype(
                "gradcheck",
                format!("inputs must be f64, got {}", t.dtype()),
            ));
        }
        let vars: Vec<Var> = inputs.iter().map(|t| Var::param(t.clone())).collect();
        let out = f(&vars)?;
        let mut rng = Lcg::new(self.seed);
        let w: Vec<f64> = (0..out.elem_count()).map(|_| rng.sym(1.0)).collect();
        let w_t = Tensor::from_slice(&w, out.shape(), out.device())?.to_dtype(out.dtype())?;
        let grads = out.backward_with(&w_t)?;
        let loss_at = |xs: &[Tensor]| -> Result<f64> {
            let consts: Vec<Var> = xs.iter().map(|t| Var::constant(t.clone())).collect();
            weighted_sum(no_grad(|| f(&consts))?.tensor(), &w)
        };
        for (i, x) in inputs.iter().enumerate() {
            let analytic = match grads.get(&vars[i]) {
                Some(g) => g.to_vec::<f64>()?,
                None => vec![0.0; x.elem_count()],
            };
            let base = x.to_vec::<f64>()?;
            let idx = sample(base.len(), self.max_elems);
            let mut xs = inputs.to_vec();
            let mut numeric = Vec::with_capacity(idx.len());
            for &j in &idx {
                let mut at = |v: f64| -> Result<f64> {
                    let mut data = base.clone();
                    data[j] = v;
                    xs[i] = Tensor::from_vec(data, x.shape(), x.device())?;
                    loss_at(&xs)
                };
                let up = at(base[j] + self.h)?;
                let down = at(base[j] - self.h)?;
                numeric.push((up - down) / (2.0 * self.h));
            }
            let picked: Vec<f64> = idx.iter().map(|&j| analytic[j]).collect();
            let note = if idx.len() < base.len() {
                format!(
                    " (sampled: entry k is element k·{}/{})",
                    base.len(),
                    idx.len()
                )
            } else {
                String::new()
            };
            assert_close(
                &format!("{what}: d/d input {i}{note}"),
                &picked,
                &numeric,
                self.atol,
                self.rtol,
            );
        }
        Ok(())
    }
}

/// [`GradCheck::run`] with the default settings (h 1e-6, atol 1e-6, rtol 1e-5, all elements).
pub fn check_grads(what: &str, inputs: &[Tensor], f: impl Fn(&[Var]) -> Result<Var>) -> Result<()> {
    GradCheck::default().run(what, inputs, f)
}
