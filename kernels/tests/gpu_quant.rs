//! GPU quantized weights against their CPU twins (`cpu::quant`): NF4 and FP4, plain and
//! double-quantized absmax, blocksizes 32..4096 (and a non-power-of-two one), 8-bit blockwise,
//! LLM.int8 rows. Outputs are poisoned (NaN) first.
//!
//! - Dequantization must equal the CPU's bit for bit in f32, and the CPU's f32 rounded once in
//!   bf16/f16.
//! - Products (GEMV with 1, 3, 8 rows; the tiled path with 37 rows; dx = dy·W) are compared
//!   with the CPU twin run in f64 on the same (rounded) activations, for f32 and bf16. The
//!   tiled paths dequantize W into the activation dtype before the GEMM (as bnb does), so
//!   their reference is the CPU twin over W dequantized into that dtype (`Rounded`); the
//!   GEMV decodes W in f32, its reference uses W in f32.
//! - The rounding error of a K-term fp32 dot product grows like √K·eps·σ with σ ≈ ‖x‖‖w‖/√K
//!   the typical size of an output, so outputs near zero cannot be judged relative to
//!   themselves: each output passes when `|got − want| ≤ tol · max(|want|, ‖x‖‖w‖/K^¼)`
//!   (`assert_rel_close`'s rule with a per-output floor of K^¼·σ; tol = `tolerance(dtype)`;
//!   NaN never passes). An f32 error of one wrong weight (≈ σ/√K) is still 100× over it.
//!
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.

use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use lmf_kernels::cpu::quant::{self as cq, FourBit, QuantMatrix};
use lmf_kernels::cuda::quant::{self as gq, GpuInt8Rows, GpuQuant4, GpuQuantMatrix};
use lmf_kernels::cuda::testing::{gpu_or_skip, tolerance};
use lmf_kernels::cuda::{BlasFloat, Gpu, GpuFloat};
use lmf_kernels::testing::{rand_vec, Lcg};
use lmf_kernels::Real;

fn host<T: GpuFloat>(gpu: &Gpu, s: &CudaSlice<T>) -> Vec<f32> {
    gpu.dtoh(s).unwrap().iter().map(|v| v.to_f32()).collect()
}

/// `|got − want| ≤ rel · max(|want|, floor)` per output; NaN/inf never pass.
fn assert_dot_close(what: &str, got: &[f32], want: &[f64], floor: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &f)) in got.iter().zip(want).zip(floor).enumerate() {
        let g = g as f64;
        assert!(g.is_finite(), "{what}[{i}]: got {g} (want {w})");
        let bound = rel * w.abs().max(f).max(1e-30);
        assert!(
            (g - w).abs() <= bound,
            "{what}[{i}]: got {g}, want {w} (err {:.3e} > {bound:.3e})",
            (g - w).abs()
        );
    }
}

/// Bitwise equality of a GPU dequantization with the CPU's (rounded to T).
fn assert_same<T: GpuFloat>(what: &str, got: &[f32], want_f32: &[f32]) {
    assert_eq!(got.len(), want_f32.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want_f32).enumerate() {
        let w = T::of_f32(w).to_f32();
        assert!(
            g.to_bits() == w.to_bits(),
            "{what} {}[{i}]: got {g:e}, want {w:e}",
            T::SUFFIX
        );
    }
}

/// The CPU twin with W dequantized into the storage type `T` (what the tiled GPU path
/// multiplies): each dequantized value rounded once to `T`.
struct Rounded<'a, C: QuantMatrix, T: GpuFloat>(&'a C, std::marker::PhantomData<T>);

impl<C: QuantMatrix, T: GpuFloat> QuantMatrix for Rounded<'_, C, T> {
    fn dims(&self) -> (usize, usize) {
        self.0.dims()
    }
    fn dequant_row<R: Real>(&self, r: usize, out: &mut [R]) {
        let mut w = vec![0f32; out.len()];
        self.0.dequant_row(r, &mut w);
        for (o, v) in out.iter_mut().zip(w) {
            *o = R::of(T::of_f32(v).to_f32() as f64);
        }
    }
    fn row_dot<R: Real>(&self, r: usize, x: &[R]) -> R {
        let mut w = vec![R::zero(); x.len()];
        self.dequant_row(r, &mut w);
        x.iter().zip(&w).map(|(&a, &b)| a * b).sum()
    }
}

