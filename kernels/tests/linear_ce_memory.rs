//! Memory behaviour of the fused linear cross-entropy: with a counting global allocator,
//! the extra bytes a training step allocates are O(chunk × vocab), never O(tokens × vocab).
//!
//! One `#[test]` only: the allocator is process-wide, so a second test running in parallel
//! would pollute the peak.

use lmf_kernels::cpu::gemm::matmul;
use lmf_kernels::cpu::linear_ce::{linear_ce_fwd_bwd, CeOptions};
use lmf_kernels::testing::{rand_vec, CountingAlloc, Lcg};

#[global_allocator]
static A: CountingAlloc = CountingAlloc::new();

/// Naive training step: full `[n, vocab]` logits, then a full dlogits buffer.
fn naive_step(x: &[f32], w: &[f32], labels: &[i64], n: usize, h: usize, v: usize) -> f64 {
    let mut wt = vec![0.0f32; h * v]; // wᵀ: [h, v]
    for j in 0..v {
        for k in 0..h {
            wt[k * v + j] = w[j * h + k];
        }
    }
    let logits = matmul(x, &wt, n, h, v); // [n, v]
    let mut dlogits = vec![0.0f32; n * v];
    let mut loss = 0.0;
    for t in 0..n {
        let z = &logits[t * v..(t + 1) * v];
        let m = z.iter().cloned().fold(f32::MIN, f32::max);
        let s: f32 = z.iter().map(|&a| (a - m).exp()).sum();
        let lse = m + s.ln();
        loss += (lse - z[labels[t] as usize]) as f64;
        for j in 0..v {
            dlogits[t * v + j] = (z[j] - lse).exp();
        }
    }
    std::hint::black_box(&dlogits);
    loss
}

#[test]
fn fused_ce_peak_memory_is_o_chunk_times_vocab() {
    let (n, h, v, chunk) = (4096, 16, 2000, 128);
    let mut rng = Lcg::new(11);
    let x: Vec<f32> = rand_vec(&mut rng, n * h, 1.0);
    let w: Vec<f32> = rand_vec(&mut rng, v * h, 0.5);
    let labels: Vec<i64> = (0..n)
        .map(|t| {
            if t % 3 == 0 {
                -100
            } else {
                rng.below(v) as i64
            }
        })
        .collect();
    let mut dx = vec![0.0f32; n * h];
    let mut dw = vec![0.0f32; v * h];
    let opts = CeOptions {
        chunk,
        ..Default::default()
    };

    // Warm-up: rayon's pool and gemm's thread-local buffers allocate on first use.
    let warm = linear_ce_fwd_bwd(
        &x,
        &w,
        &labels,
        n,
        h,
        v,
        &opts,
        1.0,
        Some(&mut dx),
        Some(&mut dw),
    );
    let valid = labels_all_valid(&labels, v);
    naive_step(&x[..chunk * h], &w, &valid[..chunk], chunk, h, v);

    let base = A.current_bytes();
    A.reset_peak();
    let r = linear_ce_fwd_bwd(
        &x,
        &w,
        &labels,
        n,
        h,
        v,
        &opts,
        1.0,
        Some(&mut dx),
        Some(&mut dw),
    );
    let fused_peak = A.peak_bytes() - base;
    assert_eq!(r, warm);

    let base = A.current_bytes();
    A.reset_peak();
    let naive_loss = naive_step(&x, &w, &valid, n, h, v);
    let naive_peak = A.peak_bytes() - base;
    assert!(naive_loss.is_finite());

    let full = n * v * 4;
    eprintln!("fused peak {fused_peak} B, naive peak {naive_peak} B, n·vocab·4 = {full} B");
    assert!(
        fused_peak < 4 * chunk * v * 4,
        "fused peak {fused_peak} B is not O(chunk·vocab)"
    );
    assert!(
        fused_peak * 8 < full,
        "fused peak {fused_peak} B is not far below {full} B"
    );
    assert!(
        naive_peak > full,
        "naive peak {naive_peak} B should exceed {full} B"
    );
}

/// The naive step has no ignore_index: map ignored labels to class 0.
fn labels_all_valid(labels: &[i64], v: usize) -> Vec<i64> {
    labels
        .iter()
        .map(|&y| if (0..v as i64).contains(&y) { y } else { 0 })
        .collect()
}
