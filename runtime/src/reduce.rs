//! Reductions: sum/mean over several dims, max/min/argmax over one dim, `sum_to` (the
//! reverse of broadcasting, for autograd).
//!
//! Every reduction is phrased as `x: [outer, r, inner] -> [outer, inner]` on row-major
//! data; sums accumulate in f64 (deterministic order), so an f32 loss sums exactly enough.

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::check_dim;
use crate::storage::PAR_CHUNK;
use crate::tensor::Tensor;
use lmf_kernels::cuda::reduce::Reduce;
use lmf_kernels::Real;
use rayon::prelude::*;

/// Sum of a contiguous run in f64; long runs in parallel partial sums (fixed order).
fn sum_run<C: Element>(x: &[C]) -> f64 {
    let seq = |c: &[C]| c.iter().map(|&v| v.to_f64()).sum::<f64>();
    if x.len() >= 2 * PAR_CHUNK {
        let parts: Vec<f64> = x.par_chunks(PAR_CHUNK).map(seq).collect();
        parts.iter().sum()
    } else {
        seq(x)
    }
}

/// `out[o, i] = Σ_j x[o, j, i]` in f64, `x: [outer, r, inner]`.
fn sum_3d<C: Element>(x: &[C], outer: usize, r: usize, inner: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; outer * inner];
    if out.is_empty() {
        return out;
    }
    if inner == 1 {
        let f = |(o, y): (usize, &mut f64)| *y = sum_run(&x[o * r..(o + 1) * r]);
        if x.len() >= 2 * PAR_CHUNK && outer > 1 {
            out.par_iter_mut().enumerate().for_each(f);
        } else {
            out.iter_mut().enumerate().for_each(f);
        }
        return out;
    }
    // Columns [c0, c0 + acc.len()) of outer row o: add the r rows one after another.
    let cols = |o: usize, c0: usize, acc: &mut [f64]| {
        for j in 0..r {
            let row = &x[(o * r + j) * inner + c0..][..acc.len()];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v.to_f64();
            }
        }
    };
    if x.len() < 2 * PAR_CHUNK {
        out.chunks_mut(inner)
            .enumerate()
            .for_each(|(o, acc)| cols(o, 0, acc));
    } else {
        // Split the columns so each task still reads about PAR_CHUNK elements.
        let w = (PAR_CHUNK / r.max(1)).max(16).min(inner);
        out.par_chunks_mut(inner).enumerate().for_each(|(o, row)| {
            row.par_chunks_mut(w)
                .enumerate()
                .for_each(|(c, acc)| cols(o, c * w, acc));
        });
    }
    out
}

/// `out[o, i] = fold_j x[o, j, i]` with `pick(acc, v) -> new acc`, `x: [outer, r >= 1, inner]`.
fn fold_3d<C: Element>(
    x: &[C],
    outer: usize,
    r: usize,
    inner: usize,
    pick: impl Fn(C, C) -> C + Sync,
) -> Vec<C> {
    let mut out: Vec<C> = Vec::with_capacity(outer * inner);
    if outer * inner == 0 {
        return out;
    }
    for o in 0..outer {
        out.extend_from_slice(&x[o * r * inner..][..inner]);
    }
    let body = |(o, acc): (usize, &mut [C])| {
        for j in 1..r {
            let row = &x[(o * r + j) * inner..][..inner];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a = pick(*a, v);
            }
        }
    };
    if x.len() >= 2 * PAR_CHUNK && outer > 1 {
        out.par_chunks_mut(inner).enumerate().for_each(body);
    } else {
        out.chunks_mut(inner).enumerate().for_each(body);
    }
    out
}

