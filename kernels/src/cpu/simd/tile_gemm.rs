//! The small product of one attention tile, register-blocked, on the calling thread:
//! `dst = (accumulate ? dst : 0) + scale · a · b` with `a: [m, k]` at any strides, `b: [k, n]`
//! and `dst: [m, n]` with unit column stride. Sizes are those of a tile (m, k ≤ a few
//! hundred, n a head dimension or a key tile): `b` stays in L1/L2 and nothing is packed.
//!
//! The microkernel holds a block of `MR ≤ 6` rows × `16·NV ≤ 64` columns of `dst` in
//! `MR·NV ≤ 24` zmm accumulators; per step `p` of the reduction it loads the `NV` vectors of
//! row `p` of `b` and multiplies each by the broadcast `a(i, p)` of its `MR` rows (one FMA
//! per accumulator). The last vector of a column block is masked, so any `n` works. Each
//! element of `dst` is one chain of FMAs over `p` in order, then `·scale` and `+dst`: its
//! bits depend only on its own row of `a` and column of `b`.
//!
//! [`tile_gemm`] runs this kernel (or its AVX2 twin, 6 × 16 in 12 ymm accumulators) when `T`
//! is f32 at a vector [`super::level`] and the strides
//! allow; otherwise it hands the product to [`gemm_serial`].

use crate::cpu::gemm::{check_product, gemm_serial, MatMut, MatRef};
use crate::Real;

/// `dst = (accumulate ? dst : 0) + scale · a · b` on the calling thread (see the module doc).
pub fn tile_gemm<T: Real>(
    dst: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    scale: T,
) {
    #[cfg(target_arch = "x86_64")]
    if dst.cs == 1 && b.cs == 1 && super::fast_f32(a.data).is_some() {
        let (m, n, k) = (dst.rows, dst.cols, a.cols);
        check_product(&dst, &a, &b, "tile_gemm");
        if m == 0 || n == 0 {
            return;
        }
        let prod = Product {
            k,
            a: a.data.as_ptr() as *const f32,
            ars: a.rs,
            acs: a.cs,
            b: b.data.as_ptr() as *const f32,
            ldb: b.rs,
            c: dst.data.as_mut_ptr() as *mut f32,
            ldc: dst.rs,
            scale: super::to_f32(scale),
            acc: accumulate,
        };
        // SAFETY: T is f32 (`fast_f32` answered, which also means the CPU has the level's
        // features), and the checks above keep every addressed element inside its slice.
        unsafe {
            match super::level() {
                super::Level::Avx512 => avx512::tile(prod, m, n),
                _ => avx2::tile(prod, m, n),
            }
        }
        return;
    }
    gemm_serial(dst, a, b, accumulate, scale)
}

/// One product's operands as raw f32 pointers: `a(i, p)` at `a + i·ars + p·acs`, `b(p, j)` at
/// `b + p·ldb + j`, `c(i, j)` at `c + i·ldc + j`, for `i < m`, `p < k`, `j < n`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Product {
    k: usize,
    a: *const f32,
    ars: usize,
    acs: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    scale: f32,
    acc: bool,
}

#[cfg(target_arch = "x86_64")]
impl Product {
    /// The sub-product whose `c(0, 0)` is this one's `c(i0, j0)`.
    ///
    /// # Safety
    /// `(i0, j0)` lies inside the product.
    unsafe fn at(self, i0: usize, j0: usize) -> Product {
        // SAFETY: forwarded to the caller.
        unsafe {
            Product {
                a: self.a.add(i0 * self.ars),
                b: self.b.add(j0),
                c: self.c.add(i0 * self.ldc + j0),
                ..self
            }
        }
    }
}

/// Rows per microkernel block (both instruction sets).
#[cfg(target_arch = "x86_64")]
const MR: usize = 6;

