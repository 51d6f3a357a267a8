//! The skinny product of decoding: a few activation rows times a weight stored `[out, in]`
//! row-major, `dst[i, j] = Σ_p x[i, p] · w[j, p]` for `m ≤ SKINNY_M` rows. The `gemm` crate
//! repacks the whole weight on every call at these shapes (the weight is its left operand
//! once the output is row-major), which costs more than the product; here each weight row is
//! read once, straight from memory, and dotted with the `m` activation rows held in L1.
//! Work is split over output columns with rayon; f32 runs an AVX2 + FMA kernel when the CPU
//! has one (chosen at run time), anything else the portable loop.

use super::gemm::{MatMut, MatRef};
use crate::Real;
use rayon::prelude::*;

/// Largest number of activation rows sent down this path.
pub(crate) const SKINNY_M: usize = 8;

/// Lanes of independent partial sums: enough for two AVX-512 registers of f32.
const LANES: usize = 32;

/// Whether `a · b` is the skinny case this path handles: few contiguous rows in `a`, and `b`
/// the transpose of a row-major `[n, k]` weight.
pub(crate) fn applies<T>(dst: &MatMut<'_, T>, a: &MatRef<'_, T>, b: &MatRef<'_, T>) -> bool {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    (1..=SKINNY_M).contains(&m)
        && k >= LANES
        && n >= 8
        && (a.cs == 1 || m == 1)
        && (b.rs == 1 || k == 1)
}

/// Whether this path can run `a · b` 8 rows at a time for any number of rows (what the
/// row-independent mode of [`super::gemm::rows_independent`] needs): contiguous rows in
/// `a`, `b` a transposed row-major weight, and the sizes [`applies`] asks for.
pub(crate) fn applies_to_rows<T>(a: &MatRef<'_, T>, b: &MatRef<'_, T>, n: usize) -> bool {
    a.cols >= LANES && n >= 8 && a.cs == 1 && b.rs == 1
}

/// `Σ x[p] · y[p]` with `LANES` independent accumulators (vectorisable without reassociation).
#[inline(always)]
fn dot<T: Real>(x: &[T], y: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        // fixed-size arrays: no bounds checks, so the lane loop becomes vector code
        let (xs, ys): (&[T; LANES], &[T; LANES]) = match (xs.try_into(), ys.try_into()) {
            (Ok(x), Ok(y)) => (x, y),
            _ => unreachable!("chunks_exact yields LANES elements"),
        };
        for l in 0..LANES {
            acc[l] += xs[l] * ys[l];
        }
    }
    let mut s = T::zero();
    for (&u, &v) in xr.iter().zip(yr) {
        s += u * v;
    }
    // pairwise fold of the lanes
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            let hi = acc[l + w];
            acc[l] += hi;
        }
    }
    acc[0] + s
}

/// Columns `j0..j0 + out.len() / m` of the product, column-major into `out: [cols, m]`.
#[inline(always)]
fn columns<T: Real>(rows: &[&[T]], w: &[T], k: usize, rs_w: usize, j0: usize, out: &mut [T]) {
    let m = rows.len();
    for (c, o) in out.chunks_exact_mut(m).enumerate() {
        let wj = &w[(j0 + c) * rs_w..(j0 + c) * rs_w + k];
        for (i, x) in rows.iter().enumerate() {
            o[i] = dot(x, wj);
        }
    }
}

/// f32 columns with AVX2 + FMA: each 8-wide slice of the weight row is loaded once and
/// multiplied into `M` accumulators, one per activation row (kept in registers: `M` is a
/// compile-time constant).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn columns_f32_avx2<const M: usize>(
    rows: &[&[f32]],
    w: &[f32],
    k: usize,
    rs_w: usize,
    j0: usize,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    assert!(rows.len() == M && rows.iter().all(|r| r.len() >= k));
    let k8 = k / 8 * 8;
    for (c, o) in out.chunks_exact_mut(M).enumerate() {
        let wj = &w[(j0 + c) * rs_w..(j0 + c) * rs_w + k];
        let mut acc = [_mm256_setzero_ps(); M];
        let mut p = 0;
        while p < k8 {
            // SAFETY: p + 8 <= k8 <= k, and wj and every row hold at least k elements.
            let wv = _mm256_loadu_ps(wj.as_ptr().add(p));
            for i in 0..M {
                acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[i].as_ptr().add(p)), wv, acc[i]);
            }
            p += 8;
        }
        for i in 0..M {
            // horizontal sum of the 8 lanes
            let v = _mm_add_ps(
                _mm256_castps256_ps128(acc[i]),
                _mm256_extractf128_ps(acc[i], 1),
            );
            let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
            let v = _mm_add_ss(v, _mm_movehdup_ps(v));
            let mut sum = _mm_cvtss_f32(v);
            for q in k8..k {
                sum += rows[i][q] * wj[q];
            }
            o[i] = sum;
        }
    }
}