/// Index of the first maximum along `r` of `x: [outer, r >= 1, inner]` (NaN counts as max).
fn argmax_3d<C: Element + Real>(x: &[C], outer: usize, r: usize, inner: usize) -> Vec<i64> {
    let mut out = vec![0i64; outer * inner];
    if out.is_empty() {
        return out;
    }
    let body = |(o, idx): (usize, &mut [i64])| {
        let mut best: Vec<C> = x[o * r * inner..][..inner].to_vec();
        for j in 1..r {
            let row = &x[(o * r + j) * inner..][..inner];
            for ((b, i), &v) in best.iter_mut().zip(idx.iter_mut()).zip(row) {
                if v > *b || (v.is_nan() && !b.is_nan()) {
                    *b = v;
                    *i = j as i64;
                }
            }
        }
    };
    if x.len() >= 2 * PAR_CHUNK && outer > 1 {
        out.par_chunks_mut(inner).enumerate().for_each(body);
    } else {
        out.chunks_mut(inner).enumerate().for_each(body);
    }
    out
}

/// Output shape of reducing `dims` of `shape`.
fn reduced_shape(shape: &[usize], dims: &[usize], keepdim: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(shape.len());
    for (d, &n) in shape.iter().enumerate() {
        if !dims.contains(&d) {
            out.push(n);
        } else if keepdim {
            out.push(1);
        }
    }
    out
}

impl Tensor {
    /// Checks `dims` (sorted, deduplicated copy) for `op`.
    fn reduce_dims(&self, op: &'static str, dims: &[usize]) -> Result<Vec<usize>> {
        let mut ds = dims.to_vec();
        ds.sort_unstable();
        ds.dedup();
        if ds.len() != dims.len() {
            return Err(Error::shape(
                op,
                format!("repeated dim in {dims:?} for shape {:?}", self.shape()),
            ));
        }
        for &d in &ds {
            check_dim(op, d, self.shape())?;
        }
        Ok(ds)
    }

    /// Sums over sorted `dims` in f64: `(values, outer·inner)` ordered like the kept dims.
    fn sum_f64(&self, dims: &[usize]) -> Result<Vec<f64>> {
        let shape = self.shape();
        let contiguous_block = dims.windows(2).all(|w| w[1] == w[0] + 1);
        with_compute!(self.dtype, C => {
            if contiguous_block && !dims.is_empty() {
                let (a, b) = (dims[0], dims[dims.len() - 1] + 1);
                let outer = shape[..a].iter().product();
                let r = shape[a..b].iter().product();
                let inner = shape[b..].iter().product();
                Ok(sum_3d(&self.values::<C>()?, outer, r, inner))
            } else {
                // Move the kept dims first, the reduced ones last, then sum contiguous runs.
                let kept: Vec<usize> = (0..self.rank()).filter(|d| !dims.contains(d)).collect();
                let perm: Vec<usize> = kept.iter().chain(dims).copied().collect();
                let x = self.permute(&perm)?;
                let r: usize = dims.iter().map(|&d| shape[d]).product();
                let outer = kept.iter().map(|&d| shape[d]).product();
                Ok(sum_3d(&x.values::<C>()?, outer, r, 1))
            }
        })
    }

    /// Sums over sorted `dims` on CUDA (f64 accumulation), times `scale`, into `shape`.
    fn cuda_sum(&self, dims: &[usize], scale: f64, shape: &[usize]) -> Result<Tensor> {
        let s = self.shape();
        let contiguous_block = dims.windows(2).all(|w| w[1] == w[0] + 1);
        if contiguous_block && !dims.is_empty() {
            let (a, b) = (dims[0], dims[dims.len() - 1] + 1);
            let split = (
                s[..a].iter().product(),
                s[a..b].iter().product(),
                s[b..].iter().product(),
            );
            self.cuda_reduce(split, Reduce::Sum, scale, shape)
        } else {
            // Kept dims first, reduced ones last (the permuted copy is made by cuda_reduce).
            let kept: Vec<usize> = (0..self.rank()).filter(|d| !dims.contains(d)).collect();
            let perm: Vec<usize> = kept.iter().chain(dims).copied().collect();
            let r: usize = dims.iter().map(|&d| s[d]).product();
            let outer = kept.iter().map(|&d| s[d]).product();
            self.permute(&perm)?
                .cuda_reduce((outer, r, 1), Reduce::Sum, scale, shape)
        }
    }

