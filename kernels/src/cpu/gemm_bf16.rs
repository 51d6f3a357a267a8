//! bf16 matrix multiply with f32 accumulation: `dst = (accumulate ? dst : 0) + scale · a · b`
//! with `a: [m, k]`, `b: [k, n]` in bf16 and `dst: [m, n]` in f32, at any strides.
//!
//! On a CPU with AVX512-BF16 the product runs on `vdpbf16ps`, which multiplies 16 pairs of
//! bf16 and adds both products of each pair into one f32 lane (64 FLOP per instruction,
//! twice the fp32 FMA rate):
//! - `b` is packed per block of `KC` rows × `NC` columns into panels of 16 columns, each row
//!   pair `(2q, 2q + 1)` of a panel stored as 32 interleaved bf16 (`[b(2q, j), b(2q+1, j)]`
//!   for the panel's 16 `j`): one zmm per pair step, the layout `vdpbf16ps` wants. The block
//!   (256 KiB) stays in L2, a group of 4 panels (32 KiB) in L1, while every row of `a` passes over it.
//! - the microkernel broadcasts each pair `[a(i, 2q), a(i, 2q+1)]` of `a` as one 32-bit word
//!   to all lanes: read in place from a row-major `a` (even row stride), else from a copy
//!   packed per block of `MR` rows;
//! - the microkernel keeps `MR × 16·NV = 6 × 64` outputs in 24 zmm accumulators; per pair
//!   step it loads `NV` panel vectors and issues one `vdpbf16ps` per accumulator;
//! - rayon splits the column blocks when there are enough of them (two per thread), else
//!   the rows of each; an odd `k` is padded with a zero row.
//!
//! Elsewhere (no AVX512-BF16, `LMF_SIMD` below `avx512`, or another arch) both operands are
//! widened to f32 and multiplied by [`super::gemm::gemm`]: the same products, each exact in
//! f32, summed in another order.

use half::bf16;
use rayon::prelude::*;

use super::gemm::{check_product, gemm, MatMut, MatRef};

/// Rows of `b` per packed block (an even number: pairs never straddle blocks).
const KC: usize = 2048;
/// Columns of `b` per packed block.
const NC: usize = 128;
/// Rows per microkernel block.
const MR: usize = 6;
/// Rows of `a` per rayon task (a multiple of `MR`).
const ROWS_PER_TASK: usize = 8 * MR;

/// Whether the `vdpbf16ps` path runs: the CPU has AVX512-BF16 and `LMF_SIMD` allows AVX-512.
pub fn has_bf16_dot() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::simd::avx512() && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `dst = (accumulate ? dst : 0) + scale · a · b` (see the module doc).
///
/// Panics if the shapes disagree or a view addresses past its slice.
pub fn gemm_bf16(
    dst: MatMut<'_, f32>,
    a: MatRef<'_, bf16>,
    b: MatRef<'_, bf16>,
    accumulate: bool,
    scale: f32,
) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    check_product(&dst, &a, &b, "gemm_bf16");
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if dst.cs == 1 && k > 0 && has_bf16_dot() {
        return avx512::gemm(dst, a, b, accumulate, scale);
    }
    portable(dst, a, b, accumulate, scale)
}

