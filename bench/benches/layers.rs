//! The elementwise/row kernels of a decoder layer at hidden 2048, seq 1024 (intermediate 5632,
//! 32 heads of 64): RMSNorm, RoPE, SwiGLU, embedding, and AdamW over a 2048 × 5632 weight.
//! Throughput is bytes moved (inputs read + outputs written), since these are memory-bound.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lmf_bench::inputs;
use lmf_kernels::cpu::adamw::{adamw_step, AdamWParams};
use lmf_kernels::cpu::embedding::{embedding_backward, embedding_forward};
use lmf_kernels::cpu::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use lmf_kernels::cpu::rope::{rope_backward, rope_forward, rope_tables, RopeConfig, RopeScaling};
use lmf_kernels::cpu::swiglu::{glu_backward, glu_forward, GluActivation};

const T: usize = 1024;
const H: usize = 2048;
const F: usize = 5632;

fn bytes(floats: usize) -> Throughput {
    Throughput::Bytes((floats * 4) as u64)
}

fn rmsnorm(c: &mut Criterion) {
    let (x, w, dy) = (inputs(T * H, 1), inputs(H, 2), inputs(T * H, 3));
    let (mut y, mut rstd) = (vec![0.0f32; T * H], vec![0.0f32; T]);
    let (mut dx, mut dw) = (vec![0.0f32; T * H], vec![0.0f32; H]);
    let mut g = c.benchmark_group("rmsnorm_f32_1024x2048");
    g.throughput(bytes(2 * T * H));
    g.bench_function("forward", |b| {
        b.iter(|| rmsnorm_forward(&x, &w, T, H, 1e-6, 0.0, &mut y, &mut rstd))
    });
    g.throughput(bytes(3 * T * H));
    g.bench_function("backward", |b| {
        b.iter(|| rmsnorm_backward(&dy, &x, &w, &rstd, T, H, 0.0, &mut dx, &mut dw))
    });
    g.finish();
}

fn rope(c: &mut Criterion) {
    let (heads, d) = (32, 64);
    let cfg = RopeConfig {
        head_dim: d,
        rotary_dim: d,
        theta: 500_000.0,
        max_position_embeddings: 8192,
        scaling: RopeScaling::Default,
    };
    let pos: Vec<i64> = (0..T as i64).collect();
    let (cos, sin) = rope_tables::<f32>(&cfg, &pos);
    let x = inputs(T * heads * d, 1);
    let mut y = vec![0.0f32; T * heads * d];
    let mut g = c.benchmark_group("rope_f32_1024x32x64");
    g.throughput(bytes(2 * T * heads * d));
    g.bench_function("forward", |b| {
        b.iter(|| rope_forward(&x, &cos, &sin, T, heads, d, d, &mut y))
    });
    g.bench_function("backward", |b| {
        b.iter(|| rope_backward(&x, &cos, &sin, T, heads, d, d, &mut y))
    });
    g.finish();
}

fn swiglu(c: &mut Criterion) {
    let (gate, up, dout) = (inputs(T * F, 1), inputs(T * F, 2), inputs(T * F, 3));
    let mut out = vec![0.0f32; T * F];
    let (mut dg, mut du) = (vec![0.0f32; T * F], vec![0.0f32; T * F]);
    let mut g = c.benchmark_group("swiglu_f32_1024x5632");
    g.throughput(bytes(3 * T * F));
    g.bench_function("forward", |b| {
        b.iter(|| glu_forward(GluActivation::Silu, &gate, &up, &mut out))
    });
    g.throughput(bytes(5 * T * F));
    g.bench_function("backward", |b| {
        b.iter(|| glu_backward(GluActivation::Silu, &dout, &gate, &up, &mut dg, &mut du))
    });
    g.finish();
}

fn embedding(c: &mut Criterion) {
    let vocab = 32000;
    let table = inputs(vocab * H, 1);
    let ids: Vec<i64> = (0..T as i64).map(|t| (t * 7919) % vocab as i64).collect();
    let mut out = vec![0.0f32; T * H];
    let mut dtable = vec![0.0f32; vocab * H];
    let mut g = c.benchmark_group("embedding_f32_v32000_h2048_t1024");
    g.throughput(bytes(2 * T * H));
    g.bench_function("forward", |b| {
        b.iter(|| embedding_forward(&ids, &table, vocab, H, &mut out))
    });
    g.bench_function("backward", |b| {
        b.iter(|| embedding_backward(&ids, &out, vocab, H, &mut dtable))
    });
    g.finish();
}

fn adamw(c: &mut Criterion) {
    let n = H * F;
    let grad = inputs(n, 1);
    let (mut p, mut m, mut v) = (inputs(n, 2), vec![0.0f32; n], vec![0.0f32; n]);
    let params = AdamWParams {
        lr: 1e-4,
        weight_decay: 0.01,
        ..AdamWParams::default()
    };
    let mut g = c.benchmark_group("adamw_f32_2048x5632");
    // reads p, g, m, v; writes p, m, v
    g.throughput(bytes(7 * n));
    g.bench_function("step", |b| {
        b.iter(|| adamw_step(&mut p, &grad, &mut m, &mut v, &params))
    });
    g.finish();
}

criterion_group!(benches, rmsnorm, rope, swiglu, embedding, adamw);
criterion_main!(benches);