    /// Sum over `dims` (empty `dims`: a copy, nothing reduced).
    pub fn sum(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let ds = self.reduce_dims("sum", dims)?;
        if self.device.is_cuda() {
            return self.cuda_sum(&ds, 1.0, &reduced_shape(self.shape(), &ds, keepdim));
        }
        let out = self.sum_f64(&ds)?;
        Ok(Tensor::from_compute(
            out,
            &reduced_shape(self.shape(), &ds, keepdim),
            self.dtype,
        ))
    }

    /// Sum of every element, shape `[]`.
    pub fn sum_all(&self) -> Result<Tensor> {
        let dims: Vec<usize> = (0..self.rank()).collect();
        self.sum(&dims, false)
    }

    /// Mean over `dims` (integers truncate the mean).
    pub fn mean(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let ds = self.reduce_dims("mean", dims)?;
        let count: usize = ds.iter().map(|&d| self.shape()[d]).product();
        if self.device.is_cuda() {
            let shape = reduced_shape(self.shape(), &ds, keepdim);
            return self.cuda_sum(&ds, 1.0 / count as f64, &shape);
        }
        let mut out = self.sum_f64(&ds)?;
        let inv = 1.0 / count as f64;
        out.iter_mut().for_each(|v| *v *= inv);
        Ok(Tensor::from_compute(
            out,
            &reduced_shape(self.shape(), &ds, keepdim),
            self.dtype,
        ))
    }

    /// `[outer, r, inner]` around `dim`, rejecting an empty reduced dim for `op`.
    fn split_at_dim(&self, op: &'static str, dim: usize) -> Result<(usize, usize, usize)> {
        check_dim(op, dim, self.shape())?;
        let s = self.shape();
        if s[dim] == 0 {
            return Err(Error::shape(
                op,
                format!("cannot reduce empty dim {dim} of {s:?}"),
            ));
        }
        Ok((
            s[..dim].iter().product(),
            s[dim],
            s[dim + 1..].iter().product(),
        ))
    }

    fn fold_dim(
        &self,
        op: &'static str,
        dim: usize,
        keepdim: bool,
        want_max: bool,
    ) -> Result<Tensor> {
        let (outer, r, inner) = self.split_at_dim(op, dim)?;
        let shape = reduced_shape(self.shape(), &[dim], keepdim);
        if self.device.is_cuda() {
            let op = if want_max { Reduce::Max } else { Reduce::Min };
            return self.cuda_reduce((outer, r, inner), op, 1.0, &shape);
        }
        with_compute!(self.dtype, C => {
            let x = self.values::<C>()?;
            // NaN propagates, like torch.
            let out = if want_max {
                fold_3d(&x, outer, r, inner, |a: C, v: C| if v > a || v.is_nan() { v } else { a })
            } else {
                fold_3d(&x, outer, r, inner, |a: C, v: C| if v < a || v.is_nan() { v } else { a })
            };
            Ok(Tensor::from_compute(out, &shape, self.dtype))
        })
    }

    /// Max over `dim` (NaN propagates).
    pub fn max(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.fold_dim("max", dim, keepdim, true)
    }

    /// Min over `dim` (NaN propagates).
    pub fn min(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.fold_dim("min", dim, keepdim, false)
    }

    /// Index (I64) of the first max over `dim`.
    pub fn argmax(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        let (outer, r, inner) = self.split_at_dim("argmax", dim)?;
        let shape = reduced_shape(self.shape(), &[dim], keepdim);
        if self.device.is_cuda() {
            return self.cuda_argmax((outer, r, inner), &shape);
        }
        let out = with_compute!(self.dtype, C => argmax_3d(&self.values::<C>()?, outer, r, inner));
        Ok(Tensor::from_compute(out, &shape, DType::I64))
    }

