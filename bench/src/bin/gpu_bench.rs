//! GPU benchmarks for `ci/gpu-check.sh`: one JSON line per measurement on stdout (see
//! `lmf_bench::gpu`), progress and errors on stderr.
//!
//! ```text
//! gpu_bench [--quick] [NAME...]     NAME: gemm copy attn ce gemv moe (default: all)
//! gpu_bench list                    the benches and whether this build has them
//! ```
//!
//! The end-to-end LoRA step is not here: ci/gpu-check.sh runs `lmf train` for it
//! (bench/gpu/e2e_lora_lmf.sh).
//!
//! Without a CUDA device every measurement is reported n/a and the exit status is 0. A bench
//! that fails reports its remaining measurements as `"status":"error"` and the others still
//! run; the exit status is then 1.

use lmf_bench::gpu::{registry, Ctx, Effort, Out};
use lmf_kernels::cuda::Gpu;
use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    args.retain(|a| a != "--quick");
    let reg = registry();
    if args
        .iter()
        .any(|a| a == "list" || a == "--help" || a == "-h")
    {
        eprintln!("usage: gpu_bench [--quick] [NAME...]");
        for e in &reg {
            let state = match &e.run {
                Ok(_) => "ready".to_string(),
                Err(why) => why.to_string(),
            };
            let keys: Vec<&str> = (e.keys)().iter().map(|k| k.0).collect();
            println!("{:<5} {state}: {}", e.name, keys.join(" "));
        }
        return;
    }
    if let Some(bad) = args
        .iter()
        .find(|a| !reg.iter().any(|e| e.name == a.as_str()))
    {
        let names: Vec<&str> = reg.iter().map(|e| e.name).collect();
        eprintln!(
            "gpu_bench: unknown bench {bad:?} (have: {})",
            names.join(" ")
        );
        std::process::exit(2);
    }
    let selected: Vec<_> = reg
        .iter()
        .filter(|e| args.is_empty() || args.iter().any(|a| a == e.name))
        .collect();

    let mut out = Out::default();
    let gpu = match Gpu::get(0) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gpu_bench: no CUDA device ({e}): every benchmark is n/a");
            for entry in &selected {
                out.missing_rest(&(entry.keys)(), "n/a", "n/a (no CUDA device)");
            }
            return;
        }
    };
    eprintln!(
        "gpu_bench: {} ({}, sm {}.{}){}",
        gpu.name(),
        gpu.arch(),
        gpu.compute_capability().0,
        gpu.compute_capability().1,
        if quick { ", quick" } else { "" }
    );
    let mut ctx = Ctx {
        gpu: &gpu,
        effort: if quick { Effort::QUICK } else { Effort::FULL },
        copy_gbs: None,
    };
    let mut failed = false;
    for entry in &selected {
        let keys = (entry.keys)();
        let run = match &entry.run {
            Ok(f) => f,
            Err(why) => {
                eprintln!("gpu_bench: {}: {why}", entry.name);
                out.missing_rest(&keys, "n/a", why);
                continue;
            }
        };
        let start = Instant::now();
        let r = run(&mut ctx, &mut out).and_then(|()| Ok(gpu.sync()?));
        match r {
            Ok(()) => eprintln!(
                "gpu_bench: {}: done in {:.1} s",
                entry.name,
                start.elapsed().as_secs_f64()
            ),
            Err(e) => {
                failed = true;
                eprintln!("gpu_bench: {}: FAILED: {e:#}", entry.name);
                out.missing_rest(&keys, "error", &format!("{e:#}"));
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
