//! Gradient checks of the fused kernel nodes through the autograd path (f64, small odd
//! sizes), plus their user-facing shape validation.

use lmf_autograd::gradcheck::{check_grads, GradCheck};
use lmf_autograd::ops::fused::{
    attention, embedding, geglu, glu, glu_matmul, linear_cross_entropy, linear_logprobs,
    lora_linear, rmsnorm, rope, rope_cos_sin, swiglu, AttnParams, CeOptions, CeReduction,
    GluActivation, LoraDropout, RopeConfig, RopeScaling,
};
use lmf_autograd::Var;
use lmf_kernels::testing::Lcg;
use lmf_runtime::{DType, Device, Tensor};

fn rnd(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let mut rng = Lcg::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.sym(scale)).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn params(
    h: usize,
    hkv: usize,
    d: usize,
    causal: bool,
    window: Option<usize>,
    softcap: Option<f64>,
) -> AttnParams {
    AttnParams {
        num_heads: h,
        num_kv_heads: hkv,
        head_dim: d,
        causal,
        window,
        scale: 1.0 / (d as f64).sqrt(),
        softcap,
    }
}

#[test]
fn attention_grad_varlen_gqa() {
    // two packed sequences (5 and 8 tokens), 6 query heads over 2 kv heads (group 3)
    let cu = [0usize, 5, 13];
    let configs = [
        params(6, 2, 3, true, None, None),
        params(6, 2, 3, false, None, None),
        params(6, 2, 3, true, Some(3), None),
        params(3, 3, 5, true, None, Some(2.0)),
    ];
    for p in configs {
        let (h, hkv, d) = (p.num_heads, p.num_kv_heads, p.head_dim);
        let inputs = [
            rnd(&[13, h, d], 1, 1.0),
            rnd(&[13, hkv, d], 2, 1.0),
            rnd(&[13, hkv, d], 3, 1.0),
        ];
        check_grads(&format!("attention {p:?}"), &inputs, |v| {
            attention(&v[0], &v[1], &v[2], &cu, &cu, &p)
        })
        .unwrap();
    }
    // cross lengths: 4 queries attend to 7 keys (bottom-right causal)
    let p = params(2, 1, 4, true, None, None);
    let inputs = [
        rnd(&[4, 2, 4], 4, 1.0),
        rnd(&[7, 1, 4], 5, 1.0),
        rnd(&[7, 1, 4], 6, 1.0),
    ];
    check_grads("attention sq != sk", &inputs, |v| {
        attention(&v[0], &v[1], &v[2], &[0, 4], &[0, 7], &p)
    })
    .unwrap();
}

#[test]
fn attention_rejects_bad_shapes() {
    let p = params(4, 2, 3, true, None, None);
    let q = Var::param(rnd(&[5, 4, 3], 1, 1.0));
    let k = Var::param(rnd(&[5, 2, 3], 2, 1.0));
    assert!(attention(&q, &k, &k, &[0, 5], &[0, 5], &p).is_ok());
    assert!(
        attention(&q, &k, &k, &[0, 4], &[0, 5], &p).is_err(),
        "cu does not end at total"
    );
    assert!(
        attention(&q, &q, &q, &[0, 5], &[0, 5], &p).is_err(),
        "k has wrong heads"
    );
    let bad = params(4, 3, 3, true, None, None);
    assert!(
        attention(&q, &k, &k, &[0, 5], &[0, 5], &bad).is_err(),
        "kv heads do not divide"
    );
}

