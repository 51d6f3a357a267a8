//! Softmax and log-softmax along one dim, numerically stable (the row max is subtracted).

use crate::error::Result;
use crate::layout::check_dim;
use crate::storage::PAR_CHUNK;
use crate::tensor::Tensor;
use lmf_kernels::Real;
use rayon::prelude::*;

/// In place over one row: `x <- exp(x - max) / Σ exp(x - max)` (or its log when `log`).
fn softmax_row<C: Real>(row: &mut [C], log: bool) {
    let max = row
        .iter()
        .fold(C::neg_infinity(), |m, &v| if v > m { v } else { m });
    if log {
        // (x - max) - ln Σ: adding max back first would lose bits for large inputs.
        let ln_sum = row.iter().map(|&v| (v - max).exp()).sum::<C>().ln();
        row.iter_mut().for_each(|v| *v = (*v - max) - ln_sum);
    } else {
        let mut sum = C::zero();
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = sum.recip();
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

impl Tensor {
    fn softmax_impl(&self, op: &'static str, dim: usize, log: bool) -> Result<Tensor> {
        check_dim(op, dim, self.shape())?;
        let last = self.rank() - 1;
        // Rows must be contiguous: move `dim` last (a view), compute, move it back.
        let x = if dim == last {
            self.clone()
        } else {
            self.transpose(dim, last)?
        };
        let n = x.shape()[last];
        let out = if self.device.is_cuda() {
            x.cuda_softmax_last(log)?
        } else {
            self.softmax_cpu_rows(&x, n, log)?
        };
        if dim == last {
            Ok(out)
        } else {
            out.transpose(dim, last)?.contiguous()
        }
    }

    /// The CPU rows of `softmax_impl`: `x` has the softmax dim last, `n` long.
    fn softmax_cpu_rows(&self, x: &Tensor, n: usize, log: bool) -> Result<Tensor> {
        Ok(with_compute!(self.dtype, C => {
            let mut v: Vec<C> = x.values::<C>()?.into_owned();
            if n > 0 {
                if v.len() >= 2 * PAR_CHUNK {
                    let rows = PAR_CHUNK.div_ceil(n);
                    v.par_chunks_mut(rows * n).for_each(|c| c.chunks_mut(n).for_each(|r| softmax_row(r, log)));
                } else {
                    v.chunks_mut(n).for_each(|r| softmax_row(r, log));
                }
            }
            Tensor::from_compute(v, x.shape(), self.dtype)
        }))
    }

    /// `exp(x) / Σ exp(x)` along `dim`.
    pub fn softmax(&self, dim: usize) -> Result<Tensor> {
        self.softmax_impl("softmax", dim, false)
    }

    /// `x - log Σ exp(x)` along `dim`.
    pub fn log_softmax(&self, dim: usize) -> Result<Tensor> {
        self.softmax_impl("log_softmax", dim, true)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Tensor};

    #[test]
    fn rows_sum_to_one_and_match_reference() {
        let v: Vec<f32> = (0..2 * 5 * 3)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let x = Tensor::from_vec(v.clone(), &[2, 5, 3], Device::Cpu).unwrap();
        for dim in 0..3 {
            let s = x.softmax(dim).unwrap();
            assert_eq!(s.shape(), &[2, 5, 3]);
            let sums = s.sum(&[dim], false).unwrap().to_vec::<f32>().unwrap();
            assert!(
                sums.iter().all(|&t| (t - 1.0).abs() < 1e-6),
                "dim {dim}: {sums:?}"
            );
            let ls = x
                .log_softmax(dim)
                .unwrap()
                .exp()
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            let sv = s.to_vec::<f32>().unwrap();
            assert!(ls.iter().zip(&sv).all(|(a, b)| (a - b).abs() < 1e-6));
        }
        // reference along the last dim
        let s = x.softmax(2).unwrap().to_vec::<f32>().unwrap();
        for r in 0..10 {
            let row = &v[r * 3..r * 3 + 3];
            let z: f32 = row.iter().map(|a| a.exp()).sum();
            for k in 0..3 {
                assert!((s[r * 3 + k] - row[k].exp() / z).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn stable_for_large_inputs() {
        let x = Tensor::from_vec(
            vec![1000f32, 1001., 1002., -1e30, 0., 1e30],
            &[2, 3],
            Device::Cpu,
        )
        .unwrap();
        let s = x.softmax(1).unwrap().to_vec::<f32>().unwrap();
        assert!(s.iter().all(|v| v.is_finite()));
        let e = [0.090_030_57f32, 0.244_728_48, 0.665_240_94];
        assert!(
            s[..3].iter().zip(&e).all(|(a, b)| (a - b).abs() < 1e-6),
            "{s:?}"
        );
        assert_eq!(&s[3..], &[0.0, 0.0, 1.0]);
        let l = x.log_softmax(1).unwrap().to_vec::<f32>().unwrap();
        assert!(
            (l[2] - e[2].ln()).abs() < 1e-5 && l[5] == 0.0 && l.iter().all(|v| v.is_finite()),
            "{l:?}"
        );
        // bf16 in, bf16 out
        let b = x.to_dtype(DType::BF16).unwrap().softmax(1).unwrap();
        assert_eq!(b.dtype(), DType::BF16);
        assert!(x.softmax(2).unwrap_err().to_string().contains("softmax"));
    }

    #[test]
    fn large_rows_in_parallel() {
        let v: Vec<f32> = (0..300 * 1001).map(|i| (i % 13) as f32 * 0.1).collect();
        let x = Tensor::from_vec(v, &[300, 1001], Device::Cpu).unwrap();
        let sums = x
            .softmax(1)
            .unwrap()
            .sum(&[1], false)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert!(sums.iter().all(|&t| (t - 1.0).abs() < 1e-5));
    }
}
