//! Flash-style CPU attention, forward and backward: causal, GQA (32 query heads over 8 kv
//! heads, head_dim 64, hidden 2048), one sequence of 1024 tokens. Throughput counts the
//! useful FLOPs of the causal product (half the square): forward 4·s²·h·d/2, backward
//! 2.5× that (FlashAttention's convention).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lmf_bench::inputs;
use lmf_kernels::cpu::attention::{attention_backward, attention_forward, AttnParams};

fn attention(c: &mut Criterion) {
    let (s, h, hkv, d) = (1024, 32, 8, 64);
    let p = AttnParams {
        num_heads: h,
        num_kv_heads: hkv,
        head_dim: d,
        causal: true,
        window: None,
        scale: 1.0 / (d as f64).sqrt(),
        softcap: None,
    };
    let (q, k, v) = (
        inputs(s * h * d, 1),
        inputs(s * hkv * d, 2),
        inputs(s * hkv * d, 3),
    );
    let cu = [0, s];
    let (mut out, mut lse) = (vec![0.0f32; s * h * d], vec![0.0f32; h * s]);
    let dout = inputs(s * h * d, 4);
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    let fwd_flops = (4 * s * s * h * d / 2) as u64;

    let mut g = c.benchmark_group("attention_f32_s1024_h32_kv8_d64_causal");
    g.sample_size(10);
    g.throughput(Throughput::Elements(fwd_flops));
    g.bench_function("forward", |b| {
        b.iter(|| attention_forward(&q, &k, &v, &cu, &cu, &p, &mut out, &mut lse))
    });
    g.throughput(Throughput::Elements(fwd_flops * 5 / 2));
    g.bench_function("backward", |b| {
        b.iter(|| {
            attention_backward(
                &dout, &q, &k, &v, &out, &lse, &cu, &cu, &p, &mut dq, &mut dk, &mut dv,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, attention);
criterion_main!(benches);
