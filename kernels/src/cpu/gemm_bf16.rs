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
//! - every block of `b` is packed once per call (in parallel), then rayon runs one task per
//!   column block × chunk of `8·MR` rows; an odd `k` is padded with a zero row.
//!
//! Elsewhere (no AVX512-BF16, `LMF_SIMD` below `avx512`, or another arch) both operands are
//! widened to f32 and multiplied by [`super::gemm::gemm`]: the same products, each exact in
//! f32, summed in another order.
//!
//! [`gemm_rounded`] takes f32 operands and rounds them to bf16 (nearest even) on the way in:
//! `a` once into a row-major copy, `b` while it is packed. It is what f32 products become
//! inside [`super::gemm::bf16_products`] (`bf16: true` on the CPU).

use half::bf16;
use rayon::prelude::*;

use super::gemm::{check_product, gemm_exact, MatMut, MatRef};

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
    check_product(&dst, &a, &b, "gemm_bf16");
    if dst.rows > 0 && dst.cols > 0 {
        multiply(dst, a, b, accumulate, scale);
    }
}

/// `dst = (accumulate ? dst : 0) + scale · bf16(a) · bf16(b)` for f32 `a`, `b`: each operand
/// rounded to the nearest bf16 (ties to even), then multiplied as [`gemm_bf16`] does.
///
/// Panics if the shapes disagree or a view addresses past its slice.
pub fn gemm_rounded(
    dst: MatMut<'_, f32>,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    accumulate: bool,
    scale: f32,
) {
    check_product(&dst, &a, &b, "gemm_rounded");
    if dst.rows > 0 && dst.cols > 0 {
        let ab = round_rows(&a);
        multiply(dst, MatRef::new(&ab, a.rows, a.cols), b, accumulate, scale);
    }
}

/// The checked, non-empty product of a bf16 `a` by `b`: `vdpbf16ps` where it runs (a
/// unit-stride `dst`, `k > 0`), else the portable twin.
fn multiply<B: Bf16Operand>(
    dst: MatMut<'_, f32>,
    a: MatRef<'_, bf16>,
    b: MatRef<'_, B>,
    accumulate: bool,
    scale: f32,
) {
    #[cfg(target_arch = "x86_64")]
    if dst.cs == 1 && a.cols > 0 && has_bf16_dot() {
        return avx512::gemm(dst, a, b, accumulate, scale);
    }
    portable(dst, a, b, accumulate, scale)
}

/// An operand element that `vdpbf16ps` can take: a bf16, or an f32 rounded to one.
pub(crate) trait Bf16Operand: Copy + Send + Sync + 'static {
    /// The bf16 bits (f32: rounded to nearest, ties to even).
    fn bf16(self) -> bf16;
}

impl Bf16Operand for bf16 {
    fn bf16(self) -> bf16 {
        self
    }
}

impl Bf16Operand for f32 {
    fn bf16(self) -> bf16 {
        bf16::from_f32(self)
    }
}

/// `a` rounded to bf16 as a row-major `[rows, cols]` copy (rows in parallel when large).
fn round_rows(a: &MatRef<'_, f32>) -> Vec<bf16> {
    let (m, k) = (a.rows, a.cols);
    let mut out = vec![bf16::ZERO; m * k];
    if k == 0 {
        return out;
    }
    #[cfg(target_arch = "x86_64")]
    if a.rs == 1 && a.cs != 1 && k.is_multiple_of(2) && has_bf16_dot() {
        // a transposed row-major matrix: 16 rows at a time, from its contiguous columns
        let go = |(t, dst): (usize, &mut [bf16])| {
            // SAFETY: AVX512-BF16 is present; rows 16t.. of `a` lie inside its slice
            // (asserted by the caller) and `dst` holds exactly those rows.
            unsafe { avx512::round_cols(a, 16 * t, dst) }
        };
        if m * k >= 1 << 16 {
            out.par_chunks_mut(16 * k).enumerate().for_each(go);
        } else {
            out.chunks_mut(16 * k).enumerate().for_each(go);
        }
        return out;
    }
    let row = |(i, dst): (usize, &mut [bf16])| {
        if a.cs == 1 {
            round_slice(&a.data[i * a.rs..][..k], dst);
        } else {
            for (p, d) in dst.iter_mut().enumerate() {
                *d = bf16::from_f32(a.data[i * a.rs + p * a.cs]);
            }
        }
    };
    if m * k >= 1 << 16 {
        out.par_chunks_mut(k).enumerate().for_each(row);
    } else {
        out.chunks_mut(k).enumerate().for_each(row);
    }
    out
}