/// Walks an `[m, n]` output in blocks of `MR` rows × `cols` columns, column block after
/// column block, the last row and column blocks clipped: `f(i0, rows, j0, width)`.
#[cfg(target_arch = "x86_64")]
fn for_blocks(m: usize, n: usize, cols: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    for j0 in (0..n).step_by(cols) {
        for i0 in (0..m).step_by(MR) {
            f(i0, MR.min(m - i0), j0, cols.min(n - j0));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::exp::avx512::tail_mask;
    use std::arch::x86_64::*;

    use super::{for_blocks, Product};

    /// zmm vectors (of 16 columns) per microkernel block.
    const NV: usize = 4;

    /// The whole `[m, n]` product, block by block: column blocks of 64, row blocks of 6.
    ///
    /// # Safety
    /// AVX-512 F; `p` addresses only elements inside its slices for `i < m`, `j < n`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile(p: Product, m: usize, n: usize) {
        for_blocks(m, n, 16 * NV, |i0, mr, j0, w| {
            let nv = w.div_ceil(16);
            let blk = Block {
                // SAFETY: (i0, j0) is inside the product.
                p: unsafe { p.at(i0, j0) },
                mask: tail_mask(w - 16 * (nv - 1)),
            };
            // SAFETY: AVX-512 F (the caller's); the block lies inside the product.
            unsafe { dispatch(mr, nv, &blk) }
        });
    }

    /// One microkernel block: its operands and the lanes of its last vector inside `dst`.
    struct Block {
        p: Product,
        mask: __mmask16,
    }

    /// The microkernel instance for `mr` rows and `nv` vectors.
    #[target_feature(enable = "avx512f")]
    unsafe fn dispatch(mr: usize, nv: usize, blk: &Block) {
        macro_rules! go {
            ($($r:literal),*) => {
                match (mr, nv) {
                    $(
                        ($r, 1) => micro::<$r, 1>(blk),
                        ($r, 2) => micro::<$r, 2>(blk),
                        ($r, 3) => micro::<$r, 3>(blk),
                        ($r, 4) => micro::<$r, 4>(blk),
                    )*
                    _ => unreachable!("tile_gemm block {mr}x{nv}"),
                }
            };
        }
        // SAFETY: forwarded from `tile`.
        unsafe { go!(1, 2, 3, 4, 5, 6) }
    }

    /// `c[R, 16·V] (+)= scale · a[R, k] · b[k, 16·V]`, the last vector masked.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn micro<const R: usize, const V: usize>(blk: &Block) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let lane_mask = |v: usize| -> __mmask16 {
            if v + 1 == V {
                blk.mask
            } else {
                0xFFFF
            }
        };
        for p in 0..blk.p.k {
            // SAFETY (all loads): inside the caller's bounds; masked lanes are not read.
            unsafe {
                let bp = blk.p.b.add(p * blk.p.ldb);
                let mut bv = [_mm512_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm512_maskz_loadu_ps(lane_mask(v), bp.add(16 * v));
                }
                let ap = blk.p.a.add(p * blk.p.acs);
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*ap.add(i * blk.p.ars));
                    for (x, y) in row.iter_mut().zip(&bv) {
                        *x = _mm512_fmadd_ps(ai, *y, *x);
                    }
                }
            }
        }
        let s = _mm512_set1_ps(blk.p.scale);
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: row i of the block, columns under the lane masks.
            unsafe {
                let ci = blk.p.c.add(i * blk.p.ldc);
                for (v, x) in row.iter().enumerate() {
                    let m = lane_mask(v);
                    let out = if blk.p.acc {
                        _mm512_fmadd_ps(*x, s, _mm512_maskz_loadu_ps(m, ci.add(16 * v)))
                    } else {
                        _mm512_mul_ps(*x, s)
                    };
                    _mm512_mask_storeu_ps(ci.add(16 * v), m, out);
                }
            }
        }
    }
}

