//! f32 matmul throughput (criterion's elements/s here are FLOP/s: 2·m·k·n per product).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lmf_bench::{inputs, MATMUL_SHAPES};
use lmf_kernels::cpu::gemm::{gemm, MatMut, MatRef};

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
}

criterion_group!(benches, matmul);
criterion_main!(benches);
