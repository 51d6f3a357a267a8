//! `lmf env`: what this build and machine offer, in LLaMA-Factory's `env` style (one
//! `- key: value` line each), for bug reports.

use lmf_kernels::cuda::{self, nvrtc};

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
        (
            "Architectures (model_type)",
            lmf_models::config::SUPPORTED_MODEL_TYPES.join(", "),
        ),
        (
            "Chat templates",
            format!(
                "{} (`lmf templates` lists them)",
                lmf_trainers::template::template_names().len()
            ),
        ),
        ("Date (UTC)", date()),
    ];
    lines.extend(gpu_lines());
    lines.iter().map(|(k, v)| format!("- {k}: {v}\n")).collect()
}

/// Today as templates print it, and where it comes from (the system clock or `LMF_NOW`).
fn date() -> String {
    use lmf_trainers::clock;
    let today = clock::now("%Y-%m-%d %H:%M:%S");
    match std::env::var(clock::NOW_ENV) {
        Ok(v) => format!("{today} (fixed by {}={v})", clock::NOW_ENV),
        Err(_) => today,
    }
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

/// The GPU lines, as LLaMA-Factory prints them (`GPU type`, `GPU number`, `GPU memory`), from
/// NVML, plus the driver, the CUDA driver API version, NVRTC and the arch lmf's kernels are
/// compiled for. On a machine without an NVIDIA driver: one `CUDA` line saying why.
fn gpu_lines() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match nvml_wrapper::Nvml::init() {
        Ok(nvml) => {
            let count = nvml.device_count().unwrap_or(0);
            if let Ok(dev) = nvml.device_by_index(0) {
                out.push(("GPU type", dev.name().unwrap_or_else(|e| e.to_string())));
                out.push(("GPU number", count.to_string()));
                if let Ok(mem) = dev.memory_info() {
                    out.push((
                        "GPU memory",
                        format!("{:.2}GB", mem.total as f64 / (1u64 << 30) as f64),
                    ));
                }
            } else {
                out.push(("GPU number", count.to_string()));
            }
            if let Ok(v) = nvml.sys_driver_version() {
                out.push(("NVIDIA driver", v));
            }
            if let Ok(v) = nvml.sys_cuda_driver_version() {
                out.push((
                    "CUDA driver API",
                    format!("{}.{}", v / 1000, (v % 1000) / 10),
                ));
            }
        }
        Err(e) => out.push(("CUDA", format!("no NVIDIA driver ({e})"))),
    }
    match cuda::Gpu::get(0) {
        Ok(gpu) => out.push((
            "lmf CUDA device",
            format!("cuda:0 {} ({})", gpu.name(), gpu.arch()),
        )),
        Err(e) => out.push(("lmf CUDA device", e.to_string())),
    }
    out.push((
        "NVRTC",
        match nvrtc::nvrtc_version() {
            Ok((a, b)) => format!("{a}.{b}"),
            Err(e) => e.to_string(),
        },
    ));
    out
}
