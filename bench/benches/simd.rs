//! lmf's own vector code (`kernels/src/cpu/simd/`) against what it replaced, one thread:
//! - `exp` of 1 Mi floats in [−20, 20]: the vector `exp` (at the CPU's level, `LMF_SIMD`
//!   caps it) against the scalar loop of `f32::exp` (the platform's libm);
//! - the softmax row of attention's online softmax (max, then `exp(x − max)` and its sum)
//!   over 64-wide rows;
//! - one attention tile product, 64 × 64 · 64 × 64 (accumulated, as `P·V`): `tile_gemm`
//!   against `gemm_serial` (the `gemm` crate, which packs on every call);
//! - the activations on 1 Mi floats (`activations_1Mi_f32`): `ln`, `tanh` and the sigmoid
//!   slice functions, and the GLU forward and backward (SiLU and tanh-GELU, `glu_forward`
//!   / `glu_backward` as the MLP calls them), each against the scalar loop of the platform's
//!   `ln` / `tanh` / `exp` that they replace (for the GLU, the formulas of
//!   `swiglu::act_and_grad`). The GLU runs its rayon tasks: this bench sets
//!   `RAYON_NUM_THREADS=1` (unless it is set) so that they run on one thread too.

use criterion::{criterion_group, Criterion, Throughput};
use lmf_bench::inputs;
use lmf_kernels::cpu::gemm::{gemm_serial, MatMut, MatRef};
use lmf_kernels::cpu::simd::{
    exp_in_place, exp_shift_sum, ln_in_place, max_of, sigmoid_in_place, tanh_in_place, tile_gemm,
};
use lmf_kernels::cpu::swiglu::{glu_backward, glu_forward, GluActivation};
use std::hint::black_box;

fn math(c: &mut Criterion) {
    let n = 1 << 20;
    let x: Vec<f32> = inputs(n, 7).iter().map(|v| 20.0 * v).collect();
    let mut y = x.clone();
    let mut g = c.benchmark_group("exp_1Mi_f32");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("vector", |b| {
        b.iter(|| {
            y.copy_from_slice(&x);
            exp_in_place(&mut y);
            black_box(&y);
        })
    });
    g.bench_function("scalar_libm", |b| {
        b.iter(|| {
            for (o, v) in y.iter_mut().zip(&x) {
                *o = v.exp();
            }
            black_box(&y);
        })
    });
    g.bench_function("softmax_rows_64", |b| {
        b.iter(|| {
            y.copy_from_slice(&x);
            let mut total = 0.0f32;
            for row in y.chunks_mut(64) {
                let m = max_of(row, f32::NEG_INFINITY);
                total += exp_shift_sum(row, m);
            }
            black_box(total)
        })
    });
    g.finish();

    let (m, k, nn) = (64, 64, 64);
    let (a, bm) = (inputs(m * k, 1), inputs(k * nn, 2));
    let mut out = vec![0f32; m * nn];
    let mut g = c.benchmark_group("tile_product_64x64x64_f32");
    g.throughput(Throughput::Elements((2 * m * k * nn) as u64));
    g.bench_function("tile_gemm", |b| {
        b.iter(|| {
            tile_gemm(
                MatMut::new(&mut out, m, nn),
                MatRef::new(&a, m, k),
                MatRef::new(&bm, k, nn),
                true,
                1.0,
            )
        })
    });
    g.bench_function("gemm_serial", |b| {
        b.iter(|| {
            gemm_serial(
                MatMut::new(&mut out, m, nn),
                MatRef::new(&a, m, k),
                MatRef::new(&bm, k, nn),
                true,
                1.0,
            )
        })
    });
    g.finish();
}

/// The scalar GLU activation and its derivative in f32, as `swiglu::act_and_grad` computes
/// them at the portable level.
#[inline(always)]
fn act_and_grad(act: GluActivation, g: f32) -> (f32, f32) {
    match act {
        GluActivation::Silu => {
            let s = (1.0 + (-g).exp()).recip();
            (g * s, s * (1.0 + g * (1.0 - s)))
        }
        GluActivation::GeluTanh => {
            let (k, c, half) = (0.797_884_560_802_865_4_f64 as f32, 0.044715f32, 0.5f32);
            let g2 = g * g;
            let t = (k * g * (1.0 + c * g2)).tanh();
            let f = half * g * (1.0 + t);
            let df = half * (1.0 + t) + half * g * (1.0 - t * t) * k * (1.0 + 3.0 * c * g2);
            (f, df)
        }
    }
}

fn activations(c: &mut Criterion) {
    let n = 1 << 20;
    let base = inputs(n, 11);
    let mut y = vec![0f32; n];
    let mut g = c.benchmark_group("activations_1Mi_f32");
    g.throughput(Throughput::Elements(n as u64));

    // ln over (0, 100]; tanh over [−5, 5]; the sigmoid over [−20, 20]
    let pos: Vec<f32> = base.iter().map(|v| 50.0 * (v + 1.0) + 1e-3).collect();
    let sym5: Vec<f32> = base.iter().map(|v| 5.0 * v).collect();
    let sym20: Vec<f32> = base.iter().map(|v| 20.0 * v).collect();
    type Slice = fn(&mut [f32]);
    type Scalar = fn(f32) -> f32;
    let unary: [(&str, &[f32], Slice, Scalar); 3] = [
        ("ln", &pos, ln_in_place::<f32>, f32::ln),
        ("tanh", &sym5, tanh_in_place::<f32>, f32::tanh),
        ("sigmoid", &sym20, sigmoid_in_place::<f32>, |x| {
            (1.0 + (-x).exp()).recip()
        }),
    ];
    for (name, x, vector, scalar) in unary {
        g.bench_function(format!("{name}_vector"), |b| {
            b.iter(|| {
                y.copy_from_slice(x);
                vector(&mut y);
                black_box(&y);
            })
        });
        g.bench_function(format!("{name}_scalar"), |b| {
            b.iter(|| {
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = scalar(v);
                }
                black_box(&y);
            })
        });
    }

    // the GLU: gate over [−6, 6], up and dout over [−1, 1]
    let gate: Vec<f32> = base.iter().map(|v| 6.0 * v).collect();
    let up = inputs(n, 12);
    let dout = inputs(n, 13);
    let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
    for (name, act) in [
        ("silu", GluActivation::Silu),
        ("gelu_tanh", GluActivation::GeluTanh),
    ] {
        g.bench_function(format!("glu_forward_{name}_vector"), |b| {
            b.iter(|| {
                glu_forward(act, &gate, &up, &mut y);
                black_box(&y);
            })
        });
        g.bench_function(format!("glu_forward_{name}_scalar"), |b| {
            b.iter(|| {
                for ((o, &g), &u) in y.iter_mut().zip(&gate).zip(&up) {
                    *o = act_and_grad(act, g).0 * u;
                }
                black_box(&y);
            })
        });
        g.bench_function(format!("glu_backward_{name}_vector"), |b| {
            b.iter(|| {
                glu_backward(act, &dout, &gate, &up, &mut dg, &mut du);
                black_box((&dg, &du));
            })
        });
        g.bench_function(format!("glu_backward_{name}_scalar"), |b| {
            b.iter(|| {
                for i in 0..n {
                    let (a, da) = act_and_grad(act, gate[i]);
                    dg[i] = dout[i] * up[i] * da;
                    du[i] = dout[i] * a;
                }
                black_box((&dg, &du));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, math, activations);

fn main() {
    // one thread for the GLU's rayon tasks too (read when the pool starts, on first use)
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
