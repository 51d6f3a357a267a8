//! What the generic tensor kernels share (`kernels/cuda/lmf_strided.cuh`): the strided-view
//! descriptor passed to kernels by value, dim coalescing, the element types the runtime
//! stores (`GpuElem`: f32 f64 bf16 f16 i32 i64 u8) and the grid-stride launch shape.

use super::error::{ensure, CudaResult};
use cudarc::driver::{DeviceRepr, LaunchConfig, ValidAsZeroBits};
use half::{bf16, f16};

/// The largest rank a kernel takes (after coalescing).
pub const MAX_RANK: usize = 8;

/// A strided view as kernels see it: shape and strides (in elements) of up to
/// [`MAX_RANK`] dims; the view starts at the pointer handed to the kernel. Mirrors
/// `struct Strided` in `lmf_strided.cuh` (repr(C), 136 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strided {
    /// Dims (unused entries 1).
    pub shape: [i64; MAX_RANK],
    /// Strides in elements (0 on broadcast dims).
    pub strides: [i64; MAX_RANK],
    /// Number of dims in use (0 for a scalar).
    pub rank: i32,
    pad_: i32,
}

// SAFETY: a plain repr(C) struct of integers, laid out like the CUDA struct.
unsafe impl DeviceRepr for Strided {}

impl Strided {
    /// The descriptor of (shape, strides); errs past [`MAX_RANK`] dims.
    pub fn new(shape: &[usize], strides: &[usize]) -> CudaResult<Strided> {
        ensure(
            shape.len() <= MAX_RANK && shape.len() == strides.len(),
            "strided",
            || {
                format!("rank {} view (shape {shape:?}, strides {strides:?}): CUDA kernels take rank <= {MAX_RANK}", shape.len())
            },
        )?;
        let mut s = Strided {
            shape: [1; MAX_RANK],
            strides: [0; MAX_RANK],
            rank: shape.len() as i32,
            pad_: 0,
        };
        for (d, (&n, &st)) in shape.iter().zip(strides).enumerate() {
            s.shape[d] = n as i64;
            s.strides[d] = st as i64;
        }
        Ok(s)
    }

    /// A contiguous row-major view of `shape`.
    pub fn contiguous(shape: &[usize]) -> CudaResult<Strided> {
        let mut strides = vec![0; shape.len()];
        let mut acc = 1;
        for d in (0..shape.len()).rev() {
            strides[d] = acc;
            acc *= shape[d];
        }
        Strided::new(shape, &strides)
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape[..self.rank as usize]
            .iter()
            .map(|&n| n as usize)
            .product()
    }

    /// One past the largest element index the view reaches (0 when empty).
    pub fn span(&self) -> usize {
        if self.elem_count() == 0 {
            return 0;
        }
        let r = self.rank as usize;
        1 + self.shape[..r]
            .iter()
            .zip(&self.strides[..r])
            .map(|(&n, &s)| (n as usize - 1) * s as usize)
            .sum::<usize>()
    }
}

/// Drops size-1 dims and merges neighbouring dims that every operand steps through as one,
/// so contiguous operands become rank 1 (the kernels' fast path) and ranks above
/// [`MAX_RANK`] often fit. Returns the new shape and each operand's new strides.
pub fn coalesce(shape: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let k = strides.len();
    let mut out_shape: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        if let Some(last) = out_shape.last_mut() {
            let merge = (0..k).all(|o| {
                let prev = *out_strides[o].last().unwrap_or(&0);
                prev == strides[o][d] * n
            });
            if merge {
                *last *= n;
                for (o, st) in out_strides.iter_mut().enumerate() {
                    if let Some(s) = st.last_mut() {
                        *s = strides[o][d];
                    }
                }
                continue;
            }
        }
        out_shape.push(n);
        for (o, st) in out_strides.iter_mut().enumerate() {
            st.push(strides[o][d]);
        }
    }
    if shape.contains(&0) {
        return (vec![0], vec![vec![1]; k]);
    }
    if out_shape.is_empty() {
        // A single element.
        return (vec![1], vec![vec![1]; k]);
    }
    (out_shape, out_strides)
}

/// A runtime element type with kernel instantiations (`name_f32`, .., `name_u8`).
pub trait GpuElem: DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + 'static {
    /// The entry-point suffix.
    const SUFFIX: &'static str;
}

macro_rules! gpu_elem {
    ($t:ty, $s:literal) => {
        impl GpuElem for $t {
            const SUFFIX: &'static str = $s;
        }
    };
}
gpu_elem!(f32, "f32");
gpu_elem!(f64, "f64");
gpu_elem!(bf16, "bf16");
gpu_elem!(f16, "f16");
gpu_elem!(i32, "i32");
gpu_elem!(i64, "i64");
gpu_elem!(u8, "u8");

/// `base_suffix`, the entry point of kernel `base` for element type `T`.
pub fn entry_for<T: GpuElem>(base: &str) -> String {
    format!("{base}_{}", T::SUFFIX)
}

/// Threads per block of the grid-stride kernels.
pub const BLOCK: u32 = 256;

/// A grid-stride launch over `n` items: `ceil(n / 256)` blocks, at most 2^20.
pub fn grid_stride(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_contiguous_and_keeps_broadcast() {
        // contiguous [2, 3, 4] -> [24]
        let (s, st) = coalesce(&[2, 3, 4], &[&[12, 4, 1]]);
        assert_eq!((s, st), (vec![24], vec![vec![1]]));
        // bias add [5, 7] + [7] broadcast: stays 2-D
        let (s, st) = coalesce(&[5, 7], &[&[7, 1], &[0, 1]]);
        assert_eq!((s, st), (vec![5, 7], vec![vec![7, 1], vec![0, 1]]));
        // size-1 dims vanish; a scalar is one element
        let (s, st) = coalesce(&[1, 1], &[&[5, 9]]);
        assert_eq!((s, st), (vec![1], vec![vec![1]]));
        let (s, _) = coalesce(&[3, 0], &[&[1, 1]]);
        assert_eq!(s, vec![0]);
        // transposed stays as is
        let (s, st) = coalesce(&[3, 2], &[&[1, 3]]);
        assert_eq!((s, st), (vec![3, 2], vec![vec![1, 3]]));
        let d = Strided::new(&[3, 2], &[1, 3]).unwrap();
        assert_eq!((d.elem_count(), d.span()), (6, 6));
        assert!(Strided::new(&[1; 9], &[1; 9]).is_err());
        assert_eq!(std::mem::size_of::<Strided>(), 136);
    }
}
