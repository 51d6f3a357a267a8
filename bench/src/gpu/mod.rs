//! The GPU benchmarks of `gpu_bench` (run by `ci/gpu-check.sh` on a machine with an NVIDIA
//! GPU): one function per kernel, each printing one JSON line per measurement.
//!
//! Every line carries `impl` ("lmf"), `key` (shared with `bench/gpu/torch_ref.py`, so the
//! table joins the two), `bench` (what was measured), `unit` and `value` (null when the
//! measurement is n/a or failed, with `status` and `reason`). `ci/gpu_table.py` turns them
//! into the markdown table.
//!
//! Kernels that live on other branches until they are merged (flash attention, fused
//! linear-CE, NF4 GEMV) are behind the cargo features `bench-attn`, `bench-linear-ce` and
//! `bench-quant` of lmf-bench (`bench-pending` = all three); without the feature their bench
//! reports "n/a".

pub mod attn;
pub mod blas;
pub mod linear_ce;
pub mod moe;
pub mod quant;
pub mod timing;

use lmf_kernels::cuda::Gpu;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// One measurement key: `(key, what is measured, unit)`.
pub type Key = (&'static str, &'static str, &'static str);

/// The sequence lengths of the attention benches (tokens per call ≈ 16k: batch = 16384/seq).
pub const ATTN_SEQS: [usize; 3] = [1024, 4096, 8192];

/// Prints the JSON lines, remembering which keys were reported (the runner reports the rest
/// as failed when a bench returns an error).
#[derive(Default)]
pub struct Out {
    done: BTreeSet<String>,
}

impl Out {
    /// Prints one line `{"impl":"lmf", key, bench, unit, value, ..extra}`.
    pub fn value(&mut self, key: &Key, value: f64, extra: Value) {
        let mut m = Map::new();
        m.insert("impl".into(), json!("lmf"));
        m.insert("key".into(), json!(key.0));
        m.insert("bench".into(), json!(key.1));
        m.insert("unit".into(), json!(key.2));
        m.insert("value".into(), json!(finite(value)));
        m.insert("status".into(), json!("ok"));
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        self.emit(key.0, Value::Object(m));
    }

    /// Prints one line with `value: null`, `status` ("n/a" or "error") and `reason`.
    pub fn missing(&mut self, key: &Key, status: &str, reason: &str) {
        let line = json!({
            "impl": "lmf", "key": key.0, "bench": key.1, "unit": key.2,
            "value": Value::Null, "status": status, "reason": reason,
        });
        self.emit(key.0, line);
    }

    /// Reports every key of `keys` not printed yet as `status` with `reason`.
    pub fn missing_rest(&mut self, keys: &[Key], status: &str, reason: &str) {
        for k in keys {
            if !self.done.contains(k.0) {
                self.missing(k, status, reason);
            }
        }
    }

    fn emit(&mut self, key: &str, line: Value) {
        println!("{line}");
        self.done.insert(key.to_string());
    }
}

/// `v`, or null when it is not finite (JSON has no NaN).
fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// How long to measure: `quick` (a smoke run) or full.
#[derive(Clone, Copy, Debug)]
pub struct Effort {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs (the median is reported).
    pub iters: usize,
}

impl Effort {
    /// Full: 3 warm-up runs, 20 timed.
    pub const FULL: Effort = Effort {
        warmup: 3,
        iters: 20,
    };
    /// Quick: 1 warm-up run, 3 timed.
    pub const QUICK: Effort = Effort {
        warmup: 1,
        iters: 3,
    };
}

/// What a bench gets: the device and the effort.
pub struct Ctx<'a> {
    /// Device 0.
    pub gpu: &'a Gpu,
    /// Warm-up and timed iterations.
    pub effort: Effort,
    /// The copy bandwidth measured by the `copy` bench (GB/s), if it ran.
    pub copy_gbs: Option<f64>,
}