#[test]
fn rope_grad_and_partial_rotary() {
    let positions: Vec<i64> = vec![0, 1, 2, 3, 4, 0, 1, 2, 3]; // two packed sequences
    for (rotary, scaling) in [
        (6, RopeScaling::Default),
        (4, RopeScaling::Linear { factor: 2.0 }),
    ] {
        let cfg = RopeConfig {
            head_dim: 6,
            rotary_dim: rotary,
            theta: 10000.0,
            max_position_embeddings: 64,
            scaling,
        };
        let (cos, sin) = rope_cos_sin(&cfg, &positions, DType::F64, Device::Cpu).unwrap();
        check_grads("rope", &[rnd(&[9, 3, 6], 7, 1.0)], |v| {
            rope(&v[0], &cos, &sin, rotary)
        })
        .unwrap();
    }
    // position 0 is the identity; leading batch dims fold into tokens
    let cfg = RopeConfig {
        head_dim: 4,
        rotary_dim: 4,
        theta: 10000.0,
        max_position_embeddings: 64,
        scaling: RopeScaling::Default,
    };
    let (cos, sin) = rope_cos_sin(&cfg, &[0, 0], DType::F64, Device::Cpu).unwrap();
    let x = Var::param(rnd(&[2, 1, 1, 4], 8, 1.0));
    let y = rope(&x, &cos, &sin, 4).unwrap();
    assert_eq!(
        y.tensor().to_vec::<f64>().unwrap(),
        x.tensor().to_vec::<f64>().unwrap()
    );
    assert!(rope(&x, &cos, &sin, 5).is_err());
}

#[test]
fn lora_linear_grad() {
    // x: [2, 3, 5] -> y: [2, 3, 4], rank 2; base weight and bias differentiable too
    for dropout in [
        None,
        Some(LoraDropout {
            p: 0.3,
            seed: 11,
            offset: 5,
        }),
    ] {
        for with_bias in [true, false] {
            let mut inputs = vec![
                rnd(&[2, 3, 5], 1, 1.0),
                rnd(&[4, 5], 2, 1.0),
                rnd(&[2, 5], 3, 1.0),
                rnd(&[4, 2], 4, 1.0),
            ];
            if with_bias {
                inputs.push(rnd(&[4], 5, 1.0));
            }
            check_grads("lora_linear", &inputs, |v| {
                lora_linear(&v[0], &v[1], v.get(4), &v[2], &v[3], 1.7, dropout)
            })
            .unwrap();
        }
    }
    // frozen base: no grad for w, but A and B get theirs
    let x = Var::constant(rnd(&[3, 5], 1, 1.0));
    let w = Var::constant(rnd(&[4, 5], 2, 1.0));
    let (a, b) = (
        Var::param(rnd(&[2, 5], 3, 1.0)),
        Var::param(rnd(&[4, 2], 4, 1.0)),
    );
    let g = lora_linear(&x, &w, None, &a, &b, 2.0, None)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(&w).is_none() && g.get(&a).is_some() && g.get(&b).is_some());
    assert!(
        lora_linear(&x, &w, None, &b, &a, 2.0, None).is_err(),
        "A/B swapped"
    );
}

#[test]
fn linear_ce_grad() {
    // x: [7, 5], w: [vocab 11, 5]; tokens 0 and 4 ignored
    let labels = Tensor::from_slice(&[-100i64, 3, 10, 0, -100, 7, 7], &[7], Device::Cpu).unwrap();
    let opts = [
        CeOptions::default(),
        CeOptions {
            label_smoothing: 0.1,
            z_loss: 1e-2,
            softcap: Some(3.0),
            chunk: 3,
            ..CeOptions::default()
        },
    ];
    for o in opts {
        for red in [
            CeReduction::Mean,
            CeReduction::Sum,
            CeReduction::Divide(9.0),
        ] {
            check_grads(
                &format!("linear_ce {o:?} {red:?}"),
                &[rnd(&[7, 5], 1, 1.0), rnd(&[11, 5], 2, 1.0)],
                |v| linear_cross_entropy(&v[0], &v[1], &labels, &o, red),
            )
            .unwrap();
        }
    }
    // [batch, seq, hidden] input, upstream grad != 1 (loss scaled), and matches the unfused CE
    let x = Var::param(rnd(&[1, 7, 5], 1, 1.0));
    let w = Var::param(rnd(&[11, 5], 2, 1.0));
    let loss =
        linear_cross_entropy(&x, &w, &labels, &CeOptions::default(), CeReduction::Mean).unwrap();
    assert_eq!(loss.shape(), &[] as &[usize]);
    let logits = x
        .reshape(&[7, 5])
        .unwrap()
        .matmul(&w.t().unwrap())
        .unwrap()
        .log_softmax(1)
        .unwrap();
    let valid: Vec<usize> = vec![1, 2, 3, 5, 6];
    let lab = [3usize, 10, 0, 7, 7];
    let lp = logits.tensor().to_vec::<f64>().unwrap();
    let reference: f64 = -valid
        .iter()
        .zip(lab)
        .map(|(&t, y)| lp[t * 11 + y])
        .sum::<f64>()
        / 5.0;
    assert!((loss.tensor().to_scalar::<f64>().unwrap() - reference).abs() < 1e-12);
    let chk = GradCheck::default();
    chk.run(
        "linear_ce scaled",
        &[rnd(&[1, 7, 5], 1, 1.0), rnd(&[11, 5], 2, 1.0)],
        |v| {
            linear_cross_entropy(
                &v[0],
                &v[1],
                &labels,
                &CeOptions::default(),
                CeReduction::Mean,
            )?
            .scale(3.5)
        },
    )
    .unwrap();
    // a label outside the vocabulary is an error, not a panic
    let bad = Tensor::from_slice(&[11i64, 0, 0, 0, 0, 0, 0], &[7], Device::Cpu).unwrap();
    assert!(linear_cross_entropy(&x, &w, &bad, &CeOptions::default(), CeReduction::Mean).is_err());
}

