//! `torch.mean` of a contiguous f32 vector, bit for bit as torch computes it on one CPU
//! thread: bitsandbytes takes the offset of its double quantization from it
//! (`offset = absmax.mean()`), and that offset is stored in every double-quantized
//! checkpoint, so quantizing the same weight here must round the same way.
//!
//! On the CPU torch's mean is `sum / n` (f32 division), and the f32 sum is its cascade sum
//! (`aten/src/ATen/native/cpu/SumKernel.cpp`):
//!
//! - the vector of `n` floats is read as `n / W` SIMD vectors of `W` lanes (`W` = 8, see
//!   [`TORCH_SUM_LANES`]); the vectors are summed
//!   lane-wise with 4 interleaved accumulators (vector `4i + k` goes to accumulator `k`), each
//!   a 4-level cascade (level 0 takes `2^p` additions, then is added into level 1 and
//!   cleared, and so on, `p = max(4, ⌈log2 m⌉ / 4)` for `m` additions per accumulator);
//! - the leftover vectors (`n / W` not a multiple of 4) go to accumulator 0, the
//!   accumulators are added 0 + 1 + 2 + 3, then the leftover scalars are summed from 0 and
//!   the `W` lanes added to that in order;
//! - fewer than `W` floats take the same cascade on scalars.
//!
//! Above torch's grain size (32768 elements) with several threads, torch splits the vector
//! between threads and the result depends on the thread count; this is the one-thread value.

/// Lanes of the `Vectorized<float>` torch's sum kernel runs with on x86: 8. Its AVX-512
/// build is not registered for the sum (torch dispatches the AVX2 kernel on AVX-512
/// machines), and its default build has 8 lanes too (checked against bitsandbytes'
/// stored offsets, `tests/fixtures/hf/quant`).
pub const TORCH_SUM_LANES: usize = 8;

/// `torch.mean(x)` for an f32 vector, with `lanes` = [`TORCH_SUM_LANES`] as torch on x86.
pub fn torch_mean_f32(x: &[f32], lanes: usize) -> f32 {
    torch_sum_f32(x, lanes) / x.len() as f32
}

/// torch's one-thread f32 `sum` of a contiguous vector (see the module header).
pub fn torch_sum_f32(x: &[f32], lanes: usize) -> f32 {
    assert!(lanes > 0, "torch_sum_f32: lanes 0");
    if x.len() < lanes {
        // scalar path: the same row sum with one-lane "vectors"
        return row_sum(x.len(), 1, |i| vec![x[i]])[0];
    }
    let vecs = x.len() / lanes;
    let lane_acc = row_sum(vecs, lanes, |i| x[i * lanes..(i + 1) * lanes].to_vec());
    let mut total = 0f32;
    for &v in &x[vecs * lanes..] {
        total += v;
    }
    for v in lane_acc {
        total += v;
    }
    total
}

/// torch's `row_sum`: `size` items (each a vector of lanes) through 4 interleaved cascades,
/// the leftover items into the first, then the four added in order.
fn row_sum(size: usize, lanes: usize, item: impl Fn(usize) -> Vec<f32>) -> Vec<f32> {
    const ILP: usize = 4;
    let rows = size / ILP;
    let mut partial = multi_row_sum(rows, lanes, |i, k| item(i * ILP + k));
    for i in rows * ILP..size {
        add_into(&mut partial[0], &item(i));
    }
    let (first, rest) = partial.split_at_mut(1);
    for p in rest.iter() {
        add_into(&mut first[0], p);
    }
    partial.swap_remove(0)
}

/// torch's `multi_row_sum` with 4 rows: `acc[k] = Σ_i item(i, k)` through a 4-level cascade.
fn multi_row_sum(
    size: usize,
    lanes: usize,
    item: impl Fn(usize, usize) -> Vec<f32>,
) -> Vec<Vec<f32>> {
    const LEVELS: usize = 4;
    const ROWS: usize = 4;
    let power = 4usize.max(ceil_log2(size) / LEVELS);
    let step = 1usize << power;
    let mask = step - 1;
    let mut acc = vec![vec![vec![0f32; lanes]; ROWS]; LEVELS];
    let mut i = 0;
    while i + step <= size {
        for _ in 0..step {
            for (k, a) in acc[0].iter_mut().enumerate() {
                add_into(a, &item(i, k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            let (lower, upper) = acc.split_at_mut(j);
            for (hi, lo) in upper[0].iter_mut().zip(lower[j - 1].iter_mut()) {
                add_into(hi, lo);
                lo.iter_mut().for_each(|v| *v = 0.0);
            }
            if i & (mask << (j * power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for (k, a) in acc[0].iter_mut().enumerate() {
            add_into(a, &item(i, k));
        }
        i += 1;
    }
    let mut out = std::mem::take(&mut acc[0]);
    for level in &acc[1..] {
        for (o, l) in out.iter_mut().zip(level) {
            add_into(o, l);
        }
    }
    out
}

/// torch's `CeilLog2` (1 for sizes up to 2).
fn ceil_log2(x: usize) -> usize {
    if x <= 2 {
        1
    } else {
        (usize::BITS - (x - 1).leading_zeros()) as usize
    }
}

fn add_into(acc: &mut [f32], v: &[f32]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Lcg;

    #[test]
    fn close_to_the_exact_mean_and_exact_on_small_integers() {
        let mut rng = Lcg::new(3);
        for n in [1usize, 5, 15, 16, 17, 63, 64, 100, 511, 512, 4097, 70000] {
            let x: Vec<f32> = (0..n).map(|_| rng.sym(1.0) as f32 + 1.5).collect();
            let exact = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            for lanes in [8, 16] {
                let m = torch_mean_f32(&x, lanes) as f64;
                assert!(
                    (m - exact).abs() <= 1e-6 * exact.abs(),
                    "n {n} lanes {lanes}"
                );
            }
            // integers: every order gives the exact sum
            let ints: Vec<f32> = (0..n).map(|k| (k % 7) as f32).collect();
            let want: f64 = ints.iter().map(|&v| v as f64).sum();
            assert_eq!(torch_sum_f32(&ints, 16) as f64, want);
        }
    }

    #[test]
    fn cascade_order_is_not_sequential() {
        // 1 + 64 tiny values: sequential f32 addition loses every tiny value, a cascade keeps
        // their sum (they are summed among themselves before meeting the 1).
        let mut x = vec![1.0f32];
        x.extend(std::iter::repeat_n(2f32.powi(-25), 2047));
        let seq = x.iter().fold(0f32, |a, &b| a + b);
        assert_eq!(seq, 1.0);
        assert!(torch_sum_f32(&x, 16) > 1.0);
    }
}
