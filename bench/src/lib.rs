//! lmf bench: shared helpers for the criterion benches in `benches/` (one per kernel), the
//! matmul-vs-PyTorch comparison (`scripts/matmul_vs_torch.sh`), and, later, the end-to-end
//! throughput/memory harness.

use std::time::{Duration, Instant};

/// The f32 matmul shapes (m, k, n) compared against PyTorch: activations [2048, k] times a
/// weight [k, n], the sizes of a 1-2B model's projections at seq 2048.
pub const MATMUL_SHAPES: &[(usize, usize, usize)] = &[
    (2048, 512, 512),
    (2048, 2048, 512),
    (2048, 2048, 2048),
    (2048, 8192, 512),
    (2048, 512, 8192),
];

/// Deterministic inputs in [-1, 1) (Philox, so every run benches the same numbers).
pub fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    lmf_kernels::cpu::philox::fill_uniform(seed, 0, &mut v);
    v.iter_mut().for_each(|x| *x = 2.0 * *x - 1.0);
    v
}

/// Best wall time of `f` over runs lasting at least `budget` in total (after one warm-up).
pub fn best_time(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut best = Duration::MAX;
    while start.elapsed() < budget || best == Duration::MAX {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

pub mod gpu;
