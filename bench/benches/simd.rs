//! lmf's own vector code (`kernels/src/cpu/simd/`) against what it replaced, one thread:
//! - `exp` of 1 Mi floats in [−20, 20]: the vector `exp` (at the CPU's level, `LMF_SIMD`
//!   caps it) against the scalar loop of `f32::exp` (the platform's libm);
//! - the softmax row of attention's online softmax (max, then `exp(x − max)` and its sum)
//!   over 64-wide rows;
//! - one attention tile product, 64 × 64 · 64 × 64 (accumulated, as `P·V`): `tile_gemm`
//!   against `gemm_serial` (the `gemm` crate, which packs on every call).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lmf_bench::inputs;
use lmf_kernels::cpu::gemm::{gemm_serial, MatMut, MatRef};
use lmf_kernels::cpu::simd::{exp_in_place, exp_shift_sum, max_of, tile_gemm};
use std::hint::black_box;

fn math(c: &mut Criterion) {
    let n = 1 << 20;
    let x: Vec<f32> = inputs(n, 7).iter().map(|v| 20.0 * v).collect();
    let mut y = x.clone();
    let mut g = c.benchmark_group("exp_1Mi_f32");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("vector", |b| {
        b.iter(|| {
            y.copy_from_slice(&x);
            exp_in_place(&mut y);
            black_box(&y);
        })
    });
    g.bench_function("scalar_libm", |b| {
        b.iter(|| {
            for (o, v) in y.iter_mut().zip(&x) {
                *o = v.exp();
            }
            black_box(&y);
        })
    });
    g.bench_function("softmax_rows_64", |b| {
        b.iter(|| {
            y.copy_from_slice(&x);
            let mut total = 0.0f32;
            for row in y.chunks_mut(64) {
                let m = max_of(row, f32::NEG_INFINITY);
                total += exp_shift_sum(row, m);
            }
            black_box(total)
        })
    });
    g.finish();

    let (m, k, nn) = (64, 64, 64);
    let (a, bm) = (inputs(m * k, 1), inputs(k * nn, 2));
    let mut out = vec![0f32; m * nn];
    let mut g = c.benchmark_group("tile_product_64x64x64_f32");
    g.throughput(Throughput::Elements((2 * m * k * nn) as u64));
    g.bench_function("tile_gemm", |b| {
        b.iter(|| {
            tile_gemm(
                MatMut::new(&mut out, m, nn),
                MatRef::new(&a, m, k),
                MatRef::new(&bm, k, nn),
                true,
                1.0,
            )
        })
    });
    g.bench_function("gemm_serial", |b| {
        b.iter(|| {
            gemm_serial(
                MatMut::new(&mut out, m, nn),
                MatRef::new(&a, m, k),
                MatRef::new(&bm, k, nn),
                true,
                1.0,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, math);
criterion_main!(benches);
