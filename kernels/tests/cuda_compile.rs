//! The kernel compile check: NVRTC compiles every `kernels/cuda/*.cu` for sm_80 and sm_90a
//! (real targets, so ptxas runs) and any error or warning fails. Registers, shared memory and
//! spills per kernel (ptxas `-v`) are printed. Needs no GPU.
//!
//! NVRTC comes from the CUDA toolkit or the `nvidia-cuda-nvrtc` wheel (`.ci/run` installs it
//! and sets `LMF_REQUIRE_NVRTC=1`, so CI fails rather than skips when it is missing).

use lmf_kernels::cuda::nvrtc::{compile, include_dirs, nvrtc_available, nvrtc_version};
use lmf_kernels::cuda::sources::ALL;

const ARCHS: [&str; 2] = ["sm_80", "sm_90a"];

/// The log lines that are not ptxas's `-v` report: warnings and anything unexpected.
fn complaints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let l = l.trim();
            !l.is_empty()
                && !l.starts_with("ptxas info")
                && !l.contains("bytes stack frame")
                && !l.starts_with("Compile took")
        })
        .collect()
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90a_without_warnings() {
    if !nvrtc_available() {
        assert!(
            std::env::var("LMF_REQUIRE_NVRTC").is_err(),
            "LMF_REQUIRE_NVRTC is set but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)"
        );
        eprintln!("skipped: NVRTC not found (set LD_LIBRARY_PATH to a CUDA lib folder)");
        return;
    }
    let (maj, min) = nvrtc_version().expect("nvrtc version");
    let inc = include_dirs();
    eprintln!("NVRTC {maj}.{min}; CUDA headers from {inc:?}");
    assert!(
        !inc.is_empty(),
        "no CUDA include folder with cuda_bf16.h found"
    );
    let mut failures = Vec::new();
    for src in ALL {
        for arch in ARCHS {
            match compile(src, arch, true) {
                Ok(c) => {
                    let bad = complaints(&c.log);
                    let report: Vec<&str> = c
                        .log
                        .lines()
                        .filter(|l| {
                            l.contains("entry function")
                                || l.contains("Used")
                                || l.contains("spill")
                        })
                        .collect();
                    eprintln!("{}.cu {arch}: cubin {} bytes", src.name, c.cubin.len());
                    for l in report {
                        eprintln!("    {}", l.trim());
                    }
                    if !bad.is_empty() {
                        failures.push(format!(
                            "{}.cu {arch} warnings:\n{}",
                            src.name,
                            bad.join("\n")
                        ));
                    }
                    if c.log.lines().any(|l| {
                        l.contains("spill")
                            && !l.contains(" 0 bytes spill stores, 0 bytes spill loads")
                    }) {
                        failures.push(format!(
                            "{}.cu {arch}: register spills:\n{}",
                            src.name, c.log
                        ));
                    }
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
