//! Indexing: `index_select` (embedding lookup), `index_add` (its scatter-add backward),
//! `cat` and `stack`.
//!
//! Both index ops see the tensor as `[outer, size, inner]` around `dim`; the ids may have
//! any shape, which replaces `dim` in the result (`[V, D].index_select([B, T], 0)` is
//! `[B, T, D]`), and `index_add` takes a `src` of exactly that shape.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::check_dim;
use crate::storage::PAR_CHUNK;
use crate::tensor::Tensor;
use rayon::prelude::*;

impl Tensor {
    /// The ids of an I64/I32 tensor, checked to lie in `0..size`.
    fn ids_in_range(&self, op: &'static str, ids: &Tensor, dim: usize) -> Result<Vec<usize>> {
        let raw: Vec<i64> = match ids.dtype {
            DType::I64 | DType::I32 => ids.to_vec::<i64>()?,
            d => return Err(Error::dtype(op, format!("ids must be i64 or i32, got {d}"))),
        };
        let size = self.shape()[dim];
        raw.iter()
            .map(|&id| {
                usize::try_from(id)
                    .ok()
                    .filter(|&i| i < size)
                    .ok_or_else(|| {
                        Error::index(
                            op,
                            format!(
                                "id {id} out of range 0..{size} for dim {dim} of {:?}",
                                self.shape()
                            ),
                        )
                    })
            })
            .collect()
    }

    /// `self.shape` with `dim` replaced by the ids' shape.
    fn indexed_shape(&self, dim: usize, ids: &Tensor) -> Vec<usize> {
        let s = self.shape();
        s[..dim]
            .iter()
            .chain(ids.shape())
            .chain(&s[dim + 1..])
            .copied()
            .collect()
    }

    /// `[outer, inner]` around `dim`.
    fn outer_inner(&self, dim: usize) -> (usize, usize) {
        let s = self.shape();
        (s[..dim].iter().product(), s[dim + 1..].iter().product())
    }

    /// Rows `ids` along `dim` (any ids shape); `table.index_select(ids, 0)` is an embedding.
    pub fn index_select(&self, ids: &Tensor, dim: usize) -> Result<Tensor> {
        const OP: &str = "index_select";
        check_dim(OP, dim, self.shape())?;
        let idx = self.ids_in_range(OP, ids, dim)?;
        let shape = self.indexed_shape(dim, ids);
        let (outer, inner) = self.outer_inner(dim);
        let size = self.shape()[dim];
        if outer * idx.len() * inner == 0 {
            return Tensor::zeros(&shape, self.dtype, self.device);
        }
        if self.device.is_cuda() {
            return self.cuda_index_select(&idx, &shape, (outer, size, inner));
        }
        with_dtype!(self.dtype, T => {
            let x = self.values::<T>()?;
            let mut out: Vec<T> = Vec::with_capacity(outer * idx.len() * inner);
            for o in 0..outer {
                for &i in &idx {
                    out.extend_from_slice(&x[(o * size + i) * inner..][..inner]);
                }
            }
            Ok(Tensor::from_compute(out, &shape, self.dtype))
        })
    }

    /// `self` plus `src` scatter-added along `dim` at `ids` (repeated ids accumulate);
    /// `src` has `self.shape` with `dim` replaced by the ids' shape.
    pub fn index_add(&self, dim: usize, ids: &Tensor, src: &Tensor) -> Result<Tensor> {
        const OP: &str = "index_add";
        check_dim(OP, dim, self.shape())?;
        self.check_same(OP, src)?;
        let idx = self.ids_in_range(OP, ids, dim)?;
        let want = self.indexed_shape(dim, ids);
        if src.shape() != want.as_slice() {
            return Err(Error::shape(
                OP,
                format!(
                    "src {:?} must be {want:?} for self {:?}, ids {:?}, dim {dim}",
                    src.shape(),
                    self.shape(),
                    ids.shape()
                ),
            ));
        }
        let (outer, inner) = self.outer_inner(dim);
        let (size, n) = (self.shape()[dim], idx.len());
        if self.device.is_cuda() {
            return self.cuda_index_add(&idx, src, (outer, size, inner));
        }
        with_compute!(self.dtype, C => {
            let mut out: Vec<C> = self.values::<C>()?.into_owned();
            let s = src.values::<C>()?;
            // One outer slab per task: ids may repeat, so rows within a slab stay serial.
            let slab = |(o, dst): (usize, &mut [C])| {
                for (j, &i) in idx.iter().enumerate() {
                    let from = &s[(o * n + j) * inner..][..inner];
                    for (d, &v) in dst[i * inner..][..inner].iter_mut().zip(from) {
                        *d += v;
                    }
                }
            };
            if size * inner > 0 {
                if outer > 1 && s.len() >= 2 * PAR_CHUNK {
                    out.par_chunks_mut(size * inner).enumerate().for_each(slab);
                } else {
                    out.chunks_mut(size * inner).enumerate().for_each(slab);
                }
            }
            Ok(Tensor::from_compute(out, self.shape(), self.dtype))
        })
    }

