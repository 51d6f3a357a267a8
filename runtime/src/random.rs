//! Random tensors from the counter-based Philox generator (`lmf_kernels::cpu::philox`).
//!
//! Element `e` (row-major) of a tensor made with `(seed, offset)` is Philox element
//! `offset + e` of stream `seed`, so the same `(seed, offset)` gives the same numbers on
//! every device and thread count, and a tensor at offset `o` is the tail of one at offset 0.

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::storage::{CpuStorage, PAR_CHUNK};
use crate::tensor::Tensor;
use lmf_kernels::cpu::philox;
use lmf_kernels::cuda::random::Draw;
use rayon::prelude::*;

/// Fills `n` f32 values with `f(seed, element)`, in parallel chunks for large tensors.
fn fill(n: usize, offset: u64, f: impl Fn(u64) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0f32; n];
    let chunk = |(c, part): (usize, &mut [f32])| {
        let base = offset + (c * PAR_CHUNK) as u64;
        for (i, v) in part.iter_mut().enumerate() {
            *v = f(base + i as u64);
        }
    };
    if n >= 2 * PAR_CHUNK {
        out.par_chunks_mut(PAR_CHUNK).enumerate().for_each(chunk);
    } else {
        out.chunks_mut(PAR_CHUNK).enumerate().for_each(chunk);
    }
    out
}

fn float_only(op: &'static str, dtype: DType) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(Error::dtype(
            op,
            format!("needs a float dtype, got {dtype}"),
        ))
    }
}

fn finish(values: Vec<f32>, shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_cpu_storage(CpuStorage::from_vec_as(values, dtype), shape)
}

impl Tensor {
    /// Uniform in (0, 1] (f32 precision, then rounded to `dtype`).
    pub fn rand(
        seed: u64,
        offset: u64,
        shape: &[usize],
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        device.check_available()?;
        float_only("rand", dtype)?;
        if let Device::Cuda(ord) = device {
            return Tensor::cuda_random(seed, offset, shape, dtype, ord, Draw::Uniform);
        }
        let v = fill(shape.iter().product(), offset, |e| philox::uniform(seed, e));
        Ok(finish(v, shape, dtype))
    }

    /// Standard normal (Box–Muller in f32, then rounded to `dtype`).
    pub fn randn(
        seed: u64,
        offset: u64,
        shape: &[usize],
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        device.check_available()?;
        float_only("randn", dtype)?;
        if let Device::Cuda(ord) = device {
            return Tensor::cuda_random(seed, offset, shape, dtype, ord, Draw::Normal);
        }
        let v = fill(shape.iter().product(), offset, |e| philox::normal(seed, e));
        Ok(finish(v, shape, dtype))
    }

    /// Inverted-dropout mask: `1 / (1 - p)` where kept (probability `1 - p`), else 0.
    pub fn dropout_mask(
        seed: u64,
        offset: u64,
        p: f64,
        shape: &[usize],
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        device.check_available()?;
        float_only("dropout_mask", dtype)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout_mask",
                format!("p = {p} is outside [0, 1]"),
            ));
        }
        let keep = (1.0 / (1.0 - p)) as f32;
        let pf = p as f32;
        if let Device::Cuda(ord) = device {
            let draw = Draw::Dropout {
                p: pf,
                keep_value: keep,
            };
            return Tensor::cuda_random(seed, offset, shape, dtype, ord, draw);
        }
        let v = fill(shape.iter().product(), offset, |e| {
            if philox::keep(seed, e, pf) {
                keep
            } else {
                0.0
            }
        });
        Ok(finish(v, shape, dtype))
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Error, Tensor};

    #[test]
    fn same_seed_and_offset_same_numbers() {
        let a = Tensor::rand(7, 0, &[3, 5], DType::F32, Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let b = Tensor::rand(7, 0, &[15], DType::F32, Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(a, b);
        let c = Tensor::rand(8, 0, &[15], DType::F32, Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_ne!(a, c);
        assert!(a.iter().all(|&v| v > 0.0 && v <= 1.0));
        // philox element e is exactly what element e of the tensor holds
        assert_eq!(a[4], lmf_kernels::cpu::philox::uniform(7, 4));
    }

    #[test]
    fn offset_stream_is_the_tail() {
        // Large enough to cross parallel chunk boundaries.
        let n = 100_000;
        let full = Tensor::randn(3, 0, &[n], DType::F32, Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let o = 40_001;
        let tail = Tensor::randn(3, o as u64, &[n - o], DType::F32, Device::Cpu).unwrap();
        assert_eq!(tail.to_vec::<f32>().unwrap(), full[o..].to_vec());
        let mean = full.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = full.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.03,
            "mean {mean} var {var}"
        );
        let u = Tensor::rand(3, 5, &[4], DType::F32, Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let u0 = Tensor::rand(3, 0, &[9], DType::F32, Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(u, u0[5..].to_vec());
    }

    #[test]
    fn dtypes_and_dropout() {
        let f = Tensor::randn(1, 2, &[64], DType::F32, Device::Cpu).unwrap();
        let b = Tensor::randn(1, 2, &[64], DType::BF16, Device::Cpu).unwrap();
        assert_eq!(b.dtype(), DType::BF16);
        assert_eq!(
            b.to_vec::<f32>().unwrap(),
            f.to_dtype(DType::BF16).unwrap().to_vec::<f32>().unwrap()
        );
        let d = Tensor::randn(1, 2, &[64], DType::F64, Device::Cpu).unwrap();
        assert_eq!(d.to_vec::<f32>().unwrap(), f.to_vec::<f32>().unwrap());
        let n = 50_000;
        let m = Tensor::dropout_mask(9, 0, 0.25, &[n], DType::F32, Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert!(m.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
        let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
        assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
        let none = Tensor::dropout_mask(9, 0, 0.0, &[8], DType::F32, Device::Cpu).unwrap();
        assert_eq!(none.to_vec::<f32>().unwrap(), vec![1.0; 8]);
        let all = Tensor::dropout_mask(9, 0, 1.0, &[8], DType::F32, Device::Cpu).unwrap();
        assert_eq!(all.to_vec::<f32>().unwrap(), vec![0.0; 8]);
        let e = Tensor::dropout_mask(9, 0, 1.5, &[8], DType::F32, Device::Cpu).unwrap_err();
        assert!(matches!(
            e,
            Error::Invalid {
                op: "dropout_mask",
                ..
            }
        ));
        assert!(matches!(
            Tensor::rand(0, 0, &[2], DType::I64, Device::Cpu).unwrap_err(),
            Error::DType { op: "rand", .. }
        ));
        assert!(matches!(
            Tensor::randn(0, 0, &[2], DType::F32, Device::Cuda(1000)).unwrap_err(),
            Error::Cuda(_)
        ));
    }
}