/// The AVX2 + FMA twin of [`avx512`]: blocks of 6 rows × 16 columns (12 ymm accumulators),
/// tails through `vmaskmovps`.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::exp::avx2::tail_mask;
    use std::arch::x86_64::*;

    use super::{for_blocks, Product};

    const NV: usize = 2;

    /// See [`super::avx512::tile`].
    ///
    /// # Safety
    /// AVX2 and FMA; the bounds of [`super::avx512::tile`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile(p: Product, m: usize, n: usize) {
        for_blocks(m, n, 8 * NV, |i0, mr, j0, w| {
            let nv = w.div_ceil(8);
            let last = w - 8 * (nv - 1);
            let blk = Block {
                // SAFETY: (i0, j0) is inside the product.
                p: unsafe { p.at(i0, j0) },
                mask: tail_mask(last),
                short_last: last < 8,
            };
            // SAFETY: AVX2 and FMA (the caller's); the block lies inside the product.
            unsafe { dispatch(mr, nv, &blk) }
        });
    }

    /// One microkernel block: its operands, the lanes of its last vector inside `dst`, and
    /// whether that is fewer than 8.
    struct Block {
        p: Product,
        mask: __m256i,
        short_last: bool,
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dispatch(mr: usize, nv: usize, blk: &Block) {
        macro_rules! go {
            ($($r:literal),*) => {
                match (mr, nv) {
                    $(
                        ($r, 1) => micro::<$r, 1>(blk),
                        ($r, 2) => micro::<$r, 2>(blk),
                    )*
                    _ => unreachable!("tile_gemm block {mr}x{nv}"),
                }
            };
        }
        // SAFETY: forwarded from `tile`.
        unsafe { go!(1, 2, 3, 4, 5, 6) }
    }

    /// `c[R, 8·V] (+)= scale · a[R, k] · b[k, 8·V]`, the last vector masked.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn micro<const R: usize, const V: usize>(blk: &Block) {
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        // `vmaskmovps` only for a short last vector (it is slow on some CPUs)
        let short = |v: usize| v + 1 == V && blk.short_last;
        for p in 0..blk.p.k {
            // SAFETY (all loads): inside the caller's bounds; masked lanes are not read.
            unsafe {
                let bp = blk.p.b.add(p * blk.p.ldb);
                let mut bv = [_mm256_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = if short(v) {
                        _mm256_maskload_ps(bp.add(8 * v), blk.mask)
                    } else {
                        _mm256_loadu_ps(bp.add(8 * v))
                    };
                }
                let ap = blk.p.a.add(p * blk.p.acs);
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm256_set1_ps(*ap.add(i * blk.p.ars));
                    for (x, y) in row.iter_mut().zip(&bv) {
                        *x = _mm256_fmadd_ps(ai, *y, *x);
                    }
                }
            }
        }
        let s = _mm256_set1_ps(blk.p.scale);
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: row i of the block, columns under the lane masks.
            unsafe {
                let ci = blk.p.c.add(i * blk.p.ldc);
                for (v, x) in row.iter().enumerate() {
                    let cv = ci.add(8 * v);
                    if short(v) {
                        let out = if blk.p.acc {
                            _mm256_fmadd_ps(*x, s, _mm256_maskload_ps(cv, blk.mask))
                        } else {
                            _mm256_mul_ps(*x, s)
                        };
                        _mm256_maskstore_ps(cv, blk.mask, out);
                    } else {
                        let out = if blk.p.acc {
                            _mm256_fmadd_ps(*x, s, _mm256_loadu_ps(cv))
                        } else {
                            _mm256_mul_ps(*x, s)
                        };
                        _mm256_storeu_ps(cv, out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block shape and tail, with `a` given transposed and `dst` accumulated into,
    /// against an f64 product.
    #[test]
    fn matches_f64_product() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (6, 64, 64),
            (64, 64, 64),
            (7, 17, 3),
            (13, 80, 64),
            (64, 128, 37),
            (5, 130, 9),
        ] {
            for a_t in [false, true] {
                for accumulate in [false, true] {
                    let a: Vec<f32> = (0..m * k)
                        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                        .collect();
                    let b: Vec<f32> = (0..k * n)
                        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                        .collect();
                    let c0: Vec<f32> = (0..m * n).map(|i| (i % 3) as f32).collect();
                    let mut c = c0.clone();
                    // a(i, p): row-major [m, k], or the transpose of a row-major [k, m]
                    let av = if a_t {
                        MatRef::new(&a, k, m).t()
                    } else {
                        MatRef::new(&a, m, k)
                    };
                    tile_gemm(
                        MatMut::new(&mut c, m, n),
                        av,
                        MatRef::new(&b, k, n),
                        accumulate,
                        0.5,
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let mut s = 0f64;
                            for p in 0..k {
                                let aip = if a_t { a[p * m + i] } else { a[i * k + p] };
                                s += aip as f64 * b[p * n + j] as f64;
                            }
                            let want = 0.5 * s
                                + if accumulate {
                                    c0[i * n + j] as f64
                                } else {
                                    0.0
                                };
                            let got = c[i * n + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                "{m}x{n}x{k} a_t {a_t} acc {accumulate}: ({i},{j}) {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A row of the product is bitwise the same whatever rows surround it (the block a row
    /// falls in does not change its arithmetic).
    #[test]
    fn rows_are_independent_of_the_block() {
        let (m, n, k) = (11, 70, 33);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut all = vec![0f32; m * n];
        tile_gemm(
            MatMut::new(&mut all, m, n),
            MatRef::new(&a, m, k),
            MatRef::new(&b, k, n),
            false,
            1.0,
        );
        for i in 0..m {
            let mut one = vec![0f32; n];
            tile_gemm(
                MatMut::new(&mut one, 1, n),
                MatRef::new(&a[i * k..(i + 1) * k], 1, k),
                MatRef::new(&b, k, n),
                false,
                1.0,
            );
            assert_eq!(&one[..], &all[i * n..(i + 1) * n], "row {i}");
        }
    }
}
