//! Grouped GEMM of mixture-of-experts layers (`cpu::grouped_gemm`: one call, the experts in
//! parallel) against the per-expert loop of the dense GEMM (one `gemm` per expert, one
//! expert after another, each product parallel inside: transformers' eager
//! `for expert_idx in expert_hit` loop). Three layers, 512 tokens each: Qwen3-MoE-30B-A3B
//! (128 experts, top 8, hidden 2048, expert width 768), GPT-OSS-20B (32 experts, top 4,
//! hidden and width 2880) and a Mixtral scaled to hidden 1024 (8 experts, top 2, width 3584);
//! for each, the gate_up (`[2I, H]` per expert) and down (`[H, I]`) projections, forward,
//! backward_x and backward_w. Routing: each token's top-k distinct experts by Gumbel top-k
//! over a fixed per-expert bias (mildly unbalanced, fixed seed). Throughput counts 2·R·N·K
//! FLOPs per product (R = tokens·top_k routed rows; elements/s = FLOP/s).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lmf_bench::inputs;
use lmf_kernels::cpu::gemm::{gemm, MatMut, MatRef};
use lmf_kernels::cpu::grouped_gemm::{
    grouped_gemm_backward_w, grouped_gemm_backward_x, grouped_gemm_forward,
};
use lmf_kernels::cpu::philox;

/// An MoE layer: (name, tokens, top_k, experts, hidden, expert width).
const LAYERS: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("qwen3moe", 512, 8, 128, 2048, 768),
    ("gptoss", 512, 4, 32, 2880, 2880),
    ("mixtral_h1024", 512, 2, 8, 1024, 3584),
];

/// Offsets (length `experts + 1`) of the routed rows sorted by expert: each token picks its
/// `top_k` distinct experts by Gumbel top-k over a per-expert bias drawn from N(0, 0.3²).
fn routing(tokens: usize, top_k: usize, experts: usize) -> Vec<usize> {
    let bias: Vec<f32> = (0..experts as u64)
        .map(|e| 0.3 * philox::normal(7, e))
        .collect();
    let mut counts = vec![0usize; experts];
    let mut order: Vec<usize> = (0..experts).collect();
    for t in 0..tokens {
        let score: Vec<f32> = (0..experts)
            .map(|e| bias[e] - (-philox::uniform(8, (t * experts + e) as u64).ln()).ln())
            .collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
        order[..top_k].iter().for_each(|&e| counts[e] += 1);
    }
    let mut offsets = vec![0usize; experts + 1];
    for (e, c) in counts.iter().enumerate() {
        offsets[e + 1] = offsets[e] + c;
    }
    offsets
}

/// The per-expert loop of [`grouped_gemm_forward`].
fn loop_forward(y: &mut [f32], x: &[f32], w: &[f32], offsets: &[usize], (n, k): (usize, usize)) {
    for (g, o) in offsets.windows(2).enumerate() {
        let rows = o[1] - o[0];
        if rows == 0 {
            continue;
        }
        gemm(
            MatMut::new(&mut y[o[0] * n..o[1] * n], rows, n),
            MatRef::new(&x[o[0] * k..o[1] * k], rows, k),
            MatRef::new(&w[g * n * k..(g + 1) * n * k], n, k).t(),
            false,
            1.0,
        );
    }
}

/// The per-expert loop of [`grouped_gemm_backward_x`].
fn loop_backward_x(
    dx: &mut [f32],
    dy: &[f32],
    w: &[f32],
    offsets: &[usize],
    (n, k): (usize, usize),
) {
    for (g, o) in offsets.windows(2).enumerate() {
        let rows = o[1] - o[0];
        if rows == 0 {
            continue;
        }
        gemm(
            MatMut::new(&mut dx[o[0] * k..o[1] * k], rows, k),
            MatRef::new(&dy[o[0] * n..o[1] * n], rows, n),
            MatRef::new(&w[g * n * k..(g + 1) * n * k], n, k),
            false,
            1.0,
        );
    }
}

