//! Flash attention forward and forward+backward TFLOP/s: bf16, causal, head dim 128, 16
//! heads (MHA), seq 1k/4k/8k with batch = 16384 / seq (about 16k tokens per call), as
//! FlashAttention's own benchmark. FLOPs as it counts them: forward `4·b·h·s²·d / 2` (causal
//! halves it), backward 2.5× the forward, so forward+backward is 3.5×.
//!
//! Needs the launchers of the cuda-attn branch: build with `--features bench-attn`.

use super::{BenchFn, Key};

/// Heads (hidden 2048 / head dim 128, as FlashAttention's benchmark).
pub const HEADS: usize = 16;
/// Head dim.
pub const HEAD_DIM: usize = 128;
/// Tokens per call (batch · seq).
pub const TOKENS: usize = 16384;

const KEYS: [Key; 6] = [
    (
        "attn_fwd_s1024",
        "flash attn fwd bf16 causal b16 h16 s1024 d128",
        "TFLOP/s",
    ),
    (
        "attn_fwd_s4096",
        "flash attn fwd bf16 causal b4 h16 s4096 d128",
        "TFLOP/s",
    ),
    (
        "attn_fwd_s8192",
        "flash attn fwd bf16 causal b2 h16 s8192 d128",
        "TFLOP/s",
    ),
    (
        "attn_fwdbwd_s1024",
        "flash attn fwd+bwd bf16 causal b16 h16 s1024 d128",
        "TFLOP/s",
    ),
    (
        "attn_fwdbwd_s4096",
        "flash attn fwd+bwd bf16 causal b4 h16 s4096 d128",
        "TFLOP/s",
    ),
    (
        "attn_fwdbwd_s8192",
        "flash attn fwd+bwd bf16 causal b2 h16 s8192 d128",
        "TFLOP/s",
    ),
];

/// The keys of this bench.
pub fn keys() -> Vec<Key> {
    KEYS.to_vec()
}

/// FlashAttention's forward FLOP count.
pub fn fwd_flops(batch: usize, heads: usize, seq: usize, dim: usize, causal: bool) -> f64 {
    let f = 4.0 * batch as f64 * heads as f64 * (seq as f64).powi(2) * dim as f64;
    if causal {
        f / 2.0
    } else {
        f
    }
}

/// The bench, or why this build has none.
#[cfg(feature = "bench-attn")]
pub const RUN: Result<BenchFn, &str> = Ok(enabled::run);
/// The bench, or why this build has none.
#[cfg(not(feature = "bench-attn"))]
pub const RUN: Result<BenchFn, &str> =
    Err("n/a (flash attention launcher not in this build: lmf-bench feature bench-attn)");

#[cfg(feature = "bench-attn")]
mod enabled {
    use super::super::timing::time_gpu;
    use super::super::{rand_vec, Ctx, Out, ATTN_SEQS};
    use super::*;
    use cudarc::driver::{CudaSlice, CudaView, CudaViewMut};
    use half::bf16;
    use lmf_kernels::cpu::attention::AttnParams;
    use lmf_kernels::cuda::Gpu;

    // ---- The launcher calls: the only lines to adjust if cuda-attn's signatures differ. ----

    /// `out: [total, heads, dim]`, `lse: [heads, total]` from `q, k, v: [total, heads, dim]`
    /// packed over `cu_seqlens: [batch + 1]`.
    #[allow(clippy::too_many_arguments)]
    fn fwd_call(
        gpu: &Gpu,
        q: &CudaView<bf16>,
        k: &CudaView<bf16>,
        v: &CudaView<bf16>,
        cu: &[usize],
        p: &AttnParams,
        out: &mut CudaViewMut<bf16>,
        lse: &mut CudaViewMut<f32>,
    ) -> anyhow::Result<()> {
        lmf_kernels::cuda::attention::attention_forward(gpu, q, k, v, cu, cu, p, out, lse)?;
        Ok(())
    }

