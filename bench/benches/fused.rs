//! The fused kernels at realistic sizes (hidden 2048): linear + cross-entropy (vocab 32000,
//! 256 tokens), LoRA linear (1024 tokens, 2048 → 2048, rank 16) and 4/8-bit dequant matmul
//! (a 2048 × 2048 weight: GEMV for decode, 256 tokens for training). Throughput counts the
//! FLOPs of the dense products (elements/s = FLOP/s), and bytes of weight read for GEMV.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lmf_bench::inputs;
use lmf_kernels::cpu::linear_ce::{linear_ce_forward, linear_ce_fwd_bwd, CeOptions};
use lmf_kernels::cpu::lora::{lora_backward, lora_forward, LoraDropout, LoraGrads};
use lmf_kernels::cpu::quant::{dequant_matmul, quantize_4bit, quantize_int8_rows, FourBit};

fn linear_ce(c: &mut Criterion) {
    let (n, h, v) = (256, 2048, 32000);
    let (x, w) = (inputs(n * h, 1), inputs(v * h, 2));
    let labels: Vec<i64> = (0..n as i64).map(|t| (t * 7919) % v as i64).collect();
    let opts = CeOptions::default();
    let (mut dx, mut dw) = (vec![0.0f32; n * h], vec![0.0f32; v * h]);
    let flops = (2 * n * h * v) as u64;
    let mut g = c.benchmark_group("linear_ce_f32_n256_h2048_v32000");
    g.sample_size(10);
    g.throughput(Throughput::Elements(flops));
    g.bench_function("forward", |b| {
        b.iter(|| linear_ce_forward(&x, &w, &labels, n, h, v, &opts))
    });
    g.throughput(Throughput::Elements(3 * flops));
    g.bench_function("forward_backward", |b| {
        b.iter(|| {
            linear_ce_fwd_bwd(
                &x,
                &w,
                &labels,
                n,
                h,
                v,
                &opts,
                1.0 / n as f32,
                Some(&mut dx),
                Some(&mut dw),
            )
        })
    });
    g.finish();
}

fn lora(c: &mut Criterion) {
    let (n, fin, fout, r) = (1024, 2048, 2048, 16);
    let (x, w) = (inputs(n * fin, 1), inputs(fout * fin, 2));
    let (a, bm) = (inputs(r * fin, 3), inputs(fout * r, 4));
    let drop = LoraDropout {
        p: 0.05,
        seed: 1,
        offset: 0,
    };
    let (mut y, mut xa) = (vec![0.0f32; n * fout], vec![0.0f32; n * r]);
    let dy = inputs(n * fout, 5);
    let (mut dx, mut da, mut db) = (
        vec![0.0f32; n * fin],
        vec![0.0; r * fin],
        vec![0.0; fout * r],
    );
    let flops = (2 * n * fin * fout + 2 * n * r * (fin + fout)) as u64;
    let mut g = c.benchmark_group("lora_f32_n1024_2048x2048_r16_dropout");
    g.sample_size(10);
    g.throughput(Throughput::Elements(flops));
    g.bench_function("forward", |b| {
        b.iter(|| {
            lora_forward(
                &x,
                &w,
                None,
                &a,
                &bm,
                n,
                fin,
                fout,
                r,
                2.0,
                Some(&drop),
                &mut y,
                &mut xa,
            )
        })
    });
    // backward with frozen W: dx (full width) + the low-rank grads
    g.throughput(Throughput::Elements(
        flops + (4 * n * r * (fin + fout)) as u64,
    ));
    g.bench_function("backward", |b| {
        b.iter(|| {
            let grads = LoraGrads {
                dx: Some(&mut dx),
                da: &mut da,
                db: &mut db,
                dw: None,
                dbias: None,
            };
            lora_backward(
                &dy,
                &x,
                &w,
                &a,
                &bm,
                &xa,
                n,
                fin,
                fout,
                r,
                2.0,
                Some(&drop),
                grads,
            )
        })
    });
    g.finish();
}

fn dequant(c: &mut Criterion) {
    let (fout, fin) = (2048, 2048);
    let wf = inputs(fout * fin, 1);
    let nf4 = quantize_4bit(&wf, &[fout, fin], FourBit::Nf4, 64, true);
    let int8 = quantize_int8_rows(&wf, fout, fin);
    let mut g = c.benchmark_group("dequant_matmul_2048x2048");
    g.sample_size(20);
    let x1 = inputs(fin, 2);
    let mut y1 = vec![0.0f32; fout];
    // GEMV is bandwidth-bound: report weight bytes read per second
    g.throughput(Throughput::Bytes((fout * fin / 2) as u64));
    g.bench_function("nf4_gemv", |b| {
        b.iter(|| dequant_matmul(&x1, &nf4, 1, &mut y1))
    });
    g.throughput(Throughput::Bytes((fout * fin) as u64));
    g.bench_function("int8_gemv", |b| {
        b.iter(|| dequant_matmul(&x1, &int8, 1, &mut y1))
    });
    let n = 256;
    let x = inputs(n * fin, 3);
    let mut y = vec![0.0f32; n * fout];
    g.throughput(Throughput::Elements((2 * n * fin * fout) as u64));
    g.bench_function("nf4_matmul_n256", |b| {
        b.iter(|| dequant_matmul(&x, &nf4, n, &mut y))
    });
    g.bench_function("int8_matmul_n256", |b| {
        b.iter(|| dequant_matmul(&x, &int8, n, &mut y))
    });
    g.finish();
}

criterion_group!(benches, linear_ce, lora, dequant);
criterion_main!(benches);
