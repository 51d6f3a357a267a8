//! cuBLASLt GEMM TFLOP/s and device copy bandwidth: the ceilings the other benches are read
//! against.

use super::timing::time_gpu;
use super::{rand_vec, Ctx, Key, Out};
use half::bf16;
use lmf_kernels::cuda::{gemm as lt_gemm, BlasFloat, GemmSpec};
use serde_json::json;

const GEMM_BF16: Key = (
    "gemm_bf16_8192",
    "cuBLASLt GEMM bf16 8192x8192x8192 (fp32 accumulate)",
    "TFLOP/s",
);
const GEMM_F32: Key = (
    "gemm_f32_4096",
    "cuBLASLt GEMM f32 4096x4096x4096 (exact fp32, no TF32)",
    "TFLOP/s",
);
const COPY: Key = (
    "copy_1gib",
    "device copy 1 GiB (bytes read + written)",
    "GB/s",
);

/// The keys of [`gemm`].
pub fn gemm_keys() -> Vec<Key> {
    vec![GEMM_BF16, GEMM_F32]
}

/// The keys of [`copy`].
pub fn copy_keys() -> Vec<Key> {
    vec![COPY]
}

fn one_gemm<T: BlasFloat>(ctx: &mut Ctx, out: &mut Out, key: &Key, n: usize) -> anyhow::Result<()> {
    let gpu = ctx.gpu;
    let a = gpu.htod(&rand_vec::<T>(n * n, 1, 1.0))?;
    let b = gpu.htod(&rand_vec::<T>(n * n, 2, 1.0))?;
    let mut c = gpu.zeros::<T>(n * n)?;
    let spec = GemmSpec::new(n, n, n, false, false);
    let t = time_gpu(gpu, ctx.effort.warmup, ctx.effort.iters, |_| {
        lt_gemm(gpu, &spec, &a.as_view(), &b.as_view(), &mut c.as_view_mut())?;
        Ok(())
    })?;
    let flops = 2.0 * (n as f64).powi(3);
    out.value(key, t.rate(flops, 1e12), t.json());
    Ok(())
}

/// `C = A·B` for square bf16 8192 and f32 4096 matrices (row-major, no transposes).
pub fn gemm(ctx: &mut Ctx, out: &mut Out) -> anyhow::Result<()> {
    one_gemm::<bf16>(ctx, out, &GEMM_BF16, 8192)?;
    one_gemm::<f32>(ctx, out, &GEMM_F32, 4096)
}

/// `cuMemcpyDtoDAsync` of 1 GiB; bandwidth counts the bytes read and the bytes written.
pub fn copy(ctx: &mut Ctx, out: &mut Out) -> anyhow::Result<()> {
    let gpu = ctx.gpu;
    let n = 1usize << 30;
    let src = gpu.zeros::<u8>(n)?;
    let mut dst = gpu.zeros::<u8>(n)?;
    let t = time_gpu(gpu, ctx.effort.warmup, ctx.effort.iters, |_| {
        gpu.stream().memcpy_dtod(&src, &mut dst)?;
        Ok(())
    })?;
    let gbs = t.rate(2.0 * n as f64, 1e9);
    ctx.copy_gbs = Some(gbs);
    let mut extra = t.json();
    extra["bytes_per_iter"] = json!(2 * n);
    out.value(&COPY, gbs, extra);
    Ok(())
}
