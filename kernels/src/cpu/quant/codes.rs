//! The code tables of bitsandbytes' quantized formats and nearest-code rounding.
//!
//! - NF4 (QLoRA, Dettmers et al. 2023, appendix E; bnb `get_4bit_type("nf4")`): 16 quantiles
//!   of N(0, 1) normalised to [−1, 1], asymmetric with an exact 0, indexed by the 4-bit code.
//! - FP4 (bnb `get_4bit_type("fp4")`): 1 sign, 2 exponent, 1 mantissa bit; the values of the
//!   codes 0..15 are `[0, 0.0625, 8, 12, 4, 6, 2, 3]` then their negatives, divided by 12.
//! - The signed dynamic map (bnb `create_dynamic_map(signed=True)`, from "8-Bit
//!   Approximations for Parallelism in Deep Learning"): 256 sorted values, used for the 8-bit
//!   double quantization of the 4-bit absmax.

/// NF4 code values, index = 4-bit code (bnb `get_4bit_type("nf4")`, QLoRA appendix E).
// The paper's digits, kept verbatim; the compiler rounds them to f32 as torch does.
#[allow(clippy::excessive_precision)]
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.696_192_800_998_687_7,
    -0.525_073_051_452_636_7,
    -0.394_917_488_098_144_53,
    -0.284_441_381_692_886_35,
    -0.184_773_430_228_233_34,
    -0.091_050_036_251_544_95,
    0.0,
    0.079_580_299_556_255_34,
    0.160_930_201_411_247_25,
    0.246_112_301_945_686_34,
    0.337_915_241_718_292_24,
    0.440_709_829_330_444_34,
    0.562_617_003_917_694_1,
    0.722_956_836_223_602_3,
    1.0,
];

/// FP4 code values before normalisation: sign bit 8, then exponent/mantissa patterns
/// 0b000..0b111 = 0, 0.0625, 8, 12, 4, 6, 2, 3 (bnb `get_4bit_type("fp4")`).
pub const FP4_RAW: [f32; 16] = [
    0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0,
];

/// FP4 code values, index = 4-bit code: [`FP4_RAW`] divided by its absmax 12, as bnb does.
pub const FP4_CODE: [f32; 16] = {
    let mut c = FP4_RAW;
    let mut i = 0;
    while i < 16 {
        c[i] /= 12.0;
        i += 1;
    }
    c
};

/// [`FP4_CODE`]'s codes in ascending order of value, ties (the two zeros, codes 0 and 8) in
/// code order, as torch's `argsort` gives them to bitsandbytes' CPU quantizer.
pub const FP4_ORDER: [u8; 16] = {
    let t = FP4_CODE;
    let mut order = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        order[i] = i as u8;
        i += 1;
    }
    // insertion sort: stable
    let mut i = 1;
    while i < 16 {
        let mut j = i;
        while j > 0 && t[order[j - 1] as usize] > t[order[j] as usize] {
            let tmp = order[j - 1];
            order[j - 1] = order[j];
            order[j] = tmp;
            j -= 1;
        }
        i += 1;
    }
    order
};

/// Midpoints of consecutive [`FP4_CODE`] values in [`FP4_ORDER`] (f32): bnb's CPU bucket
/// bounds. A value in `(bounds[i-1], bounds[i]]` gets code `FP4_ORDER[i]`; so `(0, 0.0026]`
/// gets code 8 (−0) and `(−0.0026, 0]` code 0.
pub const FP4_BOUNDS: [f32; 15] = {
    let t = FP4_CODE;
    let o = FP4_ORDER;
    let mut b = [0f32; 15];
    let mut i = 0;
    while i < 15 {
        b[i] = (t[o[i] as usize] + t[o[i + 1] as usize]) / 2.0;
        i += 1;
    }
    b
};

/// Midpoints `(c[i] + c[i+1]) / 2` (in f32) of a sorted code: the bucket bounds of
/// nearest-code rounding.
pub fn midpoints(sorted: &[f32]) -> Vec<f32> {
    sorted.windows(2).map(|p| (p[0] + p[1]) / 2.0).collect()
}

/// Index of the code nearest to `v` given the midpoints of a sorted code; a value exactly
/// on a midpoint goes to the lower code (torch `bucketize`, bnb's `x > threshold` trees).
#[inline]
pub fn nearest(bounds: &[f32], v: f32) -> usize {
    bounds.partition_point(|&b| b < v)
}

