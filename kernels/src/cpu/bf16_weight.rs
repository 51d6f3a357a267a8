//! A frozen weight kept in bf16, and its product with f32 activations: what a linear becomes
//! for inference with `infer_dtype: bfloat16` on the CPU (torch's bf16 `nn.Linear` there):
//! `y = bf16(x) · Wᵀ` with `x: [n, in]` f32, `W: [out, in]` bf16, `y: [n, out]` f32. Each
//! product of two bf16 is exact in f32; the sums are f32, in an order of this kernel's own.
//!
//! Half the bytes of an f32 weight, so decoding (a few rows, memory-bound: every weight is
//! read once per token) streams twice the weights per second:
//! - **few rows** (`n ≤ 8`, or any `n` row by row inside
//!   [`rows_independent`](super::gemm::rows_independent)): a GEMV that reads each weight row
//!   once, straight from memory, and dots it with the ≤ 8 rounded activation rows held in L1.
//!   On AVX512-BF16 one `vdpbf16ps` multiplies 32 weights by 32 activations; elsewhere the
//!   weights are widened to f32 (a 16-bit shift) for an AVX2 FMA, or the portable loop.
//!   Rayon splits the output columns, ~64 KiB of weights per task.
//! - **many rows** (prefill): `x` rounded once, then [`gemm_bf16`] by `Wᵀ`.

use half::bf16;
use rayon::prelude::*;

use super::gemm::{rows_independent_on, MatMut, MatRef};
use super::gemm_bf16::{gemm_bf16, has_bf16_dot, round_slice};
use super::quant::QuantMatrix;
use crate::Real;

/// Most activation rows one GEMV pass takes.
const GEMV_M: usize = 8;

/// A `[rows, cols]` row-major weight in bf16 (rows = out features).
#[derive(Clone, Debug, PartialEq)]
pub struct Bf16Weight {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// `[rows, cols]`, row-major.
    pub data: Vec<bf16>,
}

impl Bf16Weight {
    /// `w: [rows, cols]` f32 rounded to the nearest bf16 (ties to even).
    ///
    /// Panics if `w.len() != rows * cols`.
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Bf16Weight {
        assert_eq!(w.len(), rows * cols, "Bf16Weight: data is not [rows, cols]");
        let data = w
            .par_chunks(1 << 16)
            .flat_map_iter(|c| c.iter().map(|&v| bf16::from_f32(v)));
        Bf16Weight {
            rows,
            cols,
            data: data.collect(),
        }
    }

    /// Bytes of the weight.
    pub fn bytes(&self) -> usize {
        2 * self.data.len()
    }

    /// `y = bf16(x) · Wᵀ` for `x: [n, cols]`, `y: [n, rows]` (overwritten); see the module doc.
    ///
    /// Panics if the lengths disagree.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32]) {
        let (out_f, in_f) = (self.rows, self.cols);
        assert_eq!(x.len(), n * in_f, "bf16 matmul: x is not [n, in]");
        assert_eq!(y.len(), n * out_f, "bf16 matmul: y is not [n, out]");
        if n == 0 || out_f == 0 {
            return;
        }
        let mut xb = vec![bf16::ZERO; x.len()];
        round_slice(x, &mut xb);
        if n <= GEMV_M || rows_independent_on() {
            for (xs, ys) in xb.chunks(GEMV_M * in_f).zip(y.chunks_mut(GEMV_M * out_f)) {
                self.gemv(xs, xs.len() / in_f.max(1), ys);
            }
            return;
        }
        let w = MatRef::new(&self.data, out_f, in_f).t();
        gemm_bf16(
            MatMut::new(y, n, out_f),
            MatRef::new(&xb, n, in_f),
            w,
            false,
            1.0,
        );
    }

    /// [`Bf16Weight::matmul`] for any [`Real`]: f32 takes the bf16 kernels, f64 (gradient
    /// checks) the exact product by the widened weight.
    pub fn matmul_real<T: Real>(&self, x: &[T], n: usize, y: &mut [T]) {
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
            // SAFETY: T is f32 (checked just above): the same slices, retyped.
            let (x32, y32) = unsafe {
                (
                    std::slice::from_raw_parts(x.as_ptr() as *const f32, x.len()),
                    std::slice::from_raw_parts_mut(y.as_mut_ptr() as *mut f32, y.len()),
                )
            };
            return self.matmul(x32, n, y32);
        }
        super::quant::dequant_matmul(x, self, n, y)
    }

    /// `y[i, j] = Σ_p x[i, p] · W[j, p]` for `m ≤ GEMV_M` rounded rows `x: [m, cols]`.
    fn gemv(&self, x: &[bf16], m: usize, y: &mut [f32]) {
        let (n, k) = (self.rows, self.cols);
        // ~64 KiB of weights per task: both threads stream nearby rows, and stealing evens
        // out the end
        let cols_per_task = (32_768 / k.max(1)).clamp(8, n);
        // out: per task, its columns × m, column-major ([cols, m]); one row needs no scatter
        let mut out = if m == 1 {
            Vec::new()
        } else {
            vec![0f32; n * m]
        };
        let buf: &mut [f32] = if m == 1 { y } else { &mut out };
        let task = |t: usize, o: &mut [f32]| {
            let j0 = t * cols_per_task;
            columns(x, m, &self.data, k, j0, o);
        };
        if n * k >= 1 << 16 {
            buf.par_chunks_mut(cols_per_task * m)
                .enumerate()
                .for_each(|(t, o)| task(t, o));
        } else {
            buf.chunks_mut(cols_per_task * m)
                .enumerate()
                .for_each(|(t, o)| task(t, o));
        }
        if m > 1 {
            for (j, col) in out.chunks_exact(m).enumerate() {
                for (i, &v) in col.iter().enumerate() {
                    y[i * n + j] = v;
                }
            }
        }
    }
}

