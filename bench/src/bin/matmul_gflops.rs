//! Prints our matmul GFLOP/s on `MATMUL_SHAPES`, one `m k n gflops` line per shape, for
//! `scripts/matmul_vs_torch.sh` to put beside PyTorch's numbers: f32 (`gemm`), or with the
//! argument `bf16` bf16 inputs with f32 accumulation and output (`gemm_bf16`).

use half::bf16;
use lmf_bench::{best_time, inputs, MATMUL_SHAPES};
use lmf_kernels::cpu::gemm::{gemm, MatMut, MatRef};
use lmf_kernels::cpu::gemm_bf16::gemm_bf16;
use std::time::Duration;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("bf16") {
        return bf16_main();
    }
    for &(m, k, n) in MATMUL_SHAPES {
        let a = inputs(m * k, 1);
        let b = inputs(k * n, 2);
        let mut c = vec![0.0f32; m * n];
        let t = best_time(Duration::from_secs(2), || {
            gemm(
                MatMut::new(&mut c, m, n),
                MatRef::new(&a, m, k),
                MatRef::new(&b, k, n),
                false,
                1.0,
            )
        });
        let gflops = 2.0 * (m * n * k) as f64 / t.as_secs_f64() / 1e9;
        println!("{m} {k} {n} {gflops:.1}");
    }
}

fn bf16_main() {
    for &(m, k, n) in MATMUL_SHAPES {
        let a: Vec<bf16> = inputs(m * k, 1).into_iter().map(bf16::from_f32).collect();
        let b: Vec<bf16> = inputs(k * n, 2).into_iter().map(bf16::from_f32).collect();
        let mut c = vec![0.0f32; m * n];
        let t = best_time(Duration::from_secs(2), || {
            gemm_bf16(
                MatMut::new(&mut c, m, n),
                MatRef::new(&a, m, k),
                MatRef::new(&b, k, n),
                false,
                1.0,
            )
        });
        let gflops = 2.0 * (m * n * k) as f64 / t.as_secs_f64() / 1e9;
        println!("{m} {k} {n} {gflops:.1}");
    }
}