/// torch's f32 `linspace`: the first half counts up from `start`, the second down from
/// `end`, with the step computed in f32 and each point one fused multiply-add, as torch's
/// vectorized CPU kernel (AVX2 / AVX-512 builds) computes it, so the dynamic map below
/// matches the bits bitsandbytes gets there.
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// bnb's signed 8-bit dynamic map (`create_dynamic_map(signed=True, max_exponent_bits=7,
/// total_bits=8)`): 256 sorted values in [−1, 1] with an exact 0 and 1.
///
/// For each decade `i = 0..7` (scale `10^(i−6)`), the `2^i` midpoints of
/// `linspace(0.1, 1, 2^i + 1)` times the scale, and their negatives; then 0 and 1. The
/// arithmetic is f32 as in torch. A checkpoint's own `nested_quant_map` should be used
/// verbatim when loading; this is for quantizing here.
pub fn dynamic_map_signed() -> Vec<f32> {
    // 10 ** (i - 6) as Python evaluates it (a double), then converted for the f32 multiply.
    const DECADE: [f64; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
    let mut data = Vec::with_capacity(256);
    for (i, &scale) in DECADE.iter().enumerate() {
        let b = linspace_f32(0.1, 1.0, (1 << i) + 1);
        let scale = scale as f32;
        for p in b.windows(2) {
            let mean = (p[0] + p[1]) / 2.0;
            data.push(scale * mean);
            data.push(-scale * mean);
        }
    }
    data.push(0.0);
    data.push(1.0);
    assert_eq!(data.len(), 256);
    data.sort_by(f32::total_cmp);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf4_table_is_the_qlora_table() {
        // QLoRA appendix E, as printed (f64), rounded to f32.
        let spec = [
            -1.0,
            -0.6961928009986877,
            -0.5250730514526367,
            -0.39491748809814453,
            -0.28444138169288635,
            -0.18477343022823334,
            -0.09105003625154495,
            0.0,
            0.07958029955625534,
            0.16093020141124725,
            0.24611230194568634,
            0.33791524171829224,
            0.44070982933044434,
            0.5626170039176941,
            0.7229568362236023,
            1.0,
        ];
        for (i, (&c, &s)) in NF4_CODE.iter().zip(&spec).enumerate() {
            assert_eq!(c, s as f32, "nf4[{i}]");
        }
        assert!(NF4_CODE.windows(2).all(|p| p[0] < p[1]), "nf4 sorted");
    }

    #[test]
    fn fp4_table_is_sign_e2m1_over_12() {
        // Decode the bit pattern: sign | e1 e0 | m, bias as in bnb (exp 0 = subnormal).
        for (code, &c) in FP4_CODE.iter().enumerate() {
            let sign = if code & 8 != 0 { -1.0 } else { 1.0 };
            let e = (code >> 1) & 3;
            let m = code & 1;
            let mag = match (e, m) {
                (0, 0) => 0.0,
                (0, 1) => 0.0625,
                _ => 2f64.powi(4 - e as i32) * if m == 1 { 1.5 } else { 1.0 },
            };
            assert_eq!(c, (sign * mag / 12.0) as f32, "fp4[{code}]");
        }
        assert_eq!(FP4_CODE[3], 1.0);
        assert_eq!(FP4_CODE[11], -1.0);
        assert_eq!(
            FP4_ORDER,
            [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3]
        );
        assert!(FP4_BOUNDS.windows(2).all(|p| p[0] <= p[1]));
        assert_eq!(FP4_BOUNDS[7], 0.0);
        // bnb's literal thresholds in dQuantizeFP4 (its CUDA quantizer)
        let bnb = [
            0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333,
        ];
        for (a, b) in FP4_BOUNDS[8..].iter().zip(bnb) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn dynamic_map_shape() {
        let m = dynamic_map_signed();
        assert_eq!(m.len(), 256);
        assert!(m.windows(2).all(|p| p[0] < p[1]), "strictly sorted");
        assert_eq!(m[127], 0.0);
        assert_eq!(m[255], 1.0);
        // symmetric apart from the extra 1.0
        for k in 0..127 {
            assert_eq!(m[k], -m[254 - k], "symmetry at {k}");
        }
        // decade i holds 2^i positive values: 1 in [1e-6, 1e-5), 2 in [1e-5, 1e-4), ...
        for i in 0..7 {
            let (lo, hi) = (10f32.powi(i - 6) * 0.1, 10f32.powi(i - 6));
            let count = m.iter().filter(|&&v| v > lo && v < hi).count();
            assert_eq!(count, 1 << i, "decade {i}");
        }
        assert!(
            (m[128] - 5.5e-7).abs() < 1e-12,
            "smallest positive {}",
            m[128]
        );
        assert!(
            (m[254] - 0.99296875).abs() < 1e-7,
            "largest below 1: {}",
            m[254]
        );
        assert!((m[0] + 0.99296875).abs() < 1e-7);
    }

    #[test]
    fn nearest_rounds_to_nearest_ties_down() {
        let code = [-1.0, 0.0, 0.5, 1.0];
        let b = midpoints(&code);
        assert_eq!(nearest(&b, -0.9), 0);
        assert_eq!(nearest(&b, -0.5), 0); // tie → lower
        assert_eq!(nearest(&b, -0.49), 1);
        assert_eq!(nearest(&b, 0.25), 1); // tie → lower
        assert_eq!(nearest(&b, 0.26), 2);
        assert_eq!(nearest(&b, 2.0), 3);
    }
}
