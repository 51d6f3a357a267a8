//! Batched matrix multiply: `[.., m, k] x [.., k, n] -> [.., m, n]`, batch dims broadcast.
//!
//! Every product goes through `lmf_kernels::cpu::gemm` with the operands' own strides, so
//! F32/F64 inputs (transposed, narrowed or broadcast views included) are never copied;
//! BF16/F16 are converted to f32 first and integers to f64. The result keeps the dtype.

use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::layout::{broadcast_shape, Layout, StridedIndex};
use crate::tensor::Tensor;
use lmf_kernels::cpu::gemm::{gemm, MatMut, MatRef};
use lmf_kernels::Real;
use rayon::prelude::*;

/// Below this many multiply-adds per matrix, batches run in parallel instead of inside gemm.
const SMALL_GEMM: usize = 64 * 64 * 64;

/// Storage offset of every batch entry of a layout whose last two dims are the matrix.
fn batch_offsets(l: &Layout) -> Vec<usize> {
    let nb = l.rank() - 2;
    StridedIndex::new(&l.shape()[..nb], &l.strides()[..nb], l.offset(), 0).collect()
}

/// The `(rows, cols)` matrix of `l` at storage offset `off` as a gemm view.
fn mat<'a, C>(data: &'a [C], l: &Layout, off: usize) -> MatRef<'a, C> {
    let r = l.rank();
    MatRef {
        data: &data[off..],
        rows: l.shape()[r - 2],
        cols: l.shape()[r - 1],
        rs: l.strides()[r - 2],
        cs: l.strides()[r - 1],
    }
}

impl Tensor {
    /// `[.., m, k] x [.., k, n]` with numpy-broadcast batch dims; a 1-D lhs is a row vector
    /// and a 1-D rhs a column vector (that dim is dropped from the result, like torch).
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        const OP: &str = "matmul";
        self.check_same(OP, rhs)?;
        let bad = |why: String| {
            Error::shape(
                OP,
                format!(
                    "cannot multiply {:?} by {:?}: {why}",
                    self.shape(),
                    rhs.shape()
                ),
            )
        };
        if self.rank() == 0 || rhs.rank() == 0 {
            return Err(bad("scalars have no matrix dims".into()));
        }
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
        let (ra, rb) = (a.rank(), b.rank());
        let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
        let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
        if k != k2 {
            return Err(bad(format!("inner dims {k} and {k2} differ")));
        }
        let batch = broadcast_shape(OP, &a.shape()[..ra - 2], &b.shape()[..rb - 2])
            .map_err(|_| bad("batch dims do not broadcast".into()))?;
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        let out = if self.device.is_cuda() {
            Tensor::cuda_matmul(&a, &b, &batch, (m, k, n))?
        } else {
            with_compute!(self.dtype, C => {
                let v = batched_gemm::<C>(&a, &b, &batch, m, k, n)?;
                Tensor::from_compute(v, &out_shape, self.dtype)
            })
        };
        // Drop the dims that 1-D operands stood for.
        let r = out.rank();
        let out = if rhs.rank() == 1 {
            out.squeeze(r - 1)?
        } else {
            out
        };
        if self.rank() == 1 {
            out.squeeze(out.rank() - if rhs.rank() == 1 { 1 } else { 2 })
        } else {
            Ok(out)
        }
    }
}