/// The per-expert loop of [`grouped_gemm_backward_w`] (zeroes experts without rows too).
fn loop_backward_w(
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    offsets: &[usize],
    (n, k): (usize, usize),
) {
    for (g, o) in offsets.windows(2).enumerate() {
        let rows = o[1] - o[0];
        let dwg = &mut dw[g * n * k..(g + 1) * n * k];
        if rows == 0 {
            dwg.fill(0.0);
            continue;
        }
        gemm(
            MatMut::new(dwg, n, k),
            MatRef::new(&dy[o[0] * n..o[1] * n], rows, n).t(),
            MatRef::new(&x[o[0] * k..o[1] * k], rows, k),
            false,
            1.0,
        );
    }
}

/// One projection (`[n, k]` per expert) of one layer: the three passes, both ways.
fn projection(c: &mut Criterion, name: &str, offsets: &[usize], (n, k): (usize, usize)) {
    let (e, m) = (offsets.len() - 1, offsets[offsets.len() - 1]);
    let (x, w, dy) = (inputs(m * k, 1), inputs(e * n * k, 2), inputs(m * n, 3));
    let (mut y, mut dx) = (vec![0.0f32; m * n], vec![0.0f32; m * k]);
    // the loop does the same products: same bits (this also touches every output page)
    let (mut y2, mut dx2) = (vec![0.0f32; m * n], vec![0.0f32; m * k]);
    grouped_gemm_forward(&mut y, &x, &w, offsets, (n, k));
    loop_forward(&mut y2, &x, &w, offsets, (n, k));
    assert_eq!(y, y2, "{name}: forward differs");
    grouped_gemm_backward_x(&mut dx, &dy, &w, offsets, (n, k));
    loop_backward_x(&mut dx2, &dy, &w, offsets, (n, k));
    assert_eq!(dx, dx2, "{name}: backward_x differs");
    drop((y2, dx2));
    let mut dw = vec![0.0f32; e * n * k];
    grouped_gemm_backward_w(&mut dw, &dy, &x, offsets, (n, k));
    let mut dwg = vec![0.0f32; n * k];
    for g in 0..e {
        let one = [0, offsets[g + 1] - offsets[g]];
        let (dyg, xg) = (
            &dy[offsets[g] * n..offsets[g + 1] * n],
            &x[offsets[g] * k..offsets[g + 1] * k],
        );
        loop_backward_w(&mut dwg, dyg, xg, &one, (n, k));
        assert!(
            dwg == dw[g * n * k..(g + 1) * n * k],
            "{name}: backward_w differs"
        );
    }
    drop(dwg);

    let mut g = c.benchmark_group(format!("grouped_gemm_f32_{name}_e{e}_r{m}_{n}x{k}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
    g.bench_function("forward/grouped", |b| {
        b.iter(|| grouped_gemm_forward(&mut y, &x, &w, offsets, (n, k)))
    });
    g.bench_function("forward/per_expert_loop", |b| {
        b.iter(|| loop_forward(&mut y, &x, &w, offsets, (n, k)))
    });
    g.bench_function("backward_x/grouped", |b| {
        b.iter(|| grouped_gemm_backward_x(&mut dx, &dy, &w, offsets, (n, k)))
    });
    g.bench_function("backward_x/per_expert_loop", |b| {
        b.iter(|| loop_backward_x(&mut dx, &dy, &w, offsets, (n, k)))
    });
    g.bench_function("backward_w/grouped", |b| {
        b.iter(|| grouped_gemm_backward_w(&mut dw, &dy, &x, offsets, (n, k)))
    });
    g.bench_function("backward_w/per_expert_loop", |b| {
        b.iter(|| loop_backward_w(&mut dw, &dy, &x, offsets, (n, k)))
    });
    g.finish();
}

fn grouped(c: &mut Criterion) {
    for &(name, tokens, top_k, experts, h, i) in LAYERS {
        let offsets = routing(tokens, top_k, experts);
        let sizes: Vec<usize> = offsets.windows(2).map(|o| o[1] - o[0]).collect();
        println!(
            "{name}: {tokens} tokens, top {top_k} of {experts} experts: rows per expert \
             min {} mean {} max {}",
            sizes.iter().min().unwrap(),
            tokens * top_k / experts,
            sizes.iter().max().unwrap(),
        );
        projection(c, &format!("{name}_gate_up"), &offsets, (2 * i, h));
        projection(c, &format!("{name}_down"), &offsets, (h, i));
    }
}

criterion_group!(benches, grouped);
criterion_main!(benches);