#[test]
fn fused_nodes_run_in_f32() {
    // f32 tensors go through the f32 kernels and keep their dtype.
    let q = Var::param(rnd(&[5, 2, 4], 1, 1.0).to_dtype(DType::F32).unwrap());
    let y = attention(
        &q,
        &q,
        &q,
        &[0, 5],
        &[0, 5],
        &params(2, 2, 4, true, None, None),
    )
    .unwrap();
    assert_eq!(y.dtype(), DType::F32);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&q).unwrap().dtype(), DType::F32);
}

#[test]
fn rmsnorm_grad() {
    for offset in [0.0, 1.0] {
        let inputs = [rnd(&[3, 37], 1, 1.0), rnd(&[37], 2, 1.0)];
        check_grads(&format!("rmsnorm offset {offset}"), &inputs, |v| {
            rmsnorm(&v[0], &v[1], 1e-5, offset)
        })
        .unwrap();
    }
    // leading dims fold into rows
    check_grads(
        "rmsnorm [2, 3, 5]",
        &[rnd(&[2, 3, 5], 3, 1.0), rnd(&[5], 4, 1.0)],
        |v| rmsnorm(&v[0], &v[1], 1e-6, 0.0),
    )
    .unwrap();
    let x = Var::param(rnd(&[3, 5], 1, 1.0));
    assert!(rmsnorm(&x, &Var::param(rnd(&[4], 2, 1.0)), 1e-5, 0.0).is_err());
}

#[test]
fn glu_grad() {
    let inputs = [rnd(&[3, 37], 1, 2.0), rnd(&[3, 37], 2, 1.0)];
    check_grads("swiglu", &inputs, |v| swiglu(&v[0], &v[1])).unwrap();
    check_grads("geglu", &inputs, |v| geglu(&v[0], &v[1])).unwrap();
    // matches the unfused composition
    let (g, u) = (Var::param(inputs[0].clone()), Var::param(inputs[1].clone()));
    let fused = swiglu(&g, &u).unwrap().tensor().to_vec::<f64>().unwrap();
    let plain = g
        .silu()
        .unwrap()
        .mul(&u)
        .unwrap()
        .tensor()
        .to_vec::<f64>()
        .unwrap();
    for (a, b) in fused.iter().zip(&plain) {
        assert!((a - b).abs() < 1e-14);
    }
    assert!(swiglu(&g, &Var::param(rnd(&[37, 3], 3, 1.0))).is_err());
}