/// Columns `j0 .. j0 + out.len() / m` of `x · Wᵀ` into `out: [cols, m]`, with the vector
/// kernel of this CPU.
fn columns(x: &[bf16], m: usize, w: &[bf16], k: usize, j0: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_bf16_dot() {
            // SAFETY: AVX512-BF16 (and AVX-512 F/BW, which it implies here) is present.
            return unsafe { avx512::columns(x, m, w, k, j0, out) };
        }
        if super::simd::level() != super::simd::Level::Portable {
            // SAFETY: the level is AVX2 or AVX-512, so AVX2 and FMA are present.
            return unsafe { avx2::columns(x, m, w, k, j0, out) };
        }
    }
    portable_columns(x, m, w, k, j0, out)
}

/// The portable twin of [`columns`]: 8 lanes of partial sums per row.
fn portable_columns(x: &[bf16], m: usize, w: &[bf16], k: usize, j0: usize, out: &mut [f32]) {
    const L: usize = 8;
    let xf: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    let mut wf = vec![0f32; k];
    for (c, o) in out.chunks_exact_mut(m).enumerate() {
        let wj = &w[(j0 + c) * k..(j0 + c + 1) * k];
        wf.iter_mut().zip(wj).for_each(|(d, s)| *d = s.to_f32());
        for (i, oi) in o.iter_mut().enumerate() {
            let xi = &xf[i * k..(i + 1) * k];
            let mut acc = [0f32; L];
            for (p, (&a, &b)) in xi.iter().zip(&wf).enumerate() {
                acc[p % L] += a * b;
            }
            *oi = acc.iter().sum();
        }
    }
}

/// [`QuantMatrix`] so the generic dequant-matmul (the backward's `dy · W`, f64 products) can
/// take a bf16 weight: a row "dequantizes" by widening.
impl QuantMatrix for Bf16Weight {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    fn dequant_row<T: Real>(&self, r: usize, out: &mut [T]) {
        let row = &self.data[r * self.cols..(r + 1) * self.cols];
        out.iter_mut()
            .zip(row)
            .for_each(|(o, w)| *o = T::of(w.to_f64()));
    }
    fn row_dot<T: Real>(&self, r: usize, x: &[T]) -> T {
        let row = &self.data[r * self.cols..(r + 1) * self.cols];
        x.iter()
            .zip(row)
            .fold(T::zero(), |s, (&a, w)| s + a * T::of(w.to_f64()))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use half::bf16;
    use std::arch::x86_64::*;

    /// Activation rows dotted together with one weight row (`4 · G` accumulators in zmm).
    const G: usize = 4;

    /// [`super::columns`] with `vdpbf16ps`: one weight row at a time, dotted with the
    /// activation rows in groups of up to `G` (the row is read from memory for the first group
    /// and from L1 after). Every row's sum has the same order whatever `m`: 4 accumulators
    /// over 128-element steps, the tail in 32-element steps (masked) into the first, then
    /// `(a0 + a1) + (a2 + a3)` reduced.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn columns(
        x: &[bf16],
        m: usize,
        w: &[bf16],
        k: usize,
        j0: usize,
        out: &mut [f32],
    ) {
        let cols = out.len() / m;
        assert!(x.len() >= m * k && w.len() >= (j0 + cols) * k);
        for (c, o) in out.chunks_exact_mut(m).enumerate() {
            // SAFETY: the weight row holds k elements from wj, each x row k from its start.
            let wj = w.as_ptr().add((j0 + c) * k);
            for (g, og) in o.chunks_mut(G).enumerate() {
                let xg = x.as_ptr().add(g * G * k);
                match og.len() {
                    1 => dots::<1>(xg, wj, k, og),
                    2 => dots::<2>(xg, wj, k, og),
                    3 => dots::<3>(xg, wj, k, og),
                    _ => dots::<4>(xg, wj, k, og),
                }
            }
        }
    }