    /// Sums a broadcast result back to `shape` (which must broadcast to `self.shape()`):
    /// the gradient of a broadcasting op with respect to its smaller operand.
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        let me = self.shape();
        let bad = || {
            Error::shape(
                "sum_to",
                format!("cannot sum {me:?} to {shape:?}: {shape:?} does not broadcast to it"),
            )
        };
        if shape.len() > me.len() {
            return Err(bad());
        }
        let lead = me.len() - shape.len();
        let mut dims: Vec<usize> = (0..lead).collect();
        for (i, &n) in shape.iter().enumerate() {
            let m = me[lead + i];
            if n == 1 && m != 1 {
                dims.push(lead + i);
            } else if n != m {
                return Err(bad());
            }
        }
        if dims.is_empty() {
            return self.reshape(shape);
        }
        self.sum(&dims, true)?.reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Error, Tensor};

    fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::arange(0, n as i64, DType::F32, Device::Cpu)
            .unwrap()
            .reshape(shape)
            .unwrap()
    }

    /// Reference: sum of a [2, 3, 4] iota over `dims` by brute force.
    fn brute(dims: &[usize]) -> Vec<f32> {
        let shape = [2usize, 3, 4];
        let out_shape: Vec<usize> = (0..3)
            .map(|d| if dims.contains(&d) { 1 } else { shape[d] })
            .collect();
        let mut out = vec![0.0; out_shape.iter().product()];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    let idx = [i, j, k];
                    let o: Vec<usize> = (0..3)
                        .map(|d| if dims.contains(&d) { 0 } else { idx[d] })
                        .collect();
                    out[(o[0] * out_shape[1] + o[1]) * out_shape[2] + o[2]] +=
                        (i * 12 + j * 4 + k) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn sums_over_every_dim_subset() {
        let x = iota(&[2, 3, 4]);
        for dims in [
            vec![0],
            vec![1],
            vec![2],
            vec![0, 1],
            vec![1, 2],
            vec![0, 2],
            vec![0, 1, 2],
        ] {
            let s = x.sum(&dims, true).unwrap();
            assert_eq!(s.to_vec::<f32>().unwrap(), brute(&dims), "dims {dims:?}");
            let s2 = x.sum(&dims, false).unwrap();
            assert_eq!(s2.rank(), 3 - dims.len());
            // strided input (a transposed view) gives the transposed answer
            let xt = x.permute(&[2, 0, 1]).unwrap();
            let mapped: Vec<usize> = dims.iter().map(|&d| [1, 2, 0][d]).collect();
            let st = xt.sum(&mapped, true).unwrap().permute(&[1, 2, 0]).unwrap();
            assert_eq!(
                st.to_vec::<f32>().unwrap(),
                brute(&dims),
                "strided dims {dims:?}"
            );
        }
        assert_eq!(x.sum_all().unwrap().shape(), &[] as &[usize]);
        assert_eq!(x.sum_all().unwrap().to_scalar::<f32>().unwrap(), 276.0);
        assert_eq!(
            x.sum(&[], false).unwrap().to_vec::<f32>().unwrap(),
            x.to_vec::<f32>().unwrap()
        );
        let m = x.mean(&[0, 2], false).unwrap();
        assert_eq!(m.to_vec::<f32>().unwrap(), vec![7.5, 11.5, 15.5]);
        let e = x.sum(&[3], false).unwrap_err().to_string();
        assert!(e.contains("sum") && e.contains("[2, 3, 4]"), "{e}");
        assert!(x.sum(&[1, 1], false).is_err());
    }

    #[test]
    fn big_sums_are_accurate_and_deterministic() {
        // 1e6 copies of 0.1f32: f64 accumulation keeps the f32 result exact to rounding.
        let x = Tensor::full(0.1, &[1000, 1000], DType::F32, Device::Cpu).unwrap();
        let want = (0.1f32 as f64 * 1e6) as f32;
        assert_eq!(x.sum_all().unwrap().to_scalar::<f32>().unwrap(), want);
        let cols = x.sum(&[0], false).unwrap().to_vec::<f32>().unwrap();
        assert!(cols.iter().all(|&c| c == (0.1f32 as f64 * 1000.0) as f32));
        let rows = x.sum(&[1], false).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(rows, cols);
        let bf = x
            .to_dtype(DType::BF16)
            .unwrap()
            .sum(&[0, 1], false)
            .unwrap();
        assert_eq!(bf.dtype(), DType::BF16);
    }

    #[test]
    fn max_min_argmax() {
        let x = Tensor::from_vec(vec![1f32, 5., 3., 7., 2., 7.], &[2, 3], Device::Cpu).unwrap();
        assert_eq!(
            x.max(1, false).unwrap().to_vec::<f32>().unwrap(),
            vec![5., 7.]
        );
        assert_eq!(x.max(0, true).unwrap().shape(), &[1, 3]);
        assert_eq!(
            x.max(0, false).unwrap().to_vec::<f32>().unwrap(),
            vec![7., 5., 7.]
        );
        assert_eq!(
            x.min(1, false).unwrap().to_vec::<f32>().unwrap(),
            vec![1., 2.]
        );
        let a = x.argmax(1, false).unwrap();
        assert_eq!(
            (a.dtype(), a.to_vec::<i64>().unwrap()),
            (DType::I64, vec![1, 0])
        ); // first of ties
        assert_eq!(
            x.argmax(0, true).unwrap().to_vec::<i64>().unwrap(),
            vec![1, 0, 1]
        );
        let n = Tensor::from_vec(vec![1f32, f32::NAN, 0.0], &[3], Device::Cpu).unwrap();
        assert!(n
            .max(0, false)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .is_nan());
        assert_eq!(n.argmax(0, false).unwrap().to_scalar::<i64>().unwrap(), 1);
        let empty = Tensor::zeros(&[2, 0], DType::F32, Device::Cpu).unwrap();
        assert!(matches!(
            empty.max(1, false).unwrap_err(),
            Error::Shape { op: "max", .. }
        ));
    }

    #[test]
    fn edge_shapes_big_and_empty() {
        // tall-thin and short-wide, large enough for the parallel paths
        let x = Tensor::ones(&[100_000, 2], DType::F32, Device::Cpu).unwrap();
        assert_eq!(
            x.sum(&[0], false).unwrap().to_vec::<f32>().unwrap(),
            vec![1e5, 1e5]
        );
        assert_eq!(
            x.max(0, false).unwrap().to_vec::<f32>().unwrap(),
            vec![1.0, 1.0]
        );
        let y = x.t().unwrap().contiguous().unwrap(); // [2, 100000]
        assert_eq!(
            y.sum(&[1], false).unwrap().to_vec::<f32>().unwrap(),
            vec![1e5, 1e5]
        );
        let a = Tensor::arange(0, 70_000, DType::F32, Device::Cpu)
            .unwrap()
            .reshape(&[2, 35_000])
            .unwrap();
        assert_eq!(
            a.argmax(1, false).unwrap().to_vec::<i64>().unwrap(),
            vec![34_999, 34_999]
        );
        // zero-size dims: sums over them are 0, reductions over other dims are empty
        let z = Tensor::zeros(&[3, 0], DType::F32, Device::Cpu).unwrap();
        assert_eq!(
            z.sum(&[1], false).unwrap().to_vec::<f32>().unwrap(),
            vec![0.0; 3]
        );
        assert_eq!(z.sum(&[0], false).unwrap().shape(), &[0]);
        assert_eq!(z.max(0, false).unwrap().shape(), &[0]);
        assert_eq!(z.argmax(0, true).unwrap().shape(), &[1, 0]);
        assert_eq!(z.softmax(0).unwrap().shape(), &[3, 0]);
    }

    #[test]
    fn sum_to_reverses_broadcasting() {
        let g = Tensor::ones(&[2, 3, 4], DType::F32, Device::Cpu).unwrap();
        let b = g.sum_to(&[4]).unwrap();
        assert_eq!(
            (b.shape(), b.to_vec::<f32>().unwrap()),
            (&[4][..], vec![6.0; 4])
        );
        let c = g.sum_to(&[3, 1]).unwrap();
        assert_eq!(
            (c.shape(), c.to_vec::<f32>().unwrap()),
            (&[3, 1][..], vec![8.0; 3])
        );
        assert_eq!(
            g.sum_to(&[2, 3, 4]).unwrap().to_vec::<f32>().unwrap(),
            vec![1.0; 24]
        );
        assert_eq!(g.sum_to(&[]).unwrap().to_scalar::<f32>().unwrap(), 24.0);
        let e = g.sum_to(&[5]).unwrap_err().to_string();
        assert!(
            e.contains("sum_to") && e.contains("[2, 3, 4]") && e.contains("[5]"),
            "{e}"
        );
    }
}