#[test]
fn glu_matmul_grad_and_bits() {
    use lmf_autograd::tape_stats;
    for act in [GluActivation::Silu, GluActivation::GeluTanh] {
        // gate, up: [5, 37], b: a transposed [4, 37] weight, as a down projection takes it
        let inputs = [
            rnd(&[5, 37], 1, 2.0),
            rnd(&[5, 37], 2, 1.0),
            rnd(&[4, 37], 3, 1.0),
        ];
        check_grads(&format!("glu_matmul {act:?}"), &inputs, |v| {
            glu_matmul(&v[0], &v[1], act, &v[2].t()?)
        })
        .unwrap();
        // f32: the same bits as glu then matmul, forward and every gradient
        let f32s: Vec<Var> = inputs
            .iter()
            .map(|t| Var::param(t.to_dtype(DType::F32).unwrap()))
            .collect();
        let (g, u, w) = (&f32s[0], &f32s[1], &f32s[2]);
        let dy = Var::constant(rnd(&[5, 4], 4, 1.0).to_dtype(DType::F32).unwrap());
        let fused = glu_matmul(g, u, act, &w.t().unwrap()).unwrap();
        let plain = glu(g, u, act).unwrap().matmul(&w.t().unwrap()).unwrap();
        let bits = |v: &Var| v.tensor().to_vec::<f32>().unwrap();
        assert_eq!(bits(&fused), bits(&plain));
        // the fused node keeps gate, up and the weight, not the [5, 37] product
        let kept = |v: &Var| tape_stats(&[v]).saved_bytes;
        assert_eq!(kept(&fused) + 5 * 37 * 4, kept(&plain));
        let loss = |y: &Var| y.mul(&dy).unwrap().sum_all().unwrap();
        let (gf, gp) = (
            loss(&fused).backward().unwrap(),
            loss(&plain).backward().unwrap(),
        );
        for v in [g, u, w] {
            let grad = |gr: &lmf_autograd::Grads| gr.get(v).unwrap().to_vec::<f32>().unwrap();
            assert_eq!(grad(&gf), grad(&gp), "{act:?}");
        }
    }
}

#[test]
fn embedding_grad() {
    // repeated ids accumulate; [2, 3] ids -> [2, 3, 5]
    let ids = Tensor::from_slice(&[3i64, 0, 3, 6, 3, 1], &[2, 3], Device::Cpu).unwrap();
    check_grads("embedding", &[rnd(&[7, 5], 1, 1.0)], |v| {
        embedding(&v[0], &ids)
    })
    .unwrap();
    let table = Var::param(rnd(&[7, 5], 1, 1.0));
    assert_eq!(embedding(&table, &ids).unwrap().shape(), &[2, 3, 5]);
    let bad = Tensor::from_slice(&[7i64], &[1], Device::Cpu).unwrap();
    assert!(
        embedding(&table, &bad).is_err(),
        "id out of range is an error"
    );
}

#[test]
fn linear_logprobs_grad() {
    // x: [2 sequences, 4 tokens, 5], w: [vocab 11, 5]; the first token of each sequence is
    // prompt (ignored). A DPO-shaped loss: −log σ(β·(Σ logp_chosen − Σ logp_rejected)).
    let labels =
        Tensor::from_slice(&[-100i64, 3, 10, 0, -100, 7, 7, 2], &[2, 4], Device::Cpu).unwrap();
    let dpo = |v: &[Var], o: &CeOptions| -> lmf_autograd::Result<Var> {
        let logp = linear_logprobs(&v[0], &v[1], &labels, o)?; // [8]
        let seq = logp.reshape(&[2, 4])?.sum(&[1], false)?; // [2]
        let margin = seq
            .narrow(0, 0, 1)?
            .sub(&seq.narrow(0, 1, 1)?)?
            .scale(0.7)?;
        margin.sigmoid()?.log()?.neg()?.sum_all()
    };
    for o in [
        CeOptions {
            chunk: 3,
            ..CeOptions::default()
        },
        CeOptions {
            softcap: Some(2.0),
            ..CeOptions::default()
        },
    ] {
        check_grads(
            &format!("linear_logprobs {o:?}"),
            &[rnd(&[2, 4, 5], 3, 1.0), rnd(&[11, 5], 4, 1.0)],
            |v| dpo(v, &o),
        )
        .unwrap();
    }
    // The values are log_softmax at the label, 0 for ignored tokens.
    let (x, w) = (
        Var::param(rnd(&[2, 4, 5], 3, 1.0)),
        Var::param(rnd(&[11, 5], 4, 1.0)),
    );
    let logp = linear_logprobs(&x, &w, &labels, &CeOptions::default()).unwrap();
    assert_eq!(logp.shape(), &[8]);
    let lp = x
        .reshape(&[8, 5])
        .unwrap()
        .matmul(&w.t().unwrap())
        .unwrap()
        .log_softmax(1)
        .unwrap()
        .tensor()
        .to_vec::<f64>()
        .unwrap();
    let got = logp.tensor().to_vec::<f64>().unwrap();
    for (t, &y) in [-100i64, 3, 10, 0, -100, 7, 7, 2].iter().enumerate() {
        let want = if y < 0 { 0.0 } else { lp[t * 11 + y as usize] };
        assert!(
            (got[t] - want).abs() < 1e-12,
            "token {t}: {} vs {want}",
            got[t]
        );
    }
    // Smoothing has no meaning for a log-probability: an error, not a silent loss.
    let o = CeOptions {
        label_smoothing: 0.1,
        ..CeOptions::default()
    };
    assert!(linear_logprobs(&x, &w, &labels, &o).is_err());
}