/// `dst[i] = bf16(src[i])`, nearest even (`vcvtneps2bf16` where AVX512-BF16 runs the
/// products: like `vdpbf16ps` it reads subnormal inputs as zero).
pub(crate) fn round_slice(src: &[f32], dst: &mut [bf16]) {
    #[cfg(target_arch = "x86_64")]
    if has_bf16_dot() {
        // SAFETY: AVX512-BF16 is present (checked just above).
        return unsafe { avx512::round_slice(src, dst) };
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = bf16::from_f32(*s);
    }
}

/// The portable twin: both operands as f32 (`b` rounded to bf16 first), then the f32 gemm.
fn portable<B: Bf16Operand>(
    dst: MatMut<'_, f32>,
    a: MatRef<'_, bf16>,
    b: MatRef<'_, B>,
    accumulate: bool,
    scale: f32,
) {
    let af: Vec<f32> = (0..a.rows)
        .flat_map(|i| (0..a.cols).map(move |j| a.data[i * a.rs + j * a.cs].to_f32()))
        .collect();
    let bf: Vec<f32> = (0..b.rows)
        .flat_map(|i| (0..b.cols).map(move |j| b.data[i * b.rs + j * b.cs].bf16().to_f32()))
        .collect();
    gemm_exact(
        dst,
        MatRef::new(&af, a.rows, a.cols),
        MatRef::new(&bf, b.rows, b.cols),
        accumulate,
        scale,
        true,
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
    fn pack_b<B: Bf16Operand>(
        b: &MatRef<'_, B>,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
    ) -> Vec<u16> {
        let pairs = kc.div_ceil(2);
        let panels = nc.div_ceil(16);
        let mut out = vec![0u16; panels * pairs * 32];
        if let Some(data) = super::super::simd::fast_f32(b.data) {
            let f = MatRef {
                data,
                rows: b.rows,
                cols: b.cols,
                rs: b.rs,
                cs: b.cs,
            };
            // SAFETY: AVX512-BF16 is present (this module runs only then); the views are
            // inside their slices (asserted by the caller) and `out` is sized for the block.
            if f.cs == 1 {
                unsafe { pack_b_rows(&f, p0, kc, j0, nc, &mut out) };
                return out;
            }
            if f.rs == 1 {
                unsafe { pack_b_cols(&f, p0, kc, j0, nc, &mut out) };
                return out;
            }
        }
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
                        dst[2 * l + t] =
                            b.data[row + (j0 + panel * 16 + l) * b.cs].bf16().to_bits();
                    }
                }
            }
        }
        out
    }

    /// 16 lanes of `x` and of `y` rounded to bf16 (`vcvtneps2bf16`) and joined into pair
    /// words `[x_l, y_l]` (x in the low half).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn pair_words(x: __m512, y: __m512) -> __m512i {
        // SAFETY: 16 bf16 are the 256 bits of a ymm.
        let (lo, hi) = unsafe {
            (
                std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(x)),
                std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(y)),
            )
        };
        _mm512_or_si512(
            _mm512_cvtepu16_epi32(lo),
            _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(hi)),
        )
    }

    /// `[0, stride, 2·stride, …, 15·stride]`: the word offsets of a 16-lane scatter.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lane_offsets(stride: usize) -> __m512i {
        _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(stride as i32),
        )
    }

    /// [`pack_b`] of an f32 `b` with unit column stride: each pair step of a panel is two
    /// 16-float row pieces, rounded and interleaved in registers.
    ///
    /// # Safety
    /// AVX512-BF16; the block inside `b`; `out` of `panels · pairs · 32`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn pack_b_rows(
        b: &MatRef<'_, f32>,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        out: &mut [u16],
    ) {
        let pairs = kc.div_ceil(2);
        for panel in 0..nc.div_ceil(16) {
            let c0 = j0 + panel * 16;
            let mask = super::super::simd::exp::avx512::tail_mask(nc - panel * 16);
            for q in 0..pairs {
                let p = p0 + 2 * q;
                // SAFETY: rows p, p + 1 (when inside the block), columns under the mask.
                unsafe {
                    let x = _mm512_maskz_loadu_ps(mask, b.data.as_ptr().add(p * b.rs + c0));
                    let y = if 2 * q + 1 < kc {
                        _mm512_maskz_loadu_ps(mask, b.data.as_ptr().add((p + 1) * b.rs + c0))
                    } else {
                        _mm512_setzero_ps()
                    };
                    let dst = out.as_mut_ptr().add((panel * pairs + q) * 32) as *mut __m512i;
                    _mm512_storeu_si512(dst, pair_words(x, y));
                }
            }
        }
    }

    /// [`pack_b`] of an f32 `b` with unit row stride (a transposed row-major weight): each
    /// column's `kc` floats are contiguous, so 32 of them round into 16 pair words at once,
    /// scattered to their 16 pair steps of the panel.
    ///
    /// # Safety
    /// As [`pack_b_rows`].
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn pack_b_cols(
        b: &MatRef<'_, f32>,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        out: &mut [u16],
    ) {
        let pairs = kc.div_ceil(2);
        // word offsets of 16 consecutive pair steps of one panel column: 16 words apart
        let steps = lane_offsets(16);
        let words = out.as_mut_ptr() as *mut i32;
        for l in 0..nc {
            let (panel, lane) = (l / 16, l % 16);
            let col = b.data.as_ptr().wrapping_add((j0 + l) * b.cs + p0);
            for q0 in (0..pairs).step_by(16) {
                let p = 2 * q0;
                let mx = super::super::simd::exp::avx512::tail_mask(kc.saturating_sub(p));
                let my = super::super::simd::exp::avx512::tail_mask(kc.saturating_sub(p + 16));
                // SAFETY: column floats p0 + p .. p0 + kc under the masks; the scattered words
                // are pair steps q0.. of this panel column, inside `out`.
                unsafe {
                    let x = _mm512_maskz_loadu_ps(mx, col.add(p));
                    let y = _mm512_maskz_loadu_ps(my, col.add(p + 16));
                    let w: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(y, x));
                    let base = words.add((panel * pairs + q0) * 16 + lane);
                    let qm = super::super::simd::exp::avx512::tail_mask(pairs - q0);
                    _mm512_mask_i32scatter_epi32::<4>(base, qm, steps, w);
                }
            }
        }
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

    /// `dst[i] = bf16(src[i])` with `vcvtneps2bf16`, 16 at a time (the tail through a
    /// zero-padded copy).
    ///
    /// # Safety
    /// AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn round_slice(src: &[f32], dst: &mut [half::bf16]) {
        let n = src.len().min(dst.len());
        let full = n - n % 16;
        for i in (0..full).step_by(16) {
            // SAFETY: elements i..i + 16 of both slices.
            unsafe {
                let x = _mm512_loadu_ps(src.as_ptr().add(i));
                let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(x));
                _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, h);
            }
        }
        if full < n {
            let mut s = [0f32; 16];
            let mut d = [half::bf16::ZERO; 16];
            s[..n - full].copy_from_slice(&src[full..n]);
            // SAFETY: forwarded from the caller; full-length buffers.
            unsafe { round_slice(&s, &mut d) };
            dst[full..n].copy_from_slice(&d[..n - full]);
        }
    }

    /// Rows `i0..` of a unit-row-stride `a` (as many as `dst` holds, ≤ 16) rounded to bf16
    /// into row-major `dst`: per pair of columns, 16 rows' floats of each column are loaded,
    /// rounded, joined into pair words and scattered to their rows. `a.cols` is even.
    ///
    /// # Safety
    /// AVX512-BF16; `a.rs == 1` and rows `i0..i0 + dst.len() / a.cols` inside `a`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn round_cols(a: &MatRef<'_, f32>, i0: usize, dst: &mut [half::bf16]) {
        let k = a.cols;
        let pairs = k / 2;
        let rows = dst.len() / k;
        let mask = super::super::simd::exp::avx512::tail_mask(rows);
        let rows_at = lane_offsets(pairs);
        let words = dst.as_mut_ptr() as *mut i32;
        for q in 0..pairs {
            // SAFETY: columns 2q, 2q + 1 of rows i0.. under the mask; word q of each row.
            unsafe {
                let x = _mm512_maskz_loadu_ps(mask, a.data.as_ptr().add(2 * q * a.cs + i0));
                let y = _mm512_maskz_loadu_ps(mask, a.data.as_ptr().add((2 * q + 1) * a.cs + i0));
                _mm512_mask_i32scatter_epi32::<4>(words.add(q), mask, rows_at, pair_words(x, y));
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

    pub(super) fn gemm<B: Bf16Operand>(
        dst: MatMut<'_, f32>,
        a: MatRef<'_, half::bf16>,
        b: MatRef<'_, B>,
        accumulate: bool,
        scale: f32,
    ) {
        let (m, n, k) = (dst.rows, dst.cols, a.cols);
        let (ldc, out) = (dst.rs, Out(dst.data.as_mut_ptr()));
        let (cols, kbs) = (n.div_ceil(NC), k.div_ceil(KC));
        // every (column block, k block) of b packed once, in parallel
        let packed: Vec<Vec<u16>> = (0..cols * kbs)
            .into_par_iter()
            .map(|t| {
                let (j0, p0) = ((t / kbs) * NC, (t % kbs) * KC);
                pack_b(&b, p0, KC.min(k - p0), j0, NC.min(n - j0))
            })
            .collect();
        // then one task per column block × row chunk, column-major: a thread's run of tasks
        // mostly shares one column block, which stays in its L2
        let chunks = m.div_ceil(ROWS_PER_TASK);
        (0..cols * chunks).into_par_iter().for_each(|t| {
            let (c, r) = (t / chunks, t % chunks);
            let rows = r * ROWS_PER_TASK..((r + 1) * ROWS_PER_TASK).min(m);
            let blocks = &packed[c * kbs..(c + 1) * kbs];
            column_block(
                &a,
                blocks,
                (c * NC, NC.min(n - c * NC)),
                rows,
                out,
                ldc,
                scale,
                accumulate,
            );
        });
    }

    /// Rows `rows` × columns `j0..j0 + nc` of the product, over the whole `k`: the column
    /// block's packed `b` blocks (`KC` rows each) in order.
    #[allow(clippy::too_many_arguments)]
    fn column_block(
        a: &MatRef<'_, half::bf16>,
        blocks: &[Vec<u16>],
        (j0, nc): (usize, usize),
        rows: std::ops::Range<usize>,
        out: Out,
        ldc: usize,
        scale: f32,
        accumulate: bool,
    ) {
        let k = a.cols;
        let mut ap = Vec::new();
        for (bp, p0) in blocks.iter().zip((0..k).step_by(KC)) {
            let kc = KC.min(k - p0);
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
                // by `gemm_bf16`) and owned by this task (tasks split rows and columns).
                unsafe {
                    block(
                        (a_words, a_rs),
                        bp,
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

    /// f32 operands rounded on the way in: the same as rounding them first and calling
    /// `gemm_bf16` (bit for bit: same packing, same sums), for a transposed `a`, `b` in three
    /// layouts, odd sizes and every tail of the vector rounding; and inside `bf16_products`
    /// an f32 `gemm` of at least `BF16_MIN_DIM` rows and columns takes that path while
    /// narrower ones and f64 stay exact.
    #[test]
    fn rounded_operands_match_rounding_first() {
        use crate::cpu::gemm::{bf16_products, bf16_products_on, gemm};
        let mut rng = crate::testing::Lcg::new(3);
        let cases = [
            (1, 1, 1),
            (9, 17, 33),
            (40, 130, 300),
            (17, 2051, 16),
            (20, 70, 530),
            (3, 9, 40),
        ];
        for (case, &(m, k, n)) in cases.iter().enumerate() {
            // a stored as [k, m] and used transposed; b stored as [n, k] used transposed, as
            // row-major [k, n], or every other element of a row-major [k, 2n]
            let at = crate::testing::rand_vec::<f32>(&mut rng, m * k, 3.0);
            let bt = crate::testing::rand_vec::<f32>(&mut rng, 2 * n * k, 3.0);
            let b = match case % 3 {
                0 => MatRef::new(&bt[..n * k], n, k).t(),
                1 => MatRef::new(&bt[..n * k], k, n),
                _ => MatRef {
                    data: &bt,
                    rows: k,
                    cols: n,
                    rs: 2 * n,
                    cs: 2,
                },
            };
            let a = MatRef::new(&at, k, m).t();
            let a16: Vec<bf16> = (0..m * k)
                .map(|x| bf16::from_f32(at[(x % k) * m + x / k]))
                .collect();
            let b16: Vec<bf16> = (0..k * n)
                .map(|x| bf16::from_f32(b.data[(x / n) * b.rs + (x % n) * b.cs]))
                .collect();
            let mut want = vec![0f32; m * n];
            gemm_bf16(
                MatMut::new(&mut want, m, n),
                MatRef::new(&a16, m, k),
                MatRef::new(&b16, k, n),
                false,
                1.5,
            );
            let mut got = vec![0f32; m * n];
            gemm_rounded(MatMut::new(&mut got, m, n), a, b, false, 1.5);
            assert_eq!(got, want, "{m}x{k}x{n}");
            let mut scoped = vec![0f32; m * n];
            let mut exact = vec![0f32; m * n];
            bf16_products(|| {
                assert!(bf16_products_on());
                gemm(MatMut::new(&mut scoped, m, n), a, b, false, 1.5);
            });
            assert!(!bf16_products_on(), "the scope restores the flag");
            gemm(MatMut::new(&mut exact, m, n), a, b, false, 1.5);
            if k > 1 {
                assert_ne!(exact, want, "{m}x{k}x{n}: outside the scope f32 is exact");
            }
            // narrow products stay exact in the scope too
            let wide = m.min(n) >= crate::cpu::gemm::BF16_MIN_DIM;
            assert_eq!(
                &scoped,
                if wide { &want } else { &exact },
                "{m}x{k}x{n} in scope"
            );
            // f64 inside the scope: untouched
            let a64: Vec<f64> = at.iter().map(|&x| x as f64).collect();
            let b64: Vec<f64> = bt[..n * k].iter().map(|&x| x as f64).collect();
            let (mut in_scope, mut outside) = (vec![0f64; m * n], vec![0f64; m * n]);
            let (a64r, b64r) = (MatRef::new(&a64, k, m).t(), MatRef::new(&b64, n, k).t());
            bf16_products(|| gemm(MatMut::new(&mut in_scope, m, n), a64r, b64r, false, 1.0));
            gemm(MatMut::new(&mut outside, m, n), a64r, b64r, false, 1.0);
            assert_eq!(in_scope, outside);
        }
    }

    /// The vector rounding agrees with `half`'s nearest-even on normal values, every length
    /// (full vectors and tails), ties included.
    #[test]
    fn vector_rounding_matches_half() {
        // values near ties: bf16 keeps 8 bits of mantissa, so ±0x7FFF/0x8000/0x8001 low bits
        let mut src = Vec::new();
        for e in [-20i32, -1, 0, 3, 40] {
            for low in [0u32, 1, 0x7FFF, 0x8000, 0x8001, 0x18000, 0xFFFF] {
                let base = ((127 + e) as u32) << 23 | 0x2A_0000;
                src.push(f32::from_bits(base | low));
                src.push(-f32::from_bits(base | low));
            }
        }
        for len in [0, 1, 15, 16, 17, src.len()] {
            let mut got = vec![bf16::ZERO; len];
            round_slice(&src[..len], &mut got);
            for (g, s) in got.iter().zip(&src) {
                assert_eq!(g.to_bits(), bf16::from_f32(*s).to_bits(), "{s:e}");
            }
        }
    }
}
