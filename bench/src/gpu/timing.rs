//! Timing on the GPU: CUDA events around each of N timed iterations after a warm-up; the
//! median (and best) per-iteration time is reported.

use cudarc::driver::sys::CUevent_flags;
use lmf_kernels::cuda::Gpu;

/// Per-iteration times of one timed loop, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// The median iteration.
    pub median_ms: f64,
    /// The fastest iteration.
    pub min_ms: f64,
    /// How many iterations were timed.
    pub iters: usize,
}

impl Timing {
    /// The `extra` fields of a JSON line: `ms` (median), `min_ms`, `iters`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"ms": self.median_ms, "min_ms": self.min_ms, "iters": self.iters})
    }

    /// `units` per second at the median time, divided by `scale` (1e12 for TFLOP/s).
    pub fn rate(&self, units: f64, scale: f64) -> f64 {
        units / (self.median_ms * 1e-3) / scale
    }
}

/// Runs `f` `warmup` times, then times `iters` runs, each between two events recorded on the
/// device's stream (the events are chained: the end of one run is the start of the next).
/// `f(i)` gets the iteration number (benches that rotate buffers use it).
pub fn time_gpu(
    gpu: &Gpu,
    warmup: usize,
    iters: usize,
    mut f: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<Timing> {
    for i in 0..warmup {
        f(i)?;
    }
    gpu.sync()?;
    let iters = iters.max(1);
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let mut events = Vec::with_capacity(iters + 1);
    events.push(gpu.stream().record_event(flags)?);
    for i in 0..iters {
        f(warmup + i)?;
        events.push(gpu.stream().record_event(flags)?);
    }
    gpu.sync()?;
    let mut ms = Vec::with_capacity(iters);
    for w in events.windows(2) {
        ms.push(w[0].elapsed_ms(&w[1])? as f64);
    }
    ms.sort_by(f64::total_cmp);
    Ok(Timing {
        median_ms: ms[ms.len() / 2],
        min_ms: ms[0],
        iters,
    })
}

/// Bytes as GiB.
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}