/// A bench of the registry.
pub type BenchFn = fn(&mut Ctx, &mut Out) -> anyhow::Result<()>;

/// One entry of the registry: a name (the command-line selector), its keys, and its function,
/// or why it cannot run in this build.
pub struct Entry {
    /// Selector on the command line (`gpu_bench attn`).
    pub name: &'static str,
    /// Every key it reports.
    pub keys: fn() -> Vec<Key>,
    /// The bench, or `Err(reason)` when this build lacks it (reported "n/a").
    pub run: Result<BenchFn, &'static str>,
}

/// Every bench, in the order they run (copy before gemv: the GEMV is reported as a fraction
/// of the copy bandwidth).
pub fn registry() -> Vec<Entry> {
    vec![
        Entry {
            name: "gemm",
            keys: blas::gemm_keys,
            run: Ok(blas::gemm),
        },
        Entry {
            name: "copy",
            keys: blas::copy_keys,
            run: Ok(blas::copy),
        },
        Entry {
            name: "attn",
            keys: attn::keys,
            run: attn::RUN,
        },
        Entry {
            name: "ce",
            keys: linear_ce::keys,
            run: linear_ce::RUN,
        },
        Entry {
            name: "gemv",
            keys: quant::keys,
            run: quant::RUN,
        },
        Entry {
            name: "moe",
            keys: moe::keys,
            run: Ok(moe::moe),
        },
    ]
}

/// Deterministic values in [-1, 1) as `T`, `n` of them: a 2^20-value Philox block repeated
/// (the host would otherwise spend seconds on the gigabyte-sized inputs; repetition does not
/// change any kernel's speed).
pub fn rand_vec<T: lmf_kernels::cuda::GpuFloat>(n: usize, seed: u64, scale: f32) -> Vec<T> {
    let block = crate::inputs(n.min(1 << 20), seed);
    let block: Vec<T> = block.iter().map(|&x| T::of_f32(x * scale)).collect();
    block.iter().copied().cycle().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key is unique, and the PyTorch script and the table know it (they join on it).
    #[test]
    fn keys_are_unique_and_shared_with_torch_ref_and_table() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let torch_ref = std::fs::read_to_string(format!("{root}/bench/gpu/torch_ref.py")).unwrap();
        let table = std::fs::read_to_string(format!("{root}/ci/gpu_table.py")).unwrap();
        let mut seen = BTreeSet::new();
        for e in registry() {
            for (key, _, _) in (e.keys)() {
                assert!(seen.insert(key), "duplicate key {key}");
                assert!(
                    table.contains(&format!("\"{key}\"")),
                    "{key} not in gpu_table.py"
                );
                // torch_ref.py builds the attention keys from the seq lengths.
                let stem = key.trim_end_matches(|c: char| c.is_ascii_digit());
                assert!(
                    torch_ref.contains(&format!("\"{key}\"")) || torch_ref.contains(stem),
                    "{key} not in torch_ref.py"
                );
            }
        }
        assert_eq!(seen.len(), 14);
    }

    #[test]
    fn flop_and_byte_counts() {
        // FlashAttention's count: 4·b·h·s²·d, halved when causal.
        assert_eq!(
            attn::fwd_flops(2, 16, 8192, 128, false),
            4.0 * 2.0 * 16.0 * 8192.0 * 8192.0 * 128.0
        );
        assert_eq!(attn::fwd_flops(1, 1, 4, 2, true), 64.0);
        // NF4 8192²: 32 MiB packed + 4 MiB absmax + 16 KiB x + 16 KiB y.
        assert_eq!(quant::bytes(), (32 << 20) + (4 << 20) + 2 * 16384);
    }

    #[test]
    fn rand_vec_repeats_its_block() {
        let v = rand_vec::<f32>((1 << 20) + 5, 3, 1.0);
        assert_eq!(v.len(), (1 << 20) + 5);
        assert_eq!(v[1 << 20], v[0]);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
    }
}