/// `out[b] = a[b] · b[b]` for every batch index, in compute type `C`.
fn batched_gemm<C: Element + Real>(
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    m: usize,
    k: usize,
    n: usize,
) -> Result<Vec<C>> {
    let mut sa = batch.to_vec();
    sa.extend([m, k]);
    let mut sb = batch.to_vec();
    sb.extend([k, n]);
    let (da, la) = a.operand::<C>(&sa)?;
    let (db, lb) = b.operand::<C>(&sb)?;
    let (oa, ob) = (batch_offsets(&la), batch_offsets(&lb));
    let mut out = vec![C::zero(); oa.len() * m * n];
    if m * n == 0 {
        return Ok(out);
    }
    let one = |(i, dst): (usize, &mut [C])| {
        gemm(
            MatMut::new(dst, m, n),
            mat(&da, &la, oa[i]),
            mat(&db, &lb, ob[i]),
            false,
            C::one(),
        );
    };
    if oa.len() > 1 && m * n * k < SMALL_GEMM {
        out.par_chunks_mut(m * n).enumerate().for_each(one);
    } else {
        out.chunks_mut(m * n).enumerate().for_each(one);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Error, Tensor};
    use lmf_kernels::testing::{rand_vec, Lcg};

    /// Reference `[m, k] x [k, n]` by triple loop (tests only).
    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    fn rand_t(rng: &mut Lcg, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(rand_vec::<f64>(rng, n, 1.0), shape, Device::Cpu).unwrap()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "[{i}] {x} vs {y}");
        }
    }

    #[test]
    fn plain_and_batched_match_reference() {
        let mut rng = Lcg::new(1);
        for &(m, k, n) in &[(1, 1, 1), (37, 48, 5), (3, 130, 67), (70, 70, 70)] {
            let a = rand_t(&mut rng, &[m, k]);
            let b = rand_t(&mut rng, &[k, n]);
            let c = a.matmul(&b).unwrap();
            assert_eq!(c.shape(), &[m, n]);
            let want = naive(&a.to_vec().unwrap(), &b.to_vec().unwrap(), m, k, n);
            close(&c.to_vec::<f64>().unwrap(), &want, 1e-12);
        }
        // batch 3, each its own product
        let a = rand_t(&mut rng, &[3, 4, 5]);
        let b = rand_t(&mut rng, &[3, 5, 2]);
        let c = a.matmul(&b).unwrap().to_vec::<f64>().unwrap();
        for i in 0..3 {
            let ai = a.narrow(0, i, 1).unwrap().to_vec::<f64>().unwrap();
            let bi = b.narrow(0, i, 1).unwrap().to_vec::<f64>().unwrap();
            close(&c[i * 8..(i + 1) * 8], &naive(&ai, &bi, 4, 5, 2), 1e-12);
        }
    }

    #[test]
    fn batch_dims_broadcast() {
        let mut rng = Lcg::new(2);
        let a = rand_t(&mut rng, &[2, 1, 4, 5]);
        let b = rand_t(&mut rng, &[3, 5, 6]);
        let c = a.matmul(&b).unwrap();
        assert_eq!(c.shape(), &[2, 3, 4, 6]);
        let cv = c.to_vec::<f64>().unwrap();
        for i in 0..2 {
            for j in 0..3 {
                let ai = a.narrow(0, i, 1).unwrap().to_vec::<f64>().unwrap();
                let bj = b.narrow(0, j, 1).unwrap().to_vec::<f64>().unwrap();
                close(
                    &cv[(i * 3 + j) * 24..][..24],
                    &naive(&ai, &bj, 4, 5, 6),
                    1e-12,
                );
            }
        }
        // a weight [k, n] shared by every batch entry
        let w = rand_t(&mut rng, &[5, 6]);
        let x = rand_t(&mut rng, &[2, 3, 4, 5]);
        let y = x.matmul(&w).unwrap();
        let flat = x.reshape(&[24, 5]).unwrap().matmul(&w).unwrap();
        assert_eq!(y.to_vec::<f64>().unwrap(), flat.to_vec::<f64>().unwrap());
    }

    #[test]
    fn strided_views_without_copies() {
        let mut rng = Lcg::new(3);
        // w stored [n, k] = [9, 13]; use a narrowed, transposed view as the rhs [k, n'].
        let w = rand_t(&mut rng, &[9, 13]).to_dtype(DType::F32).unwrap();
        let view = w.narrow(0, 2, 5).unwrap().t().unwrap(); // [13, 5], strides [1, 13]
        assert!(!view.is_contiguous() && view.same_storage(&w));
        let x = rand_t(&mut rng, &[7, 13]).to_dtype(DType::F32).unwrap();
        let got = x.matmul(&view).unwrap();
        let want = x.matmul(&view.contiguous().unwrap()).unwrap();
        assert_eq!(got.shape(), &[7, 5]);
        let (g, w) = (got.to_vec::<f64>().unwrap(), want.to_vec::<f64>().unwrap());
        close(&g, &w, 1e-6);
        // transposed lhs too, and a batched permuted view: [b, m, k] seen through permute
        let x3 = rand_t(&mut rng, &[13, 3, 4]); // [k, b, m]
        let lhs = x3.permute(&[1, 2, 0]).unwrap(); // [3, 4, 13]
        let r = rand_t(&mut rng, &[13, 2]);
        let got = lhs.matmul(&r).unwrap().to_vec::<f64>().unwrap();
        let want = lhs
            .contiguous()
            .unwrap()
            .matmul(&r)
            .unwrap()
            .to_vec::<f64>()
            .unwrap();
        close(&got, &want, 1e-12);
        // stride-0 rows: a broadcast row vector as the lhs matrix
        let row = rand_t(&mut rng, &[1, 13]).broadcast_as(&[4, 13]).unwrap();
        let got = row.matmul(&r).unwrap().to_vec::<f64>().unwrap();
        let want = row
            .contiguous()
            .unwrap()
            .matmul(&r)
            .unwrap()
            .to_vec::<f64>()
            .unwrap();
        close(&got, &want, 1e-12);
    }

    #[test]
    fn one_d_operands_and_dtypes() {
        let a = Tensor::from_vec(vec![1f32, 2., 3.], &[3], Device::Cpu).unwrap();
        let m = Tensor::from_vec(vec![1f32, 0., 0., 1., 1., 1.], &[3, 2], Device::Cpu).unwrap();
        let v = a.matmul(&m).unwrap();
        assert_eq!(
            (v.shape(), v.to_vec::<f32>().unwrap()),
            (&[2][..], vec![4., 5.])
        );
        let mt = m.t().unwrap(); // [2, 3]
        assert_eq!(
            mt.matmul(&a).unwrap().to_vec::<f32>().unwrap(),
            vec![4., 5.]
        );
        assert_eq!(a.matmul(&a).unwrap().shape(), &[] as &[usize]);
        assert_eq!(a.matmul(&a).unwrap().to_scalar::<f32>().unwrap(), 14.0);
        // bf16 in, bf16 out, f32 accumulation inside
        let b = m.to_dtype(DType::BF16).unwrap();
        let c = a
            .to_dtype(DType::BF16)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .matmul(&b)
            .unwrap();
        assert_eq!(
            (c.dtype(), c.to_vec::<f32>().unwrap()),
            (DType::BF16, vec![4., 5.])
        );
        let i = Tensor::from_vec(vec![1i64, 2, 3, 4], &[2, 2], Device::Cpu).unwrap();
        assert_eq!(
            i.matmul(&i).unwrap().to_vec::<i64>().unwrap(),
            vec![7, 10, 15, 22]
        );
        let z = Tensor::zeros(&[2, 0], DType::F32, Device::Cpu).unwrap();
        let zz = z
            .matmul(&Tensor::zeros(&[0, 3], DType::F32, Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(zz.to_vec::<f32>().unwrap(), vec![0.0; 6]);
    }

    #[test]
    fn shape_errors_name_op_and_shapes() {
        let a = Tensor::zeros(&[2, 3], DType::F32, Device::Cpu).unwrap();
        let b = Tensor::zeros(&[4, 5], DType::F32, Device::Cpu).unwrap();
        let e = a.matmul(&b).unwrap_err();
        assert!(matches!(e, Error::Shape { op: "matmul", .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("matmul") && msg.contains("[2, 3]") && msg.contains("[4, 5]"),
            "{msg}"
        );
        let c = Tensor::zeros(&[2, 2, 3], DType::F32, Device::Cpu).unwrap();
        let d = Tensor::zeros(&[3, 3, 1], DType::F32, Device::Cpu).unwrap();
        assert!(c.matmul(&d).unwrap_err().to_string().contains("batch"));
        let f = Tensor::zeros(&[3, 1], DType::F64, Device::Cpu).unwrap();
        assert!(matches!(
            a.matmul(&f).unwrap_err(),
            Error::DType { op: "matmul", .. }
        ));
    }
}
