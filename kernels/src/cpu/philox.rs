//! Philox-4x32-10, the counter-based generator behind every random number in lmf.
//!
//! Element `e` of a stream keyed by `seed` is computed from `philox(counter = [lo(e), hi(e),
//! 0, 0], key = [lo(seed), hi(seed)])` alone, so any device produces the same value for the
//! same `(seed, e)` in any order: dropout masks, LoRA init and sampling are reproducible
//! across CPU and GPU. A stream at `offset` simply starts at element `offset`.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// One Philox-4x32 block with 10 rounds (Salmon et al., SC'11).
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for _ in 0..10 {
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// The four raw words of element `e` of the stream keyed by `seed`.
#[inline]
pub fn words(seed: u64, e: u64) -> [u32; 4] {
    philox4x32_10(
        [e as u32, (e >> 32) as u32, 0, 0],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// Maps a word to (0, 1]: 24 random bits, never 0 (so `ln` is finite).
#[inline]
pub fn unit(w: u32) -> f32 {
    ((w >> 8) as f32 + 1.0) * (1.0 / 16_777_216.0)
}

/// Uniform in (0, 1] for element `e`.
#[inline]
pub fn uniform(seed: u64, e: u64) -> f32 {
    unit(words(seed, e)[0])
}

/// Standard normal for element `e` (Box–Muller on the element's first two words).
#[inline]
pub fn normal(seed: u64, e: u64) -> f32 {
    let w = words(seed, e);
    let (u1, u2) = (unit(w[0]), unit(w[1]));
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Dropout keep decision for element `e`: kept with probability `1 - p`.
#[inline]
pub fn keep(seed: u64, e: u64, p: f32) -> bool {
    uniform(seed, e) > p
}

/// Fills `out[i]` with uniform (0, 1] values for elements `offset + i`.
pub fn fill_uniform(seed: u64, offset: u64, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = uniform(seed, offset + i as u64);
    }
}

/// Fills `out[i]` with standard normal values for elements `offset + i`.
pub fn fill_normal(seed: u64, offset: u64, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = normal(seed, offset + i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_random123_known_answers() {
        // Known-answer vectors of Random123's kat_vectors for philox4x32_10.
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn moments_and_dropout_rate() {
        let n = 100_000;
        let mut u = vec![0.0; n];
        fill_uniform(3, 11, &mut u);
        let mean = u.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "uniform mean {mean}");
        assert!(u.iter().all(|&x| x > 0.0 && x <= 1.0));
        let mut g = vec![0.0; n];
        fill_normal(3, 11, &mut g);
        let m = g.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let v = g.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n as f64;
        assert!(
            m.abs() < 0.02 && (v - 1.0).abs() < 0.03,
            "normal mean {m} var {v}"
        );
        let kept = (0..n as u64).filter(|&e| keep(5, e, 0.1)).count() as f64 / n as f64;
        assert!((kept - 0.9).abs() < 0.01, "keep rate {kept}");
        // offset stream: element i of offset 11 is element 11 + i of offset 0
        let mut v0 = vec![0.0; 20];
        fill_uniform(3, 0, &mut v0);
        assert_eq!(&v0[11..], &u[..9]);
    }
}
