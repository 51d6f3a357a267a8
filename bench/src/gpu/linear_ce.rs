//! Fused linear + cross-entropy forward+backward: time and peak memory at vocab 128256,
//! 8192 tokens, hidden 4096, bf16 (the lm_head of a Llama-3 8B at seq 8k). Peak memory is the
//! device pool's high-water mark during one call, inputs (x, w, labels) and gradients (dx, dw)
//! included, as `torch.cuda.max_memory_allocated` counts them on the PyTorch side.
//!
//! Needs the launcher of the cuda-ce-lora branch: build with `--features bench-linear-ce`.

use super::{BenchFn, Key};

/// Tokens.
pub const TOKENS: usize = 8192;
/// Hidden size.
pub const HIDDEN: usize = 4096;
/// Vocabulary (Llama 3).
pub const VOCAB: usize = 128256;

const TIME: Key = (
    "ce_fwdbwd_ms",
    "fused linear-CE fwd+bwd bf16 8192 tok x 4096 -> 128256",
    "ms",
);
const PEAK: Key = (
    "ce_peak_gib",
    "fused linear-CE fwd+bwd peak memory (inputs + grads included)",
    "GiB",
);

/// The keys of this bench.
pub fn keys() -> Vec<Key> {
    vec![TIME, PEAK]
}

/// The bench, or why this build has none.
#[cfg(feature = "bench-linear-ce")]
pub const RUN: Result<BenchFn, &str> = Ok(enabled::run);
/// The bench, or why this build has none.
#[cfg(not(feature = "bench-linear-ce"))]
pub const RUN: Result<BenchFn, &str> =
    Err("n/a (fused linear-CE launcher not in this build: lmf-bench feature bench-linear-ce)");

#[cfg(feature = "bench-linear-ce")]
mod enabled {
    use super::super::timing::{gib, time_gpu};
    use super::super::{rand_vec, Ctx, Out};
    use super::*;
    use cudarc::driver::{CudaView, CudaViewMut};
    use half::bf16;
    use lmf_kernels::cpu::linear_ce::CeOptions;
    use lmf_kernels::cuda::Gpu;
    use serde_json::json;

    // ---- The launcher call: the only lines to adjust if cuda-ce-lora's signature differs. ----

    /// Loss of `x·wᵀ` against `labels`; `dx: [n, hidden]` overwritten, `dw: [vocab, hidden]`
    /// accumulated, both scaled by `grad_scale` (the CPU twin's `linear_ce_fwd_bwd`).
    #[allow(clippy::too_many_arguments)]
    fn call(
        gpu: &Gpu,
        x: &CudaView<bf16>,
        w: &CudaView<bf16>,
        labels: &CudaView<i64>,
        opts: &CeOptions,
        grad_scale: f32,
        dx: &mut CudaViewMut<bf16>,
        dw: &mut CudaViewMut<bf16>,
    ) -> anyhow::Result<()> {
        lmf_kernels::cuda::linear_ce::linear_ce_fwd_bwd(
            gpu,
            x,
            w,
            labels,
            TOKENS,
            HIDDEN,
            VOCAB,
            opts,
            grad_scale,
            Some(dx),
            Some(dw),
        )?;
        Ok(())
    }

    // ---- The bench. ----

    pub fn run(ctx: &mut Ctx, out: &mut Out) -> anyhow::Result<()> {
        let gpu = ctx.gpu;
        let x = gpu.htod(&rand_vec::<bf16>(TOKENS * HIDDEN, 21, 1.0))?;
        let w = gpu.htod(&rand_vec::<bf16>(VOCAB * HIDDEN, 22, 0.02))?;
        // Labels spread over the vocabulary (a multiplicative hash of the position).
        let labels: Vec<i64> = (0..TOKENS)
            .map(|i| ((i as u64).wrapping_mul(2654435761) % VOCAB as u64) as i64)
            .collect();
        let labels = gpu.htod(&labels)?;
        let mut dx = gpu.zeros::<bf16>(TOKENS * HIDDEN)?;
        let mut dw = gpu.zeros::<bf16>(VOCAB * HIDDEN)?;
        let opts = CeOptions::default();
        let scale = 1.0 / TOKENS as f32;
        let mut step = || {
            call(
                gpu,
                &x.as_view(),
                &w.as_view(),
                &labels.as_view(),
                &opts,
                scale,
                &mut dx.as_view_mut(),
                &mut dw.as_view_mut(),
            )
        };
        // Peak: one call after a warm-up (which creates any cached workspaces).
        step()?;
        gpu.sync()?;
        let inputs = gpu.used_bytes();
        gpu.reset_peak();
        step()?;
        gpu.sync()?;
        let peak = gpu.peak_bytes();
        let t = time_gpu(gpu, ctx.effort.warmup, ctx.effort.iters, |_| step())?;
        out.value(&TIME, t.median_ms, t.json());
        if peak == 0 {
            // No stream-ordered pool on this device: nothing counts the bytes.
            out.missing(&PEAK, "n/a", "n/a (no memory pool: peak bytes not counted)");
        } else {
            out.value(
                &PEAK,
                gib(peak),
                json!({"inputs_gib": gib(inputs), "above_inputs_gib": gib(peak.saturating_sub(inputs))}),
            );
        }
        Ok(())
    }
}
