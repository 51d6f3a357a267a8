//! Matmul throughput, f32 (`gemm`), bf16 inputs with f32 accumulation (`gemm_bf16`), and f32
//! inputs rounded to bf16 on the way in (`gemm_rounded`, what `bf16: true` trains with; here
//! as training's `x · Wᵀ`, the weight stored `[n, k]`)
//! (criterion's elements/s here are FLOP/s: 2·m·k·n per product); and decoding's few-row
//! products by a weight stored `[n, k]`, in f32 (`gemm`'s skinny path) and with the weight
//! kept in bf16 (`Bf16Weight`), whose throughput is the weight bytes streamed per second
//! (the weights are larger than the caches).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use half::bf16;
use lmf_bench::{inputs, MATMUL_SHAPES};
use lmf_kernels::cpu::bf16_weight::Bf16Weight;
use lmf_kernels::cpu::gemm::{gemm, MatMut, MatRef};
use lmf_kernels::cpu::gemm_bf16::{gemm_bf16, gemm_rounded};

fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul_f32");
    g.sample_size(10);
    for &(m, k, n) in MATMUL_SHAPES {
        let a = inputs(m * k, 1);
        let b = inputs(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        g.bench_function(format!("{m}x{k}x{n}"), |bch| {
            bch.iter(|| {
                gemm(
                    MatMut::new(&mut out, m, n),
                    MatRef::new(&a, m, k),
                    MatRef::new(&b, k, n),
                    false,
                    1.0,
                )
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("matmul_bf16");
    g.sample_size(10);
    for &(m, k, n) in MATMUL_SHAPES {
        let a: Vec<bf16> = inputs(m * k, 1).into_iter().map(bf16::from_f32).collect();
        let b: Vec<bf16> = inputs(k * n, 2).into_iter().map(bf16::from_f32).collect();
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        g.bench_function(format!("{m}x{k}x{n}"), |bch| {
            bch.iter(|| {
                gemm_bf16(
                    MatMut::new(&mut out, m, n),
                    MatRef::new(&a, m, k),
                    MatRef::new(&b, k, n),
                    false,
                    1.0,
                )
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("matmul_f32_as_bf16");
    g.sample_size(10);
    for &(m, k, n) in MATMUL_SHAPES {
        let a = inputs(m * k, 1);
        let w = inputs(n * k, 2);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        g.bench_function(format!("{m}x{k}x{n}"), |bch| {
            bch.iter(|| {
                gemm_rounded(
                    MatMut::new(&mut out, m, n),
                    MatRef::new(&a, m, k),
                    MatRef::new(&w, n, k).t(),
                    false,
                    1.0,
                )
            })
        });
    }
    g.finish();
}

/// `(m, k, n)` of decode products: a 7B MLP's up projection and a 32000-word head.
const GEMV_SHAPES: &[(usize, usize, usize)] =
    &[(1, 4096, 11008), (1, 2048, 32000), (4, 4096, 11008)];

fn gemv(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemv_f32");
    g.sample_size(10);
    for &(m, k, n) in GEMV_SHAPES {
        let x = inputs(m * k, 1);
        let w = inputs(n * k, 2);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Bytes(4 * (n * k) as u64));
        g.bench_function(format!("{m}x{k}x{n}"), |bch| {
            bch.iter(|| {
                gemm(
                    MatMut::new(&mut out, m, n),
                    MatRef::new(&x, m, k),
                    MatRef::new(&w, n, k).t(),
                    false,
                    1.0,
                )
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("gemv_bf16_weight");
    g.sample_size(10);
    for &(m, k, n) in GEMV_SHAPES {
        let x = inputs(m * k, 1);
        let w = Bf16Weight::from_f32(&inputs(n * k, 2), n, k);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Bytes(w.bytes() as u64));
        g.bench_function(format!("{m}x{k}x{n}"), |bch| {
            bch.iter(|| w.matmul(&x, m, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, matmul, gemv);
criterion_main!(benches);
