//! Every fused autograd op on a CUDA device against the same op on the CPU: forward output
//! and every input gradient, for f32 and bf16 storage, on shapes with odd sizes. The loss is
//! `Σ y · r` with a fixed random `r`, so each gradient is the op's backward of a dense `dy`.
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.

use lmf_autograd::ops::fused::{
    attention, attention_with_sinks, embedding, glu, grouped_matmul, linear_cross_entropy,
    linear_logprobs, lora_linear, rmsnorm, rope, rope_cos_sin, AttnParams, CeOptions, CeReduction,
    GluActivation, LoraDropout, RopeConfig, RopeScaling,
};
use lmf_autograd::Var;
use lmf_kernels::cuda::testing::{assert_rel_close, gpu_or_skip, tolerance};
use lmf_kernels::testing::{rand_vec, Lcg};
use lmf_runtime::{DType, Device, Result, Tensor};

const GPU: Device = Device::Cuda(0);

/// A random f32 host tensor rounded through `dtype` (so both devices see the same numbers).
fn rnd(shape: &[usize], seed: u64, scale: f64, dtype: DType) -> Tensor {
    let mut rng = Lcg::new(seed);
    let n = shape.iter().product();
    Tensor::from_vec(rand_vec::<f32>(&mut rng, n, scale), shape, Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Runs `f` on the CPU (in f32) and on the GPU (in `dtype`) with the same inputs, then
/// compares the outputs and the gradients of `Σ y · r` for every input.
fn compare(what: &str, dtype: DType, inputs: &[Tensor], f: impl Fn(&[Var]) -> Result<Var>) {
    let run = |device: Device, dt: DType| -> (Vec<f32>, Vec<Vec<f32>>) {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::param(t.to_dtype(dt).unwrap().to_device(device).unwrap()))
            .collect();
        let y = f(&vars).unwrap();
        let shape = y.tensor().shape().to_vec();
        let r = rnd(&shape, 99, 1.0, dtype)
            .to_dtype(y.tensor().dtype())
            .unwrap();
        let r = Var::constant(r.to_device(device).unwrap());
        let loss = y.mul(&r).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        let out = y.tensor().to_vec::<f32>().unwrap();
        let grads = vars
            .iter()
            .map(|v| {
                g.get(v)
                    .map(|t| t.to_vec::<f32>().unwrap())
                    .unwrap_or_default()
            })
            .collect();
        (out, grads)
    };
    let (y_cpu, g_cpu) = run(Device::Cpu, DType::F32);
    let (y_gpu, g_gpu) = run(GPU, dtype);
    let tol = tolerance(if dtype == DType::F32 { "f32" } else { "bf16" });
    let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    assert_rel_close(&format!("{what} {dtype} y"), &y_gpu, &f64s(&y_cpu), tol);
    for (i, (gg, gc)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        assert_rel_close(&format!("{what} {dtype} grad {i}"), gg, &f64s(gc), tol);
    }
}

#[test]
fn fused_ops_on_cuda_match_the_cpu() {
    let Some(_gpu) = gpu_or_skip("fused_ops_on_cuda_match_the_cpu") else {
        return;
    };
    for dtype in [DType::F32, DType::BF16] {
        let d = dtype;
        // RMSNorm: rows 37, dim 130.
        compare(
            "rmsnorm",
            d,
            &[rnd(&[37, 130], 1, 1.0, d), rnd(&[130], 2, 1.0, d)],
            |v| rmsnorm(&v[0], &v[1], 1e-6, 0.0),
        );
        // SwiGLU and GeGLU: [29, 67].
        for act in [GluActivation::Silu, GluActivation::GeluTanh] {
            compare(
                "glu",
                d,
                &[rnd(&[29, 67], 3, 2.0, d), rnd(&[29, 67], 4, 1.0, d)],
                move |v| glu(&v[0], &v[1], act),
            );
        }
        // RoPE: 13 tokens, 3 heads, head_dim 64, full and partial rotary.
        for rotary in [64, 32] {
            let cfg = RopeConfig {
                head_dim: 64,
                rotary_dim: rotary,
                theta: 10000.0,
                max_position_embeddings: 4096,
                scaling: RopeScaling::Default,
            };
            let pos: Vec<i64> = (0..13).map(|p| (p * 7 % 13) as i64).collect();
            compare("rope", d, &[rnd(&[13, 3, 64], 5, 1.0, d)], move |v| {
                let dev = v[0].tensor().device();
                let (c, s) = rope_cos_sin(&cfg, &pos, v[0].tensor().dtype(), dev)?;
                rope(&v[0], &c, &s, rotary)
            });
        }
        // Embedding: vocab 50, dim 33, repeated ids.
        let ids: Vec<i64> = (0..41).map(|i| (i * 13 % 50) as i64).collect();
        compare("embedding", d, &[rnd(&[50, 33], 6, 1.0, d)], move |v| {
            let dev = v[0].tensor().device();
            embedding(&v[0], &Tensor::from_vec(ids.clone(), &[41], dev)?)
        });
        // Flash attention: two packed sequences (37 + 90), GQA 4/2, head_dim 64, causal and
        // a sliding window; without and with GPT-OSS sinks (one logit per head).
        for window in [None, Some(16)] {
            for sinks in [false, true] {
                let p = AttnParams {
                    num_heads: 4,
                    num_kv_heads: 2,
                    head_dim: 64,
                    causal: true,
                    window,
                    scale: 0.125,
                    softcap: None,
                };
                let cu = [0usize, 37, 127];
                let mut inputs = vec![
                    rnd(&[127, 4, 64], 7, 1.0, d),
                    rnd(&[127, 2, 64], 8, 1.0, d),
                    rnd(&[127, 2, 64], 9, 1.0, d),
                ];
                if sinks {
                    inputs.push(rnd(&[4], 30, 2.0, d));
                }
                compare("attention", d, &inputs, move |v| match v.get(3) {
                    Some(s) => attention_with_sinks(&v[0], &v[1], &v[2], s, &cu, &cu, &p),
                    None => attention(&v[0], &v[1], &v[2], &cu, &cu, &p),
                });
            }
        }
        // Grouped matmul of a MoE layer: 5 experts, one without rows, one past a 64-row tile;
        // k 72, n 40.
        let offsets = [0usize, 3, 3, 80, 81, 150];
        compare(
            "grouped_matmul",
            d,
            &[rnd(&[150, 72], 31, 1.0, d), rnd(&[5, 40, 72], 32, 0.2, d)],
            move |v| grouped_matmul(&v[0], &v[1], &offsets),
        );
        // LoRA linear: n 23, in 96, out 80, rank 8, with bias, dropout 0.1.
        let drop = LoraDropout {
            p: 0.1,
            seed: 7,
            offset: 0,
        };
        compare(
            "lora_linear",
            d,
            &[
                rnd(&[23, 96], 10, 1.0, d),
                rnd(&[80, 96], 11, 0.1, d),
                rnd(&[80], 12, 0.1, d),
                rnd(&[8, 96], 13, 0.1, d),
                rnd(&[80, 8], 14, 0.1, d),
            ],
            move |v| lora_linear(&v[0], &v[1], Some(&v[2]), &v[3], &v[4], 2.0, Some(drop)),
        );
        // Fused linear + CE: 45 tokens (some ignored), hidden 64, vocab 1003; compared as the
        // loss times r (a scalar) and the gradients.
        let labels: Vec<i64> = (0..45)
            .map(|i| {
                if i % 7 == 3 {
                    -100
                } else {
                    (i * 31 % 1003) as i64
                }
            })
            .collect();
        compare(
            "linear_ce",
            d,
            &[rnd(&[45, 64], 15, 1.0, d), rnd(&[1003, 64], 16, 0.2, d)],
            {
                let labels = labels.clone();
                move |v| {
                    let dev = v[0].tensor().device();
                    let lab = Tensor::from_vec(labels.clone(), &[45], dev)?;
                    linear_cross_entropy(
                        &v[0],
                        &v[1],
                        &lab,
                        &CeOptions::default(),
                        CeReduction::Mean,
                    )
                }
            },
        );
        // Per-token log-probs: the gradient of Σ logp·r runs the recomputing backward.
        compare(
            "linear_logprobs",
            d,
            &[rnd(&[45, 64], 17, 1.0, d), rnd(&[1003, 64], 18, 0.2, d)],
            move |v| {
                let dev = v[0].tensor().device();
                let lab = Tensor::from_vec(labels.clone(), &[45], dev)?;
                linear_logprobs(&v[0], &v[1], &lab, &CeOptions::default())
            },
        );
    }
}