/// With a frozen `w` (LoRA) the op keeps each token's gradient direction from the forward:
/// the same `dx` as the two-pass backward (where `w` needs a gradient too).
#[test]
fn linear_logprobs_frozen_weight_gives_the_same_dx() {
    let labels =
        Tensor::from_slice(&[-100i64, 3, 10, 0, -100, 7, 7, 2], &[2, 4], Device::Cpu).unwrap();
    let g = Tensor::from_slice(
        &[0.3f64, -1.0, 0.5, 2.0, 1.0, -0.2, 0.7, -1.5],
        &[8],
        Device::Cpu,
    )
    .unwrap();
    for o in [
        CeOptions {
            chunk: 3,
            ..CeOptions::default()
        },
        CeOptions {
            softcap: Some(2.0),
            ..CeOptions::default()
        },
    ] {
        let dx = |w_trains: bool| -> Vec<f64> {
            let x = Var::param(rnd(&[2, 4, 5], 3, 1.0));
            let w = Var::leaf(rnd(&[11, 5], 4, 1.0), w_trains);
            let logp = linear_logprobs(&x, &w, &labels, &o).unwrap();
            let loss = logp
                .mul(&Var::constant(g.clone()))
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            assert_eq!(grads.get(&x).unwrap().shape(), &[2, 4, 5]);
            grads.get(&x).unwrap().to_vec::<f64>().unwrap()
        };
        let (frozen, trained) = (dx(false), dx(true));
        for (a, b) in frozen.iter().zip(&trained) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn grouped_matmul_grad_with_an_empty_expert() {
    use lmf_autograd::ops::fused::grouped_matmul;
    // 4 experts over 9 routed rows; expert 2 gets none
    let offsets = [0usize, 2, 6, 6, 9];
    let inputs = [rnd(&[9, 5], 1, 1.0), rnd(&[4, 3, 5], 2, 1.0)];
    check_grads("grouped_matmul", &inputs, |v| {
        grouped_matmul(&v[0], &v[1], &offsets)
    })
    .unwrap();
    // each group's rows equal the dense product with that expert's weight
    let (x, w) = (
        Var::constant(inputs[0].clone()),
        Var::constant(inputs[1].clone()),
    );
    let y = grouped_matmul(&x, &w, &offsets).unwrap();
    for g in 0..4 {
        let rows = offsets[g + 1] - offsets[g];
        if rows == 0 {
            continue;
        }
        let xg = x.narrow(0, offsets[g], rows).unwrap();
        let wg = w.narrow(0, g, 1).unwrap().reshape(&[3, 5]).unwrap();
        let want = xg.matmul(&wg.t().unwrap()).unwrap();
        let got = y.narrow(0, offsets[g], rows).unwrap();
        let (a, b) = (
            got.tensor().to_vec::<f64>().unwrap(),
            want.tensor().to_vec::<f64>().unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-12));
    }
    // bad offsets are a shape error, not a panic
    assert!(grouped_matmul(&x, &w, &[0, 2, 6, 9]).is_err());
    assert!(grouped_matmul(&x, &w, &[0, 6, 2, 6, 9]).is_err());
}

/// MXFP4 experts kept 4-bit: the gradient to x matches finite differences (the experts are
/// frozen), and each group's rows equal the dense product with that expert dequantized.
#[test]
fn grouped_quant_matmul_grad_with_an_empty_expert() {
    use lmf_autograd::ops::fused::{grouped_matmul, grouped_quant_matmul};
    use lmf_kernels::cpu::quant::Mxfp4Experts;
    use std::sync::Arc;
    // 3 experts of [5, 32] over 6 routed rows; expert 1 gets none
    let (e, n, k) = (3, 5, 32);
    let mut rng = Lcg::new(11);
    let blocks = (0..e * n * 16).map(|_| rng.below(256) as u8).collect();
    let scales = (0..e * n).map(|_| 125 + rng.below(4) as u8).collect();
    let w = Arc::new(Mxfp4Experts::new(e, n, k, blocks, scales).unwrap());
    let offsets = [0usize, 2, 2, 6];
    let x = rnd(&[6, k], 3, 1.0);
    check_grads("grouped_quant_matmul", std::slice::from_ref(&x), |v| {
        grouped_quant_matmul(&v[0], &w, &offsets)
    })
    .unwrap();
    let dense = Tensor::from_vec(
        w.dequantize().iter().map(|&v| v as f64).collect(),
        &[e, n, k],
        Device::Cpu,
    )
    .unwrap();
    let xv = Var::param(x.clone());
    let y = grouped_quant_matmul(&xv, &w, &offsets).unwrap();
    let want = grouped_matmul(&Var::constant(x), &Var::constant(dense), &offsets).unwrap();
    let (a, b) = (
        y.tensor().to_vec::<f64>().unwrap(),
        want.tensor().to_vec::<f64>().unwrap(),
    );
    assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-12));
    assert!(a.iter().any(|&v| v != 0.0));
    // bad offsets and a wrong width are shape errors, not panics
    assert!(grouped_quant_matmul(&xv, &w, &[0, 2, 6]).is_err());
    assert!(grouped_quant_matmul(&xv, &w, &[0, 4, 2, 6]).is_err());
    let narrow = Var::constant(rnd(&[6, 16], 4, 1.0));
    assert!(grouped_quant_matmul(&narrow, &w, &offsets).is_err());
}

