//! NF4 dequantizing GEMV bandwidth: `y = x·dequant(W)ᵀ` with `W: [8192, 8192]` in NF4
//! (bitsandbytes layout, blocksize 64, plain f32 absmax), one bf16 input row. Bytes moved:
//! the packed weight + absmax + x + y; reported in GB/s and as a fraction of the copy
//! bandwidth measured by the `copy` bench (target ≥ 0.80).
//!
//! The weight (36 MiB with its absmax) fits in the H200's 60 MB L2, so the timed loop rotates
//! over 8 device copies (288 MiB): every GEMV reads its weight from DRAM.
//!
//! Needs the launcher of the cuda-quant branch: build with `--features bench-quant`.

use super::{BenchFn, Key};

/// Output features (rows of W).
pub const OUT_F: usize = 8192;
/// Input features (columns of W).
pub const IN_F: usize = 8192;
/// Elements per absmax block.
pub const BLOCKSIZE: usize = 64;
/// Weight copies the timed loop rotates over (defeats the L2).
pub const COPIES: usize = 8;

const GEMV: Key = (
    "gemv_nf4_8192",
    "NF4 dequant GEMV 8192x8192, 1 bf16 row (packed W + absmax + x + y)",
    "GB/s",
);

/// The keys of this bench.
pub fn keys() -> Vec<Key> {
    vec![GEMV]
}

/// The bytes one GEMV moves: packed weight + f32 absmax + bf16 x + bf16 y.
pub fn bytes() -> usize {
    OUT_F * IN_F / 2 + (OUT_F * IN_F).div_ceil(BLOCKSIZE) * 4 + IN_F * 2 + OUT_F * 2
}

/// The bench, or why this build has none.
#[cfg(feature = "bench-quant")]
pub const RUN: Result<BenchFn, &str> = Ok(enabled::run);
/// The bench, or why this build has none.
#[cfg(not(feature = "bench-quant"))]
pub const RUN: Result<BenchFn, &str> =
    Err("n/a (NF4 GEMV launcher not in this build: lmf-bench feature bench-quant)");

#[cfg(feature = "bench-quant")]
mod enabled {
    use super::super::timing::time_gpu;
    use super::super::{rand_vec, Ctx, Out};
    use super::*;
    use cudarc::driver::{CudaView, CudaViewMut};
    use half::bf16;
    use lmf_kernels::cpu::quant::{quantize_4bit, FourBit, Quant4};
    use lmf_kernels::cuda::quant::GpuQuant4;
    use lmf_kernels::cuda::Gpu;
    use serde_json::json;

    // ---- The launcher calls: the only lines to adjust if cuda-quant's signatures differ. ----

    /// The device copy of a 4-bit weight.
    fn upload(gpu: &Gpu, q: &Quant4) -> anyhow::Result<GpuQuant4> {
        Ok(GpuQuant4::upload(gpu, q)?)
    }

    /// `y: [1, OUT_F] = x: [1, IN_F] · dequant(W)ᵀ`.
    fn call(
        gpu: &Gpu,
        w: &GpuQuant4,
        x: &CudaView<bf16>,
        y: &mut CudaViewMut<bf16>,
    ) -> anyhow::Result<()> {
        lmf_kernels::cuda::quant::gemv_4bit(gpu, w, x, 1, y)?;
        Ok(())
    }

    // ---- The bench. ----

    pub fn run(ctx: &mut Ctx, out: &mut Out) -> anyhow::Result<()> {
        let gpu = ctx.gpu;
        let w = rand_vec::<f32>(OUT_F * IN_F, 31, 1.0);
        let q = quantize_4bit(&w, &[OUT_F, IN_F], FourBit::Nf4, BLOCKSIZE, false);
        drop(w);
        let copies = (0..COPIES)
            .map(|_| upload(gpu, &q))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let x = gpu.htod(&rand_vec::<bf16>(IN_F, 32, 1.0))?;
        let mut y = gpu.zeros::<bf16>(OUT_F)?;
        // One timed iteration = one GEMV on each copy (a single ~9 µs GEMV is too short to
        // time alone).
        let t = time_gpu(gpu, ctx.effort.warmup, ctx.effort.iters, |_| {
            for w in &copies {
                call(gpu, w, &x.as_view(), &mut y.as_view_mut())?;
            }
            Ok(())
        })?;
        let gbs = t.rate((COPIES * bytes()) as f64, 1e9);
        let mut extra = t.json();
        extra["bytes_per_iter"] = json!(COPIES * bytes());
        extra["gemvs_per_iter"] = json!(COPIES);
        extra["copy_gbs"] = json!(ctx.copy_gbs);
        extra["frac_of_copy"] = json!(ctx.copy_gbs.map(|c| gbs / c));
        out.value(&GEMV, gbs, extra);
        Ok(())
    }
}