    /// Concatenates along `dim`; all tensors share dtype, device, rank and the other dims.
    pub fn cat(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        const OP: &str = "cat";
        let first = *tensors
            .first()
            .ok_or_else(|| Error::invalid(OP, "no tensors given"))?;
        check_dim(OP, dim, first.shape())?;
        let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.shape()).collect();
        for t in &tensors[1..] {
            first.check_same(OP, t)?;
            let fits = t.rank() == first.rank()
                && (0..t.rank()).all(|d| d == dim || t.shape()[d] == first.shape()[d]);
            if !fits {
                return Err(Error::shape(
                    OP,
                    format!("shapes {shapes:?} differ outside dim {dim}"),
                ));
            }
        }
        let mut shape = first.shape().to_vec();
        shape[dim] = tensors.iter().map(|t| t.shape()[dim]).sum();
        if first.device.is_cuda() {
            return Tensor::cuda_cat(tensors, dim, &shape);
        }
        let (outer, inner) = first.outer_inner(dim);
        with_dtype!(first.dtype, T => {
            let parts = tensors.iter().map(|t| t.values::<T>()).collect::<Result<Vec<_>>>()?;
            let mut out: Vec<T> = Vec::with_capacity(shape.iter().product());
            for o in 0..outer {
                for (p, t) in parts.iter().zip(tensors) {
                    let w = t.shape()[dim] * inner;
                    out.extend_from_slice(&p[o * w..(o + 1) * w]);
                }
            }
            Ok(Tensor::from_compute(out, &shape, first.dtype))
        })
    }

    /// Stacks equal-shaped tensors along a new dim `dim`.
    pub fn stack(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = *tensors
            .first()
            .ok_or_else(|| Error::invalid("stack", "no tensors given"))?;
        for t in tensors {
            if t.shape() != first.shape() {
                let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.shape()).collect();
                return Err(Error::shape("stack", format!("shapes {shapes:?} differ")));
            }
        }
        let ups = tensors
            .iter()
            .map(|t| t.unsqueeze(dim))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&ups.iter().collect::<Vec<_>>(), dim)
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

    fn ids(v: &[i64], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, Device::Cpu).unwrap()
    }

    #[test]
    fn embedding_lookup_and_other_dims() {
        let table = iota(&[5, 3]);
        let e = table.index_select(&ids(&[4, 0, 4, 1], &[2, 2]), 0).unwrap();
        assert_eq!(e.shape(), &[2, 2, 3]);
        assert_eq!(
            e.to_vec::<f32>().unwrap(),
            vec![12., 13., 14., 0., 1., 2., 12., 13., 14., 3., 4., 5.]
        );
        let c = table.index_select(&ids(&[2, 0], &[2]), 1).unwrap();
        assert_eq!(c.shape(), &[5, 2]);
        assert_eq!(c.to_vec::<f32>().unwrap()[..4], [2., 0., 5., 3.]);
        let i32ids = Tensor::from_vec(vec![1i32], &[1], Device::Cpu).unwrap();
        assert_eq!(
            table
                .index_select(&i32ids, 0)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            vec![3., 4., 5.]
        );
        // strided table (transposed) and bf16 table
        let tt = table.t().unwrap(); // [3, 5]
        assert_eq!(
            tt.index_select(&ids(&[1], &[1]), 0)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            vec![1., 4., 7., 10., 13.]
        );
        let b = table
            .to_dtype(DType::BF16)
            .unwrap()
            .index_select(&ids(&[2], &[1]), 0)
            .unwrap();
        assert_eq!(
            (b.dtype(), b.to_vec::<f32>().unwrap()),
            (DType::BF16, vec![6., 7., 8.])
        );
    }

    #[test]
    fn index_errors() {
        let table = iota(&[5, 3]);
        let e = table.index_select(&ids(&[5], &[1]), 0).unwrap_err();
        assert!(matches!(
            e,
            Error::Index {
                op: "index_select",
                ..
            }
        ));
        assert!(
            e.to_string().contains("id 5") && e.to_string().contains("[5, 3]"),
            "{e}"
        );
        assert!(table.index_select(&ids(&[-1], &[1]), 0).is_err());
        let f = Tensor::zeros(&[1], DType::F32, Device::Cpu).unwrap();
        assert!(matches!(
            table.index_select(&f, 0).unwrap_err(),
            Error::DType { .. }
        ));
        let bad_src = iota(&[3, 3]);
        let e = table
            .index_add(0, &ids(&[0, 1], &[2]), &bad_src)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("index_add") && e.contains("[3, 3]") && e.contains("[2, 3]"),
            "{e}"
        );
    }

    #[test]
    fn index_add_accumulates_repeated_ids() {
        let base = Tensor::ones(&[4, 2], DType::F32, Device::Cpu).unwrap();
        let src = iota(&[2, 2, 2]); // ids [2, 2] -> src [2, 2, 2]
        let out = base
            .index_add(0, &ids(&[3, 0, 3, 3], &[2, 2]), &src)
            .unwrap();
        // row 3 gets src rows 0, 2, 3: [0+4+6, 1+5+7]; row 0 gets src row 1: [2, 3]
        assert_eq!(
            out.to_vec::<f32>().unwrap(),
            vec![3., 4., 1., 1., 1., 1., 11., 14.]
        );
        // along dim 1 of a [2, 3] with a repeated id
        let base = Tensor::zeros(&[2, 3], DType::F64, Device::Cpu).unwrap();
        let src = Tensor::from_vec(vec![1f64, 2., 3., 4.], &[2, 2], Device::Cpu).unwrap();
        let out = base.index_add(1, &ids(&[2, 2], &[2]), &src).unwrap();
        assert_eq!(out.to_vec::<f64>().unwrap(), vec![0., 0., 3., 0., 0., 7.]);
        // index_add is the adjoint of index_select: <select(x), g> == <x, add(0, g)>
        let x = iota(&[5, 3]);
        let id = ids(&[1, 4, 1], &[3]);
        let g = iota(&[3, 3]).affine(0.5, -1.0).unwrap();
        let lhs = x
            .index_select(&id, 0)
            .unwrap()
            .mul(&g)
            .unwrap()
            .sum_all()
            .unwrap();
        let rhs = x
            .mul(&x.zeros_like().unwrap().index_add(0, &id, &g).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(
            lhs.to_scalar::<f32>().unwrap(),
            rhs.to_scalar::<f32>().unwrap()
        );
    }

    #[test]
    fn cat_along_each_dim_and_stack() {
        let a = iota(&[2, 3, 4]);
        for dim in 0..3 {
            let mut bshape = vec![2, 3, 4];
            bshape[dim] = 1;
            let b = Tensor::full(-1.0, &bshape, DType::F32, Device::Cpu).unwrap();
            let c = Tensor::cat(&[&a, &b], dim).unwrap();
            let mut want = vec![2, 3, 4];
            want[dim] += 1;
            assert_eq!(c.shape(), want.as_slice());
            assert_eq!(
                c.narrow(dim, 0, a.shape()[dim])
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap(),
                a.to_vec::<f32>().unwrap()
            );
            assert!(c
                .narrow(dim, a.shape()[dim], 1)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .all(|&v| v == -1.0));
        }
        // strided input
        let t = a.transpose(0, 2).unwrap(); // [4, 3, 2]
        let c = Tensor::cat(&[&t, &t], 0).unwrap();
        assert_eq!(
            c.narrow(0, 4, 4).unwrap().to_vec::<f32>().unwrap(),
            t.to_vec::<f32>().unwrap()
        );
        let s = Tensor::stack(&[&a, &a, &a], 1).unwrap();
        assert_eq!(s.shape(), &[2, 3, 3, 4]);
        assert_eq!(
            s.narrow(1, 2, 1)
                .unwrap()
                .squeeze(1)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            a.to_vec::<f32>().unwrap()
        );
        let e = Tensor::cat(&[&a, &iota(&[2, 2, 2])], 0).unwrap_err();
        assert!(matches!(e, Error::Shape { op: "cat", .. }));
        assert!(e.to_string().contains("[2, 3, 4]") && e.to_string().contains("[2, 2, 2]"));
        assert!(Tensor::cat(&[], 0).is_err());
        assert!(matches!(
            Tensor::cat(&[&a, &a.to_dtype(DType::F64).unwrap()], 0).unwrap_err(),
            Error::DType { .. }
        ));
    }
}
