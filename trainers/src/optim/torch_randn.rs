//! torch 2.x's CPU `torch.randn(shape, generator=torch.Generator().manual_seed(seed))` in f32,
//! bit for bit, and apollo-torch's `next_seed`: what APOLLO's random projections are drawn
//! from (`apollo_torch/random_projector.py: stable_randn`).
//!
//! The generator is mt19937 seeded with the seed's low 32 bits. For an f32 tensor of at least
//! 16 elements torch first fills it with uniforms `(r & (2²⁴ − 1)) · 2⁻²⁴`, then turns each
//! block of 16 into normals with Box–Muller (8 radii from the first 8, 8 angles from the next
//! 8: `ATen/native/cpu/DistributionTemplates.h: normal_fill_16_AVX2`), its `log` and
//! `sin`/`cos` being the Cephes polynomials of `avx_mathfun.h` with the fused multiply-adds
//! the compiler forms; a tail that is not a multiple of 16 is redone from 16 fresh uniforms.
//! This is the x86 AVX2 path torch takes on AVX2 and AVX-512 machines (checked against every
//! projection APOLLO drew in `tests/fixtures/hf/train/cases/apollo_llama`); CPUs without AVX2
//! take a scalar path whose values differ in the last bit.

// The Cephes constants as avx_mathfun.h spells them (rounded to f32 by the compiler, as there).
#![allow(clippy::excessive_precision, clippy::unreadable_literal)]

use crate::data::numpy_rng::LegacyRng;

/// `fma(a, b, c)` in f32.
#[inline]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// `log256_ps` for one lane (`x > 0`).
fn log_ps(x: f32) -> f32 {
    let min_norm = f32::from_bits(0x0080_0000);
    let xi = x.max(min_norm).to_bits();
    let mut e = ((xi >> 23) as i32 - 0x7f) as f32 + 1.0;
    let mut x = f32::from_bits((xi & !0x7f80_0000) | 0.5f32.to_bits());
    let small = x < std::f32::consts::FRAC_1_SQRT_2;
    let tmp = if small { x } else { 0.0 };
    x -= 1.0;
    e -= if small { 1.0 } else { 0.0 };
    x += tmp;
    let z = x * x;
    let mut y = 7.0376836292e-2f32;
    for c in [
        -1.1514610310e-1f32,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    ] {
        y = fma(y, x, c);
    }
    let y = fma(y * x, z, e * -2.12194440e-4);
    let y = fma(-z, 0.5, y);
    fma(e, 0.693359375, x + y)
}

/// `sincos256_ps` for one lane: `(sin x, cos x)`.
fn sincos_ps(x: f32) -> (f32, f32) {
    let sign_bit = 0x8000_0000u32;
    let mut sign_sin = x.to_bits() & sign_bit;
    let x = x.abs();
    let j = ((x * 1.27323954473516) as i32 + 1) & !1;
    let y = j as f32;
    let swap_sin = ((j & 4) as u32) << 29;
    let poly_cos = (j & 2) != 0;
    let x = fma(y, -0.78515625, x);
    let x = fma(y, -2.4187564849853515625e-4, x);
    let x = fma(y, -3.77489497744594108e-8, x);
    let sign_cos = ((!(j - 2) & 4) as u32) << 29;
    sign_sin ^= swap_sin;
    let z = x * x;
    let yc = fma(2.443315711809948e-5, z, -1.388731625493765e-3);
    let yc = fma(yc, z, 4.166664568298827e-2) * z;
    let yc = fma(yc, z, -(z * 0.5)) + 1.0;
    let ys = fma(-1.9515295891e-4, z, 8.3321608736e-3);
    let ys = fma(ys, z, -1.6666654611e-1) * z;
    let ys = fma(ys, x, x);
    let (s, c) = if poly_cos { (yc, ys) } else { (ys, yc) };
    (
        f32::from_bits(s.to_bits() ^ sign_sin),
        f32::from_bits(c.to_bits() ^ sign_cos),
    )
}

/// `normal_fill_16`: uniforms `d[0..16]` → 16 standard normals, in place.
fn fill16(d: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for i in 0..8 {
        let radius = (-2.0 * log_ps(1.0 - d[i])).sqrt();
        let (s, c) = sincos_ps(two_pi * d[8 + i]);
        d[i] = radius * c;
        d[8 + i] = radius * s;
    }
}

/// One f32 uniform of torch's `uniform_real_distribution<float>(0, 1)`.
fn uniform(g: &mut LegacyRng) -> f32 {
    (g.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
}

/// `torch.randn(n, generator=Generator().manual_seed(seed))` for `n ≥ 16` f32 values.
pub fn randn(n: usize, seed: u64) -> Vec<f32> {
    assert!(
        n >= 16,
        "torch_randn::randn: {n} < 16 values take torch's scalar path"
    );
    normal_fill(&mut LegacyRng::new(seed), n, 0.0, 1.0)
}

/// torch's `normal_fill_AVX2(self, mean, std, generator)` for `n ≥ 16` f32 values: `n` uniforms
/// from `g`, each block of 16 turned into standard normals `z`, stored as `fma(z, std, mean)`
/// (`_mm256_fmadd_ps`; with mean 0 it only turns a `-0.0` into `+0.0`); a tail that is not a
/// multiple of 16 is redone from 16 fresh uniforms over the last 16 slots. Draws `n` 32-bit
/// values, plus 16 when `n % 16 != 0`.
pub(crate) fn normal_fill(g: &mut LegacyRng, n: usize, mean: f32, std: f32) -> Vec<f32> {
    debug_assert!(n >= 16);
    let mut d: Vec<f32> = (0..n).map(|_| uniform(g)).collect();
    let mut i = 0;
    while i + 16 <= n {
        fill16(&mut d[i..i + 16]);
        i += 16;
    }
    if !n.is_multiple_of(16) {
        let mut tail: Vec<f32> = (0..16).map(|_| uniform(g)).collect();
        fill16(&mut tail);
        d[n - 16..].copy_from_slice(&tail);
    }
    for v in &mut d {
        *v = fma(*v, std, mean);
    }
    d
}

/// apollo-torch's `next_seed(seed)`: the last of 15 `torch.randint(0, 2⁶³ − 1)` draws from a
/// generator seeded with `seed` (each `random64() % (2⁶³ − 1)`, the high half drawn first).
pub fn next_seed(seed: u64) -> u64 {
    let mut g = LegacyRng::new(seed);
    let mut v = 0;
    for _ in 0..15 {
        v = g.next_u64() % ((1u64 << 63) - 1);
    }
    v
}