    /// 32 bf16 from `p`, or the `n < 32` first of them with zeros after (never reading past).
    #[inline(always)]
    unsafe fn load(p: *const bf16, n: usize) -> __m512bh {
        let v = if n >= 32 {
            _mm512_loadu_si512(p as *const __m512i)
        } else {
            _mm512_maskz_loadu_epi16((1u32 << n) - 1, p as *const i16)
        };
        std::mem::transmute::<__m512i, __m512bh>(v)
    }

    /// `out[i] = x_i · w` for the `M` rows `x_i` at `x + i·k` and the row `w`, all `[k]`.
    #[inline(always)]
    unsafe fn dots<const M: usize>(x: *const bf16, w: *const bf16, k: usize, out: &mut [f32]) {
        let mut acc = [[_mm512_setzero_ps(); 4]; M];
        let k128 = k / 128 * 128;
        let mut p = 0;
        while p < k128 {
            for u in 0..4 {
                let wv = load(w.add(p + 32 * u), 32);
                for (i, a) in acc.iter_mut().enumerate() {
                    a[u] = _mm512_dpbf16_ps(a[u], load(x.add(i * k + p + 32 * u), 32), wv);
                }
            }
            p += 128;
        }
        while p < k {
            let n = (k - p).min(32);
            let wv = load(w.add(p), n);
            for (i, a) in acc.iter_mut().enumerate() {
                a[0] = _mm512_dpbf16_ps(a[0], load(x.add(i * k + p), n), wv);
            }
            p += n;
        }
        for (o, a) in out.iter_mut().zip(acc) {
            let s = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
            *o = _mm512_reduce_add_ps(s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use half::bf16;
    use std::arch::x86_64::*;

    /// Activation rows dotted together with one weight row (`4 · G` accumulators in ymm).
    const G: usize = 2;

    /// [`super::columns`] with AVX2: 8 weights at a time widened to f32 (bf16 is the top half
    /// of an f32) for FMAs; one weight row at a time, the activation rows in groups of up to
    /// `G`. Every row's sum has the same order whatever `m`: 4 accumulators over 32-element
    /// steps, the 8-element steps of the tail into the first, `(a0 + a1) + (a2 + a3)` summed
    /// across lanes, then the last `k mod 8` products added one by one.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn columns(
        x: &[bf16],
        m: usize,
        w: &[bf16],
        k: usize,
        j0: usize,
        out: &mut [f32],
    ) {
        let cols = out.len() / m;
        assert!(x.len() >= m * k && w.len() >= (j0 + cols) * k);
        for (c, o) in out.chunks_exact_mut(m).enumerate() {
            // SAFETY: the weight row holds k elements from wj, each x row k from its start.
            let wj = w.as_ptr().add((j0 + c) * k);
            for (g, og) in o.chunks_mut(G).enumerate() {
                let xg = x.as_ptr().add(g * G * k);
                match og.len() {
                    1 => dots::<1>(xg, wj, k, og),
                    _ => dots::<2>(xg, wj, k, og),
                }
            }
        }
    }

    /// 8 bf16 at `p` widened to f32.
    #[inline(always)]
    unsafe fn widen(p: *const bf16) -> __m256 {
        let h = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
    }

    /// Horizontal sum of 8 lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
        _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)))
    }

    /// `out[i] = x_i · w` for the `M` rows `x_i` at `x + i·k` and the row `w`, all `[k]`.
    #[inline(always)]
    unsafe fn dots<const M: usize>(x: *const bf16, w: *const bf16, k: usize, out: &mut [f32]) {
        let mut acc = [[_mm256_setzero_ps(); 4]; M];
        let (k32, k8) = (k / 32 * 32, k / 8 * 8);
        let mut p = 0;
        while p < k32 {
            for u in 0..4 {
                let wv = widen(w.add(p + 8 * u));
                for (i, a) in acc.iter_mut().enumerate() {
                    a[u] = _mm256_fmadd_ps(widen(x.add(i * k + p + 8 * u)), wv, a[u]);
                }
            }
            p += 32;
        }
        while p < k8 {
            let wv = widen(w.add(p));
            for (i, a) in acc.iter_mut().enumerate() {
                a[0] = _mm256_fmadd_ps(widen(x.add(i * k + p)), wv, a[0]);
            }
            p += 8;
        }
        for (i, (o, a)) in out.iter_mut().zip(acc).enumerate() {
            let mut s = hsum(_mm256_add_ps(
                _mm256_add_ps(a[0], a[1]),
                _mm256_add_ps(a[2], a[3]),
            ));
            for q in k8..k {
                s += (*x.add(i * k + q)).to_f32() * (*w.add(q)).to_f32();
            }
            *o = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::rows_independent;
    use crate::testing::{rand_vec, Lcg};

    /// `bf16(x) · Wᵀ` in f64 over the rounded operands: every product exact.
    fn reference(x: &[f32], w: &Bf16Weight, n: usize) -> Vec<f64> {
        let (out_f, in_f) = (w.rows, w.cols);
        let mut y = vec![0.0; n * out_f];
        for t in 0..n {
            for o in 0..out_f {
                y[t * out_f + o] = (0..in_f)
                    .map(|i| {
                        bf16::from_f32(x[t * in_f + i]).to_f64() * w.data[o * in_f + i].to_f64()
                    })
                    .sum();
            }
        }
        y
    }

    /// Whether `got` is within f32 summation error of `want` (`k` terms of size ≤ `scale`).
    fn assert_sums(got: &[f32], want: &[f64], k: usize, what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &r)) in got.iter().zip(want).enumerate() {
            let tol = 4.0 * (k as f64) * f32::EPSILON as f64 + 1e-6;
            assert!(
                (g as f64 - r).abs() <= tol * (1.0 + r.abs()),
                "{what}: element {i}: {g} vs {r}"
            );
        }
    }

    #[test]
    fn products_match_the_rounded_reference() {
        let mut rng = Lcg::new(7);
        // k: under one vector, odd tails, several vectors; rows: 1..=8 (GEMV) and a prefill
        for &(out_f, in_f) in &[(9, 5), (33, 31), (40, 96), (257, 100), (64, 1030)] {
            let w32 = rand_vec::<f32>(&mut rng, out_f * in_f, 1.0);
            let w = Bf16Weight::from_f32(&w32, out_f, in_f);
            assert!(w
                .data
                .iter()
                .zip(&w32)
                .all(|(b, &f)| *b == bf16::from_f32(f)));
            for n in [1, 2, 3, 8, 9, 37] {
                let x = rand_vec::<f32>(&mut rng, n * in_f, 1.0);
                let mut y = vec![f32::NAN; n * out_f];
                w.matmul(&x, n, &mut y);
                let want = reference(&x, &w, n);
                assert_sums(&y, &want, in_f, &format!("{out_f}x{in_f}, n = {n}"));
            }
        }
    }

    #[test]
    fn row_independent_rows_equal_the_lone_row() {
        let mut rng = Lcg::new(11);
        let (out_f, in_f, n) = (70, 130, 13);
        let w = Bf16Weight::from_f32(&rand_vec::<f32>(&mut rng, out_f * in_f, 1.0), out_f, in_f);
        let x = rand_vec::<f32>(&mut rng, n * in_f, 1.0);
        let mut all = vec![0f32; n * out_f];
        rows_independent(|| w.matmul(&x, n, &mut all));
        for t in 0..n {
            let mut one = vec![0f32; out_f];
            w.matmul(&x[t * in_f..(t + 1) * in_f], 1, &mut one);
            assert_eq!(one, all[t * out_f..(t + 1) * out_f], "row {t}");
        }
    }

    #[test]
    fn f64_takes_the_widened_weight_exactly() {
        let mut rng = Lcg::new(3);
        let (out_f, in_f, n) = (12, 20, 3);
        let w = Bf16Weight::from_f32(&rand_vec::<f32>(&mut rng, out_f * in_f, 1.0), out_f, in_f);
        let x: Vec<f64> = rand_vec::<f32>(&mut rng, n * in_f, 1.0)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let mut y = vec![0f64; n * out_f];
        w.matmul_real(&x, n, &mut y);
        for t in 0..n {
            for o in 0..out_f {
                let want: f64 = (0..in_f)
                    .map(|i| x[t * in_f + i] * w.data[o * in_f + i].to_f64())
                    .sum();
                assert!((y[t * out_f + o] - want).abs() < 1e-12);
            }
        }
    }
}