/// Euclidean norms of the `rows` rows of `a: [rows, cols]`.
fn row_norms<V: Copy + Into<f64>>(a: &[V], rows: usize, cols: usize) -> Vec<f64> {
    (0..rows)
        .map(|r| {
            a[r * cols..(r + 1) * cols]
                .iter()
                .map(|&v| v.into() * v.into())
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

/// Norms of the columns of `a: [rows, cols]`.
fn col_norms<V: Copy + Into<f64>>(a: &[V], rows: usize, cols: usize) -> Vec<f64> {
    let mut s = vec![0f64; cols];
    for r in 0..rows {
        for (c, &v) in a[r * cols..(r + 1) * cols].iter().enumerate() {
            s[c] += v.into() * v.into();
        }
    }
    s.iter().map(|v| v.sqrt()).collect()
}

fn rand_t<T: GpuFloat>(rng: &mut Lcg, n: usize) -> (Vec<T>, Vec<f64>) {
    let x: Vec<T> = rand_vec::<f64>(rng, n, 1.0)
        .iter()
        .map(|&v| T::of_f32(v as f32))
        .collect();
    let xf = x.iter().map(|v| v.to_f32() as f64).collect();
    (x, xf)
}

/// y = x·Wᵀ (GEMV for n ≤ 8, tiled for 37, both through `dequant_matmul` and directly) and
/// dx = dy·W against the CPU twin in f64. `wd`: W dequantized on the CPU (f32).
fn check_products<T: BlasFloat, Q: GpuQuantMatrix, C: QuantMatrix>(
    gpu: &Gpu,
    what: &str,
    gw: &Q,
    cw: &C,
    wd: &[f32],
    rng: &mut Lcg,
) {
    let (out_f, in_f) = cw.dims();
    assert_eq!(gw.dims().unwrap(), (out_f, in_f));
    let cw_t = Rounded::<C, T>(cw, std::marker::PhantomData);
    let (wr, wc) = (row_norms(wd, out_f, in_f), col_norms(wd, out_f, in_f));
    let tol = tolerance(T::SUFFIX);
    let small_tile = if out_f <= 64 { 7 } else { 300 };
    for n in [1, 3, 8, 37] {
        let tag = format!("{what} {} n={n}", T::SUFFIX);
        // y = x·Wᵀ
        let (x, xf) = rand_t::<T>(rng, n * in_f);
        let mut want = vec![0f64; n * out_f];
        if n <= gq::GEMV_MAX_ROWS {
            cq::dequant_matmul(&xf, cw, n, &mut want);
        } else {
            cq::dequant_matmul(&xf, &cw_t, n, &mut want);
        }
        let xn = row_norms(&xf, n, in_f);
        let sk = (in_f.max(1) as f64).powf(0.25);
        let floor: Vec<f64> = (0..n * out_f)
            .map(|i| xn[i / out_f] * wr[i % out_f] / sk)
            .collect();
        let xd = gpu.htod(&x).unwrap();
        let mut y = gpu.poisoned::<T>(n * out_f).unwrap();
        gq::dequant_matmul(gpu, &xd.as_view(), gw, n, &mut y.as_view_mut()).unwrap();
        assert_dot_close(&format!("{tag} y"), &host(gpu, &y), &want, &floor, tol);
        let mut y = gpu.poisoned::<T>(n * out_f).unwrap();
        if n <= gq::GEMV_MAX_ROWS {
            // x at an odd element offset: not 16-byte aligned, the general GEMV kernel
            let mut xpad = vec![T::default()];
            xpad.extend_from_slice(&x);
            let xpd = gpu.htod(&xpad).unwrap();
            gw.gemv(gpu, &xpd.slice(1..), n, &mut y.as_view_mut())
                .unwrap();
            assert_dot_close(
                &format!("{tag} y (unaligned x)"),
                &host(gpu, &y),
                &want,
                &floor,
                tol,
            );
        } else {
            gq::dequant_matmul_tiled(gpu, &xd.as_view(), gw, n, &mut y.as_view_mut(), small_tile)
                .unwrap();
            assert_dot_close(
                &format!("{tag} y (tile {small_tile})"),
                &host(gpu, &y),
                &want,
                &floor,
                tol,
            );
        }

        // dx = dy·W
        let (dy, dyf) = rand_t::<T>(rng, n * out_f);
        let mut want = vec![0f64; n * in_f];
        cq::dequant_matmul_t(&dyf, &cw_t, n, &mut want);
        let dyn_ = row_norms(&dyf, n, out_f);
        let so = (out_f.max(1) as f64).powf(0.25);
        let floor: Vec<f64> = (0..n * in_f)
            .map(|i| dyn_[i / in_f] * wc[i % in_f] / so)
            .collect();
        let dyd = gpu.htod(&dy).unwrap();
        for tile in [gq::tile_rows(out_f, in_f), small_tile] {
            let mut dx = gpu.poisoned::<T>(n * in_f).unwrap();
            gq::dequant_matmul_t_tiled(gpu, &dyd.as_view(), gw, n, &mut dx.as_view_mut(), tile)
                .unwrap();
            assert_dot_close(
                &format!("{tag} dx (tile {tile})"),
                &host(gpu, &dx),
                &want,
                &floor,
                tol,
            );
        }
        let mut dx = gpu.poisoned::<T>(n * in_f).unwrap();
        gq::dequant_matmul_t(gpu, &dyd.as_view(), gw, n, &mut dx.as_view_mut()).unwrap();
        assert_dot_close(&format!("{tag} dx"), &host(gpu, &dx), &want, &floor, tol);
    }
}

/// Whole-tensor and partial (odd start) dequantization in f32/bf16/f16, bit-exact.
fn check_dequant4(gpu: &Gpu, what: &str, q: &cq::Quant4, gw: &GpuQuant4) {
    let want = cq::dequantize_4bit(q);
    let n = want.len();
    fn one<T: GpuFloat>(gpu: &Gpu, what: &str, gw: &GpuQuant4, want: &[f32], start: usize) {
        let mut out = gpu.poisoned::<T>(want.len()).unwrap();
        gq::dequantize_4bit(gpu, gw, start, &mut out.as_view_mut()).unwrap();
        assert_same::<T>(
            &format!("{what} dequant from {start}"),
            &host(gpu, &out),
            want,
        );
    }
    one::<f32>(gpu, what, gw, &want, 0);
    one::<bf16>(gpu, what, gw, &want, 0);
    one::<f16>(gpu, what, gw, &want, 0);
    let (start, len) = ((n / 3) | 1, n / 2);
    if start + len <= n {
        one::<f32>(gpu, what, gw, &want[start..start + len], start);
        one::<bf16>(gpu, what, gw, &want[start..start + len], start);
    }
}

fn check_4bit(
    gpu: &Gpu,
    kind: FourBit,
    dq: bool,
    bs: usize,
    (out_f, in_f): (usize, usize),
    products: bool,
) {
    let mut rng = Lcg::new((out_f * 131 + in_f * 7 + bs) as u64);
    // block scales vary 0.1..1 so the absmax (and the nested quantization) matters
    let w: Vec<f32> = (0..out_f * in_f)
        .map(|k| (rng.sym(1.0) * (0.1 + 0.9 * ((k / 61) % 10) as f64 / 9.0)) as f32)
        .collect();
    let q = cq::quantize_4bit(&w, &[out_f, in_f], kind, bs, dq);
    let gw = GpuQuant4::upload(gpu, &q).unwrap();
    let what = format!("{} dq={dq} bs={bs} {out_f}x{in_f}", kind.name());
    check_dequant4(gpu, &what, &q, &gw);
    if products {
        let wd = cq::dequantize_4bit(&q);
        check_products::<f32, _, _>(gpu, &what, &gw, &q, &wd, &mut rng);
        check_products::<bf16, _, _>(gpu, &what, &gw, &q, &wd, &mut rng);
    }
}

#[test]
fn four_bit_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("four_bit_matches_cpu_twin") else {
        return;
    };
    for kind in [FourBit::Nf4, FourBit::Fp4] {
        for dq in [false, true] {
            for bs in [64, 128] {
                for shape in [(1, 64), (33, 192), (1000, 4096)] {
                    check_4bit(&gpu, kind, dq, bs, shape, true);
                }
            }
            // other blocksizes bnb allows, blocks straddling rows (192 % 128, 4096 > 192)
            for bs in [32, 256, 4096] {
                check_4bit(&gpu, kind, dq, bs, (33, 192), true);
            }
            // the general GEMV: in % 32 != 0, odd in (rows start mid-byte), blocksize 96
            check_4bit(&gpu, kind, dq, 64, (33, 100), true);
            check_4bit(&gpu, kind, dq, 64, (17, 33), true);
            check_4bit(&gpu, kind, dq, 96, (33, 192), true);
        }
    }
    // an odd element count dequantizes too (the padded last nibble is never read)
    check_4bit(&gpu, FourBit::Nf4, true, 64, (3, 1001), false);
}

#[test]
fn blockwise_8bit_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("blockwise_8bit_matches_cpu_twin") else {
        return;
    };
    let code = cq::dynamic_map_signed();
    let mut rng = Lcg::new(3);
    for (n, bs) in [(700, 256), (1000, 64), (1, 256), (999, 100)] {
        let x: Vec<f32> = rand_vec(&mut rng, n, 3.0);
        let (q, absmax) = cq::quantize_blockwise_8bit(&x, &code, bs);
        let want = cq::dequantize_blockwise_8bit(&q, &absmax, &code, bs);
        let (qd, ad, cd) = (
            gpu.htod(&q).unwrap(),
            gpu.htod(&absmax).unwrap(),
            gpu.htod(&code).unwrap(),
        );
        fn one<T: GpuFloat>(
            gpu: &Gpu,
            (qd, ad, cd): (&CudaSlice<u8>, &CudaSlice<f32>, &CudaSlice<f32>),
            bs: usize,
            want: &[f32],
        ) {
            let mut out = gpu.poisoned::<T>(want.len()).unwrap();
            gq::dequantize_blockwise_8bit(
                gpu,
                &qd.as_view(),
                &ad.as_view(),
                &cd.as_view(),
                bs,
                &mut out.as_view_mut(),
            )
            .unwrap();
            assert_same::<T>(
                &format!("8-bit n={} bs={bs}", want.len()),
                &host(gpu, &out),
                want,
            );
        }
        one::<f32>(&gpu, (&qd, &ad, &cd), bs, &want);
        one::<bf16>(&gpu, (&qd, &ad, &cd), bs, &want);
        one::<f16>(&gpu, (&qd, &ad, &cd), bs, &want);
    }
}

#[test]
fn int8_rows_match_cpu_twin() {
    let Some(gpu) = gpu_or_skip("int8_rows_match_cpu_twin") else {
        return;
    };
    // 64/192/4096: the 16-byte GEMV; 47: the general one
    for (out_f, in_f) in [(1, 64), (33, 192), (1000, 4096), (29, 47)] {
        let mut rng = Lcg::new((out_f * 17 + in_f) as u64);
        let w: Vec<f32> = (0..out_f * in_f)
            .map(|k| (rng.sym(1.0) * (1 + (k / in_f) % 5) as f64) as f32)
            .collect();
        let q = cq::quantize_int8_rows(&w, out_f, in_f);
        let gw = GpuInt8Rows::upload(&gpu, &q).unwrap();
        let want = cq::dequantize_int8_rows(&q);
        let what = format!("int8 {out_f}x{in_f}");
        fn one<T: GpuFloat>(gpu: &Gpu, what: &str, gw: &GpuInt8Rows, want: &[f32], r0: usize) {
            let mut out = gpu.poisoned::<T>(want.len()).unwrap();
            gq::dequantize_int8_rows(gpu, gw, r0, &mut out.as_view_mut()).unwrap();
            assert_same::<T>(&format!("{what} rows from {r0}"), &host(gpu, &out), want);
        }
        one::<f32>(&gpu, &what, &gw, &want, 0);
        one::<bf16>(&gpu, &what, &gw, &want, 0);
        one::<f16>(&gpu, &what, &gw, &want, 0);
        if out_f > 2 {
            // rows 1 .. out_f - 1
            one::<f32>(&gpu, &what, &gw, &want[in_f..(out_f - 1) * in_f], 1);
        }
        check_products::<f32, _, _>(&gpu, &what, &gw, &q, &want, &mut rng);
        check_products::<bf16, _, _>(&gpu, &what, &gw, &q, &want, &mut rng);
    }
}

#[test]
fn gemv_runs_on_a_large_nf4_weight() {
    let Some(gpu) = gpu_or_skip("gemv_runs_on_a_large_nf4_weight") else {
        return;
    };
    // 8192x8192 NF4 with double quant (the decode bench's shape), one bf16 input row
    let (out_f, in_f) = (8192, 8192);
    let mut rng = Lcg::new(77);
    let w: Vec<f32> = rand_vec(&mut rng, out_f * in_f, 0.05);
    let q = cq::quantize_4bit(&w, &[out_f, in_f], FourBit::Nf4, 64, true);
    let gw = GpuQuant4::upload(&gpu, &q).unwrap();
    assert_eq!(
        gw.weight_bytes(),
        out_f * in_f / 2 + out_f * in_f / 64 + 4 * (out_f * in_f / 64).div_ceil(256)
    );
    let (x, xf) = rand_t::<bf16>(&mut rng, in_f);
    let xd = gpu.htod(&x).unwrap();
    let mut y = gpu.poisoned::<bf16>(out_f).unwrap();
    gq::gemv_4bit(&gpu, &gw, &xd.as_view(), 1, &mut y.as_view_mut()).unwrap();
    let mut want = vec![0f64; out_f];
    cq::dequant_matmul(&xf, &q, 1, &mut want);
    let wr = row_norms(&cq::dequantize_4bit(&q), out_f, in_f);
    let xn = row_norms(&xf, 1, in_f)[0];
    let floor: Vec<f64> = wr
        .iter()
        .map(|r| r * xn / (in_f as f64).powf(0.25))
        .collect();
    assert_dot_close(
        "nf4 8192x8192 gemv bf16",
        &host(&gpu, &y),
        &want,
        &floor,
        tolerance("bf16"),
    );
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let Some(gpu) = gpu_or_skip("bad_shapes_are_errors_not_panics") else {
        return;
    };
    let w = cq::quantize_4bit(&[0.5; 64 * 4], &[4, 64], FourBit::Nf4, 64, false);
    let gw = GpuQuant4::upload(&gpu, &w).unwrap();
    let x = gpu.zeros::<f32>(9 * 64).unwrap();
    let mut y = gpu.zeros::<f32>(9 * 4).unwrap();
    // 9 rows is more than the GEMV takes; a wrong x length; a range past the end
    assert!(gq::gemv_4bit(&gpu, &gw, &x.as_view(), 9, &mut y.as_view_mut()).is_err());
    assert!(gq::gemv_4bit(&gpu, &gw, &x.slice(..63), 1, &mut y.slice_mut(..4)).is_err());
    let mut out = gpu.zeros::<f32>(200).unwrap();
    assert!(gq::dequantize_4bit(&gpu, &gw, 100, &mut out.as_view_mut()).is_err());
    // 9 rows through dequant_matmul take the tiled path and are fine
    gq::dequant_matmul(&gpu, &x.as_view(), &gw, 9, &mut y.as_view_mut()).unwrap();
    let y = gpu.dtoh(&y).unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
}
