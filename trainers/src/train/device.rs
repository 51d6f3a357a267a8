//! Where `lmf train` runs and in which dtype, as LLaMA-Factory decides: the first visible
//! CUDA device when there is one (single-device training; `CUDA_VISIBLE_DEVICES` is honoured
//! by the driver), else the CPU. `use_cpu: true` (transformers' argument) means the CPU;
//! otherwise `LMF_DEVICE` (`cpu`, `cuda`, `cuda:N`) overrides the choice.
//!
//! On a GPU the model computes in bf16 or fp16 when `bf16`/`fp16` is set (LLaMA-Factory's
//! compute dtype), with fp32 master weights and fp32 optimizer state; otherwise in fp32.
//! On the CPU training is fp32.

use crate::error::{Error, Result};
use lmf_kernels::cuda;
use lmf_runtime::{DType, Device};

/// The training device: the CPU with `use_cpu`, else `LMF_DEVICE` when set, else cuda:0 if a
/// CUDA device is visible, else the CPU.
pub fn train_device(use_cpu: bool) -> Result<Device> {
    if use_cpu {
        return Ok(Device::Cpu);
    }
    match std::env::var("LMF_DEVICE") {
        Ok(v) => parse_device(&v),
        Err(_) => Ok(if cuda::device_count() > 0 && cuda::Gpu::get(0).is_ok() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
    }
}

/// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`; an unknown name or an absent device is an error
/// naming `LMF_DEVICE`.
pub fn parse_device(v: &str) -> Result<Device> {
    let dev = match v.trim() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        s => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Error::Msg(format!(
                    "LMF_DEVICE={v}: expected `cpu`, `cuda` or `cuda:N`"
                ))
            })?,
    };
    cuda::Gpu::get(dev).map_err(|e| Error::Msg(format!("LMF_DEVICE={v}: {e}")))?;
    Ok(Device::Cuda(dev))
}

/// The model's compute dtype on `device` given the `bf16` / `fp16` arguments.
pub fn compute_dtype(device: Device, bf16: bool, fp16: bool) -> DType {
    match device {
        Device::Cpu => DType::F32,
        Device::Cuda(_) if bf16 => DType::BF16,
        Device::Cuda(_) if fp16 => DType::F16,
        Device::Cuda(_) => DType::F32,
    }
}

/// Checks `bf16` / `fp16` for a CPU run and says what they mean there: `bf16` multiplies in
/// bf16 (fp32 weights, activations and optimizer state; see `TrainConfig::bf16`), on
/// `vdpbf16ps` where the CPU has AVX512-BF16; `fp16` is refused (fp16 products would need
/// AVX512-FP16, which lmf does not use).
pub fn cpu_precision_note(bf16: bool, fp16: bool) -> Result<()> {
    if fp16 {
        return Err(Error::Msg(
            "`fp16: true` on the CPU: lmf has no fp16 CPU kernels (they would need AVX512-FP16); \
             use `bf16: true` (bf16 products on AVX512-BF16) or neither (fp32)"
                .into(),
        ));
    }
    if bf16 {
        if lmf_kernels::cpu::gemm_bf16::has_bf16_dot() {
            eprintln!(
                "note: bf16 on the CPU: products in bf16 with fp32 accumulation (AVX512-BF16), \
                 fp32 weights and optimizer state"
            );
        } else {
            eprintln!(
                "note: bf16 on the CPU: this CPU has no AVX512-BF16 (or LMF_SIMD caps it), so \
                 the bf16 products run as f32 products of bf16-rounded operands: the same \
                 numbers, slower than fp32"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_bad_ones_name_the_variable() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(train_device(true).unwrap(), Device::Cpu);
        let e = parse_device("tpu").unwrap_err().to_string();
        assert!(e.contains("LMF_DEVICE=tpu"), "{e}");
        if cuda::device_count() == 0 {
            // No GPU here: asking for one is a clear error, not a panic.
            let e = parse_device("cuda:0").unwrap_err().to_string();
            assert!(e.contains("LMF_DEVICE=cuda:0"), "{e}");
        }
        assert_eq!(compute_dtype(Device::Cpu, true, false), DType::F32);
        assert_eq!(compute_dtype(Device::Cuda(0), true, false), DType::BF16);
        assert_eq!(compute_dtype(Device::Cuda(0), false, true), DType::F16);
        assert_eq!(compute_dtype(Device::Cuda(0), false, false), DType::F32);
    }
}