/// The portable twin: both operands widened to f32, then the f32 [`gemm`].
fn portable(
    dst: MatMut<'_, f32>,
    a: MatRef<'_, bf16>,
    b: MatRef<'_, bf16>,
    accumulate: bool,
    scale: f32,
) {
    let widen = |x: MatRef<'_, bf16>| -> Vec<f32> {
        let mut out = Vec::with_capacity(x.rows * x.cols);
        for i in 0..x.rows {
            for j in 0..x.cols {
                out.push(x.data[i * x.rs + j * x.cs].to_f32());
            }
        }
        out
    };
    let (af, bf) = (widen(a), widen(b));
    gemm(
        dst,
        MatRef::new(&af, a.rows, a.cols),
        MatRef::new(&bf, b.rows, b.cols),
        accumulate,
        scale,
    )
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// zmm vectors (16 columns each) per microkernel block.
    const NV: usize = 4;

    /// `b`'s block of rows `p0..p0 + kc` and columns `j0..j0 + nc`, as panels of 16 columns
    /// of interleaved row pairs: `[panel][pair][32 bf16]` (zeros past `k` and `n`).
    fn pack_b(b: &MatRef<'_, half::bf16>, p0: usize, kc: usize, j0: usize, nc: usize) -> Vec<u16> {
        let pairs = kc.div_ceil(2);
        let panels = nc.div_ceil(16);
        let mut out = vec![0u16; panels * pairs * 32];
        for panel in 0..panels {
            for q in 0..pairs {
                let dst = &mut out[(panel * pairs + q) * 32..][..32];
                for t in 0..2 {
                    let p = 2 * q + t;
                    if p >= kc {
                        continue;
                    }
                    let row = (p0 + p) * b.rs;
                    for l in 0..16.min(nc - panel * 16) {
                        dst[2 * l + t] = b.data[row + (j0 + panel * 16 + l) * b.cs].to_bits();
                    }
                }
            }
        }
        out
    }

    /// Rows `i0..i0 + rows` of `a`, columns `p0..p0 + kc`, as `[row][pair]` 32-bit words.
    fn pack_a(
        a: &MatRef<'_, half::bf16>,
        i0: usize,
        rows: usize,
        p0: usize,
        kc: usize,
        out: &mut Vec<u32>,
    ) {
        let pairs = kc.div_ceil(2);
        out.clear();
        out.resize(rows * pairs, 0);
        for r in 0..rows {
            let base = (i0 + r) * a.rs;
            for q in 0..pairs {
                let lo = a.data[base + (p0 + 2 * q) * a.cs].to_bits() as u32;
                let hi = if 2 * q + 1 < kc {
                    a.data[base + (p0 + 2 * q + 1) * a.cs].to_bits() as u32
                } else {
                    0
                };
                out[r * pairs + q] = lo | (hi << 16);
            }
        }
    }

    /// A raw pointer that may cross to rayon's threads: each task writes disjoint rows.
    #[derive(Clone, Copy)]
    struct Out(*mut f32);
    // SAFETY: tasks write disjoint rows of `dst` (see `gemm`), which outlives the scope.
    unsafe impl Send for Out {}
    // SAFETY: as above.
    unsafe impl Sync for Out {}

    impl Out {
        /// The pointer (a method, so that closures capture the whole `Send` wrapper).
        fn ptr(self) -> *mut f32 {
            self.0
        }
    }

    pub(super) fn gemm(
        dst: MatMut<'_, f32>,
        a: MatRef<'_, half::bf16>,
        b: MatRef<'_, half::bf16>,
        accumulate: bool,
        scale: f32,
    ) {
        let (m, n) = (dst.rows, dst.cols);
        let (ldc, out) = (dst.rs, Out(dst.data.as_mut_ptr()));
        let cols: Vec<usize> = (0..n).step_by(NC).collect();
        if cols.len() >= 2 * rayon::current_num_threads() {
            // wide products: one task per column block, each packing its own block of b
            cols.par_iter().for_each(|&j0| {
                column_block(&a, &b, j0, 0..m, out, ldc, scale, accumulate);
            });
        } else {
            // otherwise the rows are split, per column block
            for &j0 in &cols {
                (0..m.div_ceil(ROWS_PER_TASK))
                    .into_par_iter()
                    .for_each(|t| {
                        let rows = t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(m);
                        column_block(&a, &b, j0, rows, out, ldc, scale, accumulate);
                    });
            }
        }
    }

    /// Rows `rows` × columns `j0..j0 + NC` (clipped) of the product, over the whole `k`:
    /// blocks of `KC` rows of `b`, each packed once here.
    #[allow(clippy::too_many_arguments)]
    fn column_block(
        a: &MatRef<'_, half::bf16>,
        b: &MatRef<'_, half::bf16>,
        j0: usize,
        rows: std::ops::Range<usize>,
        out: Out,
        ldc: usize,
        scale: f32,
        accumulate: bool,
    ) {
        let (n, k) = (b.cols, b.rows);
        let nc = NC.min(n - j0);
        let mut ap = Vec::new();
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            let bp = pack_b(b, p0, kc, j0, nc);
            // the first block of k overwrites unless accumulating; later ones add
            let add = accumulate || p0 > 0;
            // rows of `a` whose pairs already lie in memory as 32-bit words are read in
            // place; others are packed (a strided `a`, an odd row stride, an odd tail)
            let in_place = a.cs == 1 && a.rs.is_multiple_of(2) && kc.is_multiple_of(2);
            for i0 in rows.clone().step_by(MR) {
                let mr = MR.min(rows.end - i0);
                let (a_words, a_rs) = if in_place {
                    let p = a.data[i0 * a.rs + p0..].as_ptr() as *const u32;
                    (p, a.rs / 2)
                } else {
                    pack_a(a, i0, mr, p0, kc, &mut ap);
                    (ap.as_ptr(), kc.div_ceil(2))
                };
                // SAFETY: AVX512-BF16 is present (checked by `gemm_bf16`); the block writes
                // rows i0..i0 + mr, columns j0..j0 + nc of `dst`, inside its bounds (asserted
                // by `gemm_bf16`) and owned by this task (tasks split rows or columns).
                unsafe {
                    block(
                        (a_words, a_rs),
                        &bp,
                        kc.div_ceil(2),
                        mr,
                        nc,
                        out.ptr().add(i0 * ldc + j0),
                        ldc,
                        scale,
                        add,
                    );
                }
            }
        }
    }

    /// One row block over every panel group of the packed `b` block.
    ///
    /// # Safety
    /// AVX512-BF16; `ap + r·a_rs + q` readable for `r < rows`, `q < pairs`; `c + r·ldc + j`
    /// writable for `r < rows`, `j < nc`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn block(
        (ap, a_rs): (*const u32, usize),
        bp: &[u16],
        pairs: usize,
        rows: usize,
        nc: usize,
        c: *mut f32,
        ldc: usize,
        scale: f32,
        add: bool,
    ) {
        let panels = nc.div_ceil(16);
        for g in (0..panels).step_by(NV) {
            let nv = NV.min(panels - g);
            let last = nc - (g + nv - 1) * 16;
            let mask = super::super::simd::exp::avx512::tail_mask(last.min(16));
            let blk = Micro {
                pairs,
                a: ap,
                a_rs,
                b: bp.as_ptr().add(g * pairs * 32),
                c: c.add(g * 16),
                ldc,
                scale,
                add,
                mask,
            };
            macro_rules! go {
                ($($r:literal),*) => {
                    match (rows, nv) {
                        $(
                            ($r, 1) => micro::<$r, 1>(&blk),
                            ($r, 2) => micro::<$r, 2>(&blk),
                            ($r, 3) => micro::<$r, 3>(&blk),
                            ($r, 4) => micro::<$r, 4>(&blk),
                        )*
                        _ => unreachable!("gemm_bf16 block {rows}x{nv}"),
                    }
                };
            }
            // SAFETY: forwarded from the caller.
            unsafe { go!(1, 2, 3, 4, 5, 6) }
        }
    }

    struct Micro {
        pairs: usize,
        /// The row block's pair words: pair `q` of row `i` at `a + i·a_rs + q`.
        a: *const u32,
        a_rs: usize,
        /// The panel group: `V` panels of `[pair][32 bf16]`, one after another.
        b: *const u16,
        c: *mut f32,
        ldc: usize,
        scale: f32,
        add: bool,
        /// Lanes of the last panel inside `dst`.
        mask: __mmask16,
    }

    /// `c[R, 16·V] (+)= scale · Σ_q a-pairs · b-pairs` over the block's pairs.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn micro<const R: usize, const V: usize>(blk: &Micro) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let pairs = blk.pairs;
        for q in 0..pairs {
            // SAFETY (all loads): inside the packed buffers.
            unsafe {
                let mut bv = [_mm512_setzero_si512(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm512_loadu_si512(blk.b.add((v * pairs + q) * 32) as *const __m512i);
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_epi32(blk.a.add(i * blk.a_rs + q).read_unaligned() as i32);
                    let ai: __m512bh = std::mem::transmute(ai);
                    for (x, y) in row.iter_mut().zip(&bv) {
                        *x = _mm512_dpbf16_ps(*x, ai, std::mem::transmute::<__m512i, __m512bh>(*y));
                    }
                }
            }
        }
        let s = _mm512_set1_ps(blk.scale);
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: row i of the block, columns under the lane masks.
            unsafe {
                let ci = blk.c.add(i * blk.ldc);
                for (v, x) in row.iter().enumerate() {
                    let m = if v + 1 == V { blk.mask } else { 0xFFFF };
                    let out = if blk.add {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block shape and tail (odd k, n not a multiple of 16, more than one k and n
    /// block, a transposed b), accumulating or not, against an f64 product of the same
    /// bf16 values: the products are exact in f32, so only the sums' rounding differs.
    #[test]
    fn matches_f64_product() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 3, 17),
            (13, 64, 80),
            (50, 601, 70),
            (6, 1030, 530),
            (5, 4501, 20),
        ] {
            for b_t in [false, true] {
                for accumulate in [false, true] {
                    let a: Vec<bf16> = (0..m * k)
                        .map(|i| bf16::from_f32(((i * 7 % 13) as f32 - 6.0) / 5.0))
                        .collect();
                    let bv: Vec<bf16> = (0..k * n)
                        .map(|i| bf16::from_f32(((i * 5 % 11) as f32 - 5.0) / 3.0))
                        .collect();
                    let c0: Vec<f32> = (0..m * n).map(|i| (i % 3) as f32).collect();
                    let mut c = c0.clone();
                    // b(p, j): row-major [k, n], or the transpose of a row-major [n, k]
                    let bref = if b_t {
                        MatRef::new(&bv, n, k).t()
                    } else {
                        MatRef::new(&bv, k, n)
                    };
                    gemm_bf16(
                        MatMut::new(&mut c, m, n),
                        MatRef::new(&a, m, k),
                        bref,
                        accumulate,
                        0.5,
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let mut s = 0f64;
                            for p in 0..k {
                                let bpj = if b_t { bv[j * k + p] } else { bv[p * n + j] };
                                s += a[i * k + p].to_f64() * bpj.to_f64();
                            }
                            let want = 0.5 * s
                                + if accumulate {
                                    c0[i * n + j] as f64
                                } else {
                                    0.0
                                };
                            let got = c[i * n + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(),
                                "{m}x{k}x{n} b_t {b_t} acc {accumulate}: ({i},{j}) {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