#[test]
fn attention_with_sinks_grad_and_definition() {
    use lmf_autograd::ops::fused::attention_with_sinks;
    let cu = [0usize, 5, 11];
    for p in [
        params(4, 2, 3, true, None, None),
        params(4, 2, 3, true, Some(2), None),
    ] {
        let inputs = [
            rnd(&[11, 4, 3], 1, 1.0),
            rnd(&[11, 2, 3], 2, 1.0),
            rnd(&[11, 2, 3], 3, 1.0),
            rnd(&[4], 4, 1.0),
        ];
        check_grads(&format!("attention sinks {p:?}"), &inputs, |v| {
            attention_with_sinks(&v[0], &v[1], &v[2], &v[3], &cu, &cu, &p)
        })
        .unwrap();
        // definition: softmax over [scores, sink], the sink's value 0
        let vars: Vec<Var> = inputs.iter().map(|t| Var::constant(t.clone())).collect();
        let got = attention_with_sinks(&vars[0], &vars[1], &vars[2], &vars[3], &cu, &cu, &p)
            .unwrap()
            .tensor()
            .to_vec::<f64>()
            .unwrap();
        let (q, k, v, s) = (
            inputs[0].to_vec::<f64>().unwrap(),
            inputs[1].to_vec::<f64>().unwrap(),
            inputs[2].to_vec::<f64>().unwrap(),
            inputs[3].to_vec::<f64>().unwrap(),
        );
        for b in 0..2 {
            for i in cu[b]..cu[b + 1] {
                for h in 0..4 {
                    let g = h / 2;
                    let keys: Vec<usize> = (cu[b]..=i)
                        .filter(|&j| p.window.is_none_or(|w| i - j < w))
                        .collect();
                    let sc: Vec<f64> = keys
                        .iter()
                        .map(|&j| {
                            (0..3)
                                .map(|x| q[(i * 4 + h) * 3 + x] * k[(j * 2 + g) * 3 + x])
                                .sum::<f64>()
                                * p.scale
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(s[h], f64::max);
                    let z: f64 = sc.iter().map(|x| (x - m).exp()).sum::<f64>() + (s[h] - m).exp();
                    for x in 0..3 {
                        let want: f64 = keys
                            .iter()
                            .zip(&sc)
                            .map(|(&j, sv)| (sv - m).exp() / z * v[(j * 2 + g) * 3 + x])
                            .sum();
                        assert!((got[(i * 4 + h) * 3 + x] - want).abs() < 1e-12);
                    }
                }
            }
        }
    }
}
