//! Test support for the vector functions: the ISAs this CPU has (whatever `LMF_SIMD` says,
//! so every kernel the machine can run is checked), an ulp distance, and a sweep over every
//! 61st f32 bit pattern (both signs, subnormals included) against an f64 reference.

use std::fmt;

/// A vector ISA this CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
        }
    }

    /// Runs this ISA's slice kernel, `f512` or `f2`, on `x`.
    pub fn run(self, x: &mut [f32], f512: unsafe fn(&mut [f32]), f2: unsafe fn(&mut [f32])) {
        // SAFETY: `vector_isas` only lists an ISA whose features the CPU has.
        unsafe {
            match self {
                Isa::Avx512 => f512(x),
                Isa::Avx2 => f2(x),
            }
        }
    }
}

/// The vector ISAs this CPU has.
pub(crate) fn vector_isas() -> Vec<Isa> {
    let mut out = vec![];
    if is_x86_feature_detected!("avx512f") {
        out.push(Isa::Avx512);
    }
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        out.push(Isa::Avx2);
    }
    if out.is_empty() {
        eprintln!("no vector ISA here: the vector functions are not run");
    }
    out
}

/// Distance in units in the last place of `want` rounded to f32, counting subnormal (and
/// zero) results in units of 2⁻¹⁴⁹; infinite when only one of the two is NaN or infinite,
/// or they are infinities of different signs.
pub(crate) fn ulps(got: f32, want: f64) -> f64 {
    let w = want as f32;
    if got.is_nan() || w.is_nan() {
        return if got.is_nan() && w.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if w.is_infinite() || got.is_infinite() {
        return if got == w { 0.0 } else { f64::INFINITY };
    }
    let unit = if w.abs() < f32::MIN_POSITIVE {
        2f64.powi(-149)
    } else {
        let e = (w.abs() as f64).log2().floor() as i32;
        2f64.powi(e - 23)
    };
    (got as f64 - want).abs() / unit
}

/// The largest errors a sweep saw, apart for normal results (ulp) and for results below the
/// smallest normal float (units of 2⁻¹⁴⁹), with an input that gave each.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Worst {
    pub normal: f64,
    pub normal_at: f32,
    pub tiny: f64,
    pub tiny_at: f32,
}

/// The error allowed: `ulp` on normal results, `tiny` units of 2⁻¹⁴⁹ below them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    pub ulp: f64,
    pub tiny: f64,
}

impl Worst {
    pub fn assert_within(&self, what: &str, b: Bound) {
        assert!(
            self.normal <= b.ulp,
            "{what}: {} ulp at x = {:e} (bound {})",
            self.normal,
            self.normal_at,
            b.ulp
        );
        assert!(
            self.tiny <= b.tiny,
            "{what}: {} units of 2^-149 at x = {:e} (bound {})",
            self.tiny,
            self.tiny_at,
            b.tiny
        );
    }
}

impl fmt::Display for Worst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "worst {:.3} ulp at {:e} (normal results), {:.3} units of 2^-149 at {:e} (smaller)",
            self.normal, self.normal_at, self.tiny, self.tiny_at
        )
    }
}

/// Runs `run` over every 61st f32 bit pattern that `keep` accepts, in blocks, and measures
/// it against `want` (the f64 reference of one input).
pub(crate) fn sweep(
    keep: impl Fn(f32) -> bool,
    want: impl Fn(f32) -> f64,
    mut run: impl FnMut(&mut [f32]),
) -> Worst {
    const STEP: u64 = 61;
    const BLOCK: u64 = 1 << 20;
    let mut worst = Worst::default();
    let mut seen = 0usize;
    let patterns = (u32::MAX as u64) / STEP + 1;
    let mut start = 0;
    while start < patterns {
        let end = (start + BLOCK).min(patterns);
        let xs: Vec<f32> = (start..end)
            .map(|i| f32::from_bits((i * STEP) as u32))
            .filter(|&x| keep(x))
            .collect();
        let mut got = xs.clone();
        run(&mut got);
        for (&x, &g) in xs.iter().zip(&got) {
            let w = want(x);
            let e = ulps(g, w);
            if (w as f32).abs() < f32::MIN_POSITIVE {
                if e > worst.tiny || e.is_nan() {
                    (worst.tiny, worst.tiny_at) = (e, x);
                }
            } else if e > worst.normal || e.is_nan() {
                (worst.normal, worst.normal_at) = (e, x);
            }
        }
        seen += xs.len();
        start = end;
    }
    assert!(seen > 1_000_000, "the sweep kept only {seen} inputs");
    worst
}