    /// `dq, dk, dv` from `dout` and the forward's inputs, `out` and `lse`.
    #[allow(clippy::too_many_arguments)]
    fn bwd_call(
        gpu: &Gpu,
        dout: &CudaView<bf16>,
        q: &CudaView<bf16>,
        k: &CudaView<bf16>,
        v: &CudaView<bf16>,
        out: &CudaView<bf16>,
        lse: &CudaView<f32>,
        cu: &[usize],
        p: &AttnParams,
        dq: &mut CudaViewMut<bf16>,
        dk: &mut CudaViewMut<bf16>,
        dv: &mut CudaViewMut<bf16>,
    ) -> anyhow::Result<()> {
        lmf_kernels::cuda::attention::attention_backward(
            gpu, dout, q, k, v, out, lse, cu, cu, p, dq, dk, dv,
        )?;
        Ok(())
    }

    // ---- The bench. ----

    pub fn run(ctx: &mut Ctx, out: &mut Out) -> anyhow::Result<()> {
        for (i, &seq) in ATTN_SEQS.iter().enumerate() {
            one(ctx, out, seq, &KEYS[i], &KEYS[i + ATTN_SEQS.len()])?;
        }
        Ok(())
    }

    fn one(ctx: &mut Ctx, out: &mut Out, seq: usize, kf: &Key, kfb: &Key) -> anyhow::Result<()> {
        let gpu = ctx.gpu;
        let batch = (TOKENS / seq).max(1);
        let total = batch * seq;
        let n = total * HEADS * HEAD_DIM;
        let p = AttnParams {
            num_heads: HEADS,
            num_kv_heads: HEADS,
            head_dim: HEAD_DIM,
            causal: true,
            window: None,
            scale: 1.0 / (HEAD_DIM as f64).sqrt(),
            softcap: None,
        };
        let cu: Vec<usize> = (0..=batch).map(|b| b * seq).collect();
        let q = gpu.htod(&rand_vec::<bf16>(n, 11, 1.0))?;
        let k = gpu.htod(&rand_vec::<bf16>(n, 12, 1.0))?;
        let v = gpu.htod(&rand_vec::<bf16>(n, 13, 1.0))?;
        let dout = gpu.htod(&rand_vec::<bf16>(n, 14, 1.0))?;
        let mut o: CudaSlice<bf16> = gpu.zeros(n)?;
        let mut lse: CudaSlice<f32> = gpu.zeros(HEADS * total)?;
        let (mut dq, mut dk, mut dv) = (gpu.zeros(n)?, gpu.zeros(n)?, gpu.zeros(n)?);
        let flops = fwd_flops(batch, HEADS, seq, HEAD_DIM, true);
        let e = ctx.effort;

        let t = time_gpu(gpu, e.warmup, e.iters, |_| {
            fwd_call(
                gpu,
                &q.as_view(),
                &k.as_view(),
                &v.as_view(),
                &cu,
                &p,
                &mut o.as_view_mut(),
                &mut lse.as_view_mut(),
            )
        })?;
        let mut extra = t.json();
        extra["batch"] = serde_json::json!(batch);
        out.value(kf, t.rate(flops, 1e12), extra.clone());

        let t = time_gpu(gpu, e.warmup, e.iters, |_| {
            fwd_call(
                gpu,
                &q.as_view(),
                &k.as_view(),
                &v.as_view(),
                &cu,
                &p,
                &mut o.as_view_mut(),
                &mut lse.as_view_mut(),
            )?;
            bwd_call(
                gpu,
                &dout.as_view(),
                &q.as_view(),
                &k.as_view(),
                &v.as_view(),
                &o.as_view(),
                &lse.as_view(),
                &cu,
                &p,
                &mut dq.as_view_mut(),
                &mut dk.as_view_mut(),
                &mut dv.as_view_mut(),
            )
        })?;
        let mut extra2 = t.json();
        extra2["batch"] = extra["batch"].clone();
        out.value(kfb, t.rate(3.5 * flops, 1e12), extra2);
        Ok(())
    }
}