/// [`columns`] for f32 with AVX2 + FMA when the CPU has them; `None` when it does not.
#[cfg(target_arch = "x86_64")]
fn columns_f32_fast(
    rows: &[&[f32]],
    w: &[f32],
    k: usize,
    rs_w: usize,
    j0: usize,
    out: &mut [f32],
) -> Option<()> {
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
    {
        return None;
    }
    // SAFETY (each arm): AVX2 and FMA are present (checked above).
    unsafe {
        match rows.len() {
            1 => columns_f32_avx2::<1>(rows, w, k, rs_w, j0, out),
            2 => columns_f32_avx2::<2>(rows, w, k, rs_w, j0, out),
            3 => columns_f32_avx2::<3>(rows, w, k, rs_w, j0, out),
            4 => columns_f32_avx2::<4>(rows, w, k, rs_w, j0, out),
            5 => columns_f32_avx2::<5>(rows, w, k, rs_w, j0, out),
            6 => columns_f32_avx2::<6>(rows, w, k, rs_w, j0, out),
            7 => columns_f32_avx2::<7>(rows, w, k, rs_w, j0, out),
            8 => columns_f32_avx2::<8>(rows, w, k, rs_w, j0, out),
            _ => return None,
        }
    }
    Some(())
}

/// [`columns`] with the vector kernel when `T` is f32 on an AVX2 machine.
fn columns_dispatch<T: Real>(
    rows: &[&[T]],
    w: &[T],
    k: usize,
    rs_w: usize,
    j0: usize,
    out: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32 (checked just above), so these are the same slices retyped.
        let (rows32, w32, out32) = unsafe {
            (
                std::mem::transmute::<&[&[T]], &[&[f32]]>(rows),
                std::slice::from_raw_parts(w.as_ptr() as *const f32, w.len()),
                std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f32, out.len()),
            )
        };
        if columns_f32_fast(rows32, w32, k, rs_w, j0, out32).is_some() {
            return;
        }
    }
    columns(rows, w, k, rs_w, j0, out)
}

/// `dst = (accumulate ? dst : 0) + scale · a · b` for the shapes [`applies`] accepts, or any
/// number of rows for those of [`applies_to_rows`]: rows go through the kernel in groups of
/// `SKINNY_M`, and each row's sums are the same whatever group it is in.
pub(crate) fn skinny<T: Real>(
    dst: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    scale: T,
    parallel: bool,
) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    // activation rows x_i: [k] contiguous; weight row j: b's column j, contiguous
    let rows: Vec<&[T]> = (0..m).map(|i| &a.data[i * a.rs..i * a.rs + k]).collect();
    let rs_w = b.cs;
    // Columns j0..j0 + cols of every row group, group after group: group g (rows
    // g·SKINNY_M..) fills a [cols, rows in g] block, so a task's weight columns stay in cache
    // while all the groups pass over them.
    let task = |j0: usize, cols: usize, out: &mut [T]| {
        let mut off = 0;
        for group in rows.chunks(SKINNY_M) {
            let len = cols * group.len();
            columns_dispatch(group, b.data, k, rs_w, j0, &mut out[off..off + len]);
            off += len;
        }
    };
    // ~64 KiB of weights per task: rayon's overhead stays small next to the memory reads,
    // and both threads stream nearby rows (measured faster than 256 KiB or halves)
    let cols_per_task = (16384 / k.max(1)).clamp(8, n);
    // out: per task of cols_per_task columns, its groups' blocks
    let mut out = vec![T::zero(); n * m];
    if parallel && n * k >= 1 << 16 {
        out.par_chunks_mut(cols_per_task * m)
            .enumerate()
            .for_each(|(t, o)| task(t * cols_per_task, o.len() / m, o));
    } else {
        out.chunks_mut(cols_per_task * m)
            .enumerate()
            .for_each(|(t, o)| task(t * cols_per_task, o.len() / m, o));
    }
    for (t, block) in out.chunks(cols_per_task * m).enumerate() {
        let (j0, cols) = (t * cols_per_task, block.len() / m);
        let mut off = 0;
        for (g, group) in rows.chunks(SKINNY_M).enumerate() {
            let gm = group.len();
            for c in 0..cols {
                for r in 0..gm {
                    let i = g * SKINNY_M + r;
                    let d = &mut dst.data[i * dst.rs + (j0 + c) * dst.cs];
                    let v = scale * block[off + c * gm + r];
                    *d = if accumulate { *d + v } else { v };
                }
            }
            off += cols * gm;
        }
    }
}
