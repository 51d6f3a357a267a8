//! The grouped expert GEMM of a mixture-of-experts layer (`lmf_kernels::cuda::grouped_gemm`)
//! on a Qwen3-MoE-30B-shaped layer: 128 experts, 4096 tokens × top-8 = 32768 routed rows,
//! hidden 2048 → gate+up 1536 (2 × moe_intermediate 768), bf16. PyTorch's side
//! (`bench/gpu/torch_ref.py`) runs the same products as a loop of dense matmuls over the
//! experts, as transformers' eager MoE does; the table's ratio is grouped / loop.
//!
//! Group sizes are uneven (between 192 and 320 rows) by a formula both sides share:
//! `count[e] = 256 + (37·e mod 129) − 64`, the last expert taking what is left.

use super::timing::time_gpu;
use super::{rand_vec, Ctx, Key, Out};
use half::bf16;
use lmf_kernels::cuda::grouped_gemm::{
    grouped_gemm_backward_w, grouped_gemm_backward_x, grouped_gemm_forward,
};

const FWD: Key = (
    "moe_grouped_fwd_bf16",
    "grouped GEMM bf16 fwd, 128 experts, 32768 rows, 2048→1536",
    "TFLOP/s",
);
const FWDBWD: Key = (
    "moe_grouped_fwdbwd_bf16",
    "grouped GEMM bf16 fwd + dx + dW, 128 experts, 32768 rows, 2048→1536",
    "TFLOP/s",
);

/// Experts, routed rows, input and output features.
const E: usize = 128;
const ROWS: usize = 32768;
const K: usize = 2048;
const N: usize = 1536;

/// The keys of [`moe`].
pub fn keys() -> Vec<Key> {
    vec![FWD, FWDBWD]
}

/// The group offsets of the bench (see the module doc).
pub fn offsets() -> Vec<usize> {
    let mut off = vec![0usize];
    for e in 0..E - 1 {
        off.push(off[e] + 256 + (37 * e) % 129 - 64);
    }
    off.push(ROWS);
    off
}

/// Forward alone, then forward + dx + dW, timed.
pub fn moe(ctx: &mut Ctx, out: &mut Out) -> anyhow::Result<()> {
    let gpu = ctx.gpu;
    let off = offsets();
    let x = gpu.htod(&rand_vec::<bf16>(ROWS * K, 1, 1.0))?;
    let w = gpu.htod(&rand_vec::<bf16>(E * N * K, 2, 0.05))?;
    let dy = gpu.htod(&rand_vec::<bf16>(ROWS * N, 3, 1.0))?;
    let mut y = gpu.zeros::<bf16>(ROWS * N)?;
    let mut dx = gpu.zeros::<bf16>(ROWS * K)?;
    let mut dw = gpu.zeros::<bf16>(E * N * K)?;
    let flops = 2.0 * (ROWS * N * K) as f64;
    for (key, backward) in [(&FWD, false), (&FWDBWD, true)] {
        let t = time_gpu(gpu, ctx.effort.warmup, ctx.effort.iters, |_| {
            let (xv, wv, dyv) = (x.as_view(), w.as_view(), dy.as_view());
            grouped_gemm_forward(gpu, &mut y.as_view_mut(), &xv, &wv, &off, (N, K))?;
            if backward {
                grouped_gemm_backward_x(gpu, &mut dx.as_view_mut(), &dyv, &wv, &off, (N, K))?;
                grouped_gemm_backward_w(gpu, &mut dw.as_view_mut(), &dyv, &xv, &off, (N, K))?;
            }
            Ok(())
        })?;
        let products = if backward { 3.0 } else { 1.0 };
        out.value(key, t.rate(products * flops, 1e12), t.json());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The offsets partition the rows, every group between 192 and 320 rows.
    #[test]
    fn offsets_partition_the_rows_unevenly() {
        let off = super::offsets();
        assert_eq!(off.len(), super::E + 1);
        assert_eq!(*off.last().unwrap(), super::ROWS);
        let sizes: Vec<usize> = off.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(sizes.iter().all(|&s| (192..=320).contains(&s)), "{sizes:?}");
        assert!(sizes.iter().any(|&s| s != 256));
    }
}
