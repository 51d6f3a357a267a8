//! Test helpers shared by the kernel, runtime and autograd tests: a tiny deterministic
//! generator for random inputs and an f64 finite-difference gradient checker.

/// A 64-bit LCG: deterministic random test inputs without a dependency.
#[derive(Clone, Debug)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Lcg(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-scale, scale).
    pub fn sym(&mut self, scale: f64) -> f64 {
        (2.0 * self.next_f64() - 1.0) * scale
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// `n` values uniform in [-scale, scale).
pub fn rand_vec<T: crate::Real>(rng: &mut Lcg, n: usize, scale: f64) -> Vec<T> {
    (0..n).map(|_| T::of(rng.sym(scale))).collect()
}

/// Central finite differences of a scalar function `f` at `x`, in f64, step `h`.
pub fn numeric_grad(x: &[f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + h;
            let up = f(&xp);
            xp[i] = x[i] - h;
            let down = f(&xp);
            xp[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Asserts `analytic ≈ numeric` elementwise: `|a - n| <= atol + rtol·|n|`, naming `what`
/// and the first failing index. NaN never passes.
pub fn assert_close(what: &str, analytic: &[f64], numeric: &[f64], atol: f64, rtol: f64) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: length mismatch");
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        let ok = (a - n).abs() <= atol + rtol * n.abs();
        assert!(ok, "{what}[{i}]: analytic {a} vs numeric {n}");
    }
}

/// Checks the analytic gradient of `loss(x)` against f64 central differences (h = 1e-6,
/// tolerance 1e-6 absolute + 1e-5 relative). `loss` returns the scalar; `grad` is the
/// analytic dloss/dx at `x`.
pub fn check_grad(what: &str, x: &[f64], grad: &[f64], loss: impl FnMut(&[f64]) -> f64) {
    let num = numeric_grad(x, 1e-6, loss);
    assert_close(what, grad, &num, 1e-6, 1e-5);
}

/// A global allocator for memory tests: wraps [`std::alloc::System`] and tracks the live and
/// peak bytes with atomics. Declare it in a test binary with
/// `#[global_allocator] static A: CountingAlloc = CountingAlloc::new();`.
#[derive(Debug, Default)]
pub struct CountingAlloc {
    current: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl CountingAlloc {
    /// A counter at zero (const, so it can initialise a `static`).
    pub const fn new() -> Self {
        CountingAlloc {
            current: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
        }
    }
    /// Bytes currently allocated.
    pub fn current_bytes(&self) -> usize {
        self.current.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// Highest `current_bytes` since the last [`CountingAlloc::reset_peak`].
    pub fn peak_bytes(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// Restarts peak tracking from the current live bytes.
    pub fn reset_peak(&self) {
        self.peak
            .store(self.current_bytes(), std::sync::atomic::Ordering::SeqCst);
    }
    fn grow(&self, bytes: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.current.fetch_add(bytes, SeqCst) + bytes;
        self.peak.fetch_max(now, SeqCst);
    }
    fn shrink(&self, bytes: usize) {
        self.current
            .fetch_sub(bytes, std::sync::atomic::Ordering::SeqCst);
    }
}

// SAFETY: every call forwards to `System` with the caller's layout unchanged; the counters
// only observe sizes.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = std::alloc::System.alloc(layout);
        if !p.is_null() {
            self.grow(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = std::alloc::System.alloc_zeroed(layout);
        if !p.is_null() {
            self.grow(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout);
        self.shrink(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let p = std::alloc::System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // Count the new block before releasing the old one: a moving realloc briefly
            // holds both.
            self.grow(new_size);
            self.shrink(layout.size());
        }
        p
    }
}
