//! `lmf env`: what this build and machine offer, in LLaMA-Factory's `env` style (one
//! `- key: value` line each), for bug reports.

use lmf_runtime::Device;

/// The report printed by `lmf env`.
pub fn report() -> String {
    let mut lines = vec![
        ("lmf version", env!("CARGO_PKG_VERSION").to_string()),
        (
            "Platform",
            format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        ),
        (
            "CPU cores",
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .to_string(),
        ),
        ("CPU features", cpu_features()),
    ];
    let cuda = match lmf_runtime::Tensor::zeros(&[1], lmf_runtime::DType::F32, Device::Cuda(0)) {
        Ok(_) => "available".to_string(),
        Err(e) => e.to_string(),
    };
    lines.push(("CUDA", cuda));
    lines.iter().map(|(k, v)| format!("- {k}: {v}\n")).collect()
}

/// The SIMD features the CPU kernels can use on this machine (detected at run time).
fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut f = Vec::new();
        if std::arch::is_x86_feature_detected!("avx2") {
            f.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            f.push("fma");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            f.push("avx512f");
        }
        if std::arch::is_x86_feature_detected!("avx512bf16") {
            f.push("avx512bf16");
        }
        if f.is_empty() {
            "baseline x86-64".to_string()
        } else {
            f.join(" ")
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}
