//! Gradient checkpointing: identical grads (incl. dropout and closed-over params), fewer
//! saved bytes between forward and backward, nesting, multi-output, no_grad.

use lmf_autograd::{checkpoint, no_grad, rng, tape_stats, Grads, Result, Var};
use lmf_kernels::testing::Lcg;
use lmf_runtime::{Device, Tensor};

fn rnd(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Lcg::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.sym(1.0)).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f64>().unwrap()
}

/// A two-layer MLP with dropout: x [n, 8] -> tanh(x·w1 + b1) -> dropout -> ·w2.
fn mlp(x: &Var, w1: &Var, b1: &Var, w2: &Var) -> Result<Var> {
    x.matmul(w1)?.add(b1)?.tanh()?.dropout(0.25)?.matmul(w2)
}

struct Params {
    w1: Var,
    b1: Var,
    w2: Var,
}

fn params() -> Params {
    Params {
        w1: Var::param(rnd(&[8, 16], 1)),
        b1: Var::param(rnd(&[16], 2)),
        w2: Var::param(rnd(&[16, 8], 3)),
    }
}

/// Three stacked blocks on `x`, optionally checkpointing each; returns loss and grads.
fn run(x: &Var, p: &Params, ckpt: bool) -> (Var, Grads) {
    rng::manual_seed(42);
    let mut h = x.clone();
    for _ in 0..3 {
        h = if ckpt {
            let (w1, b1, w2) = (p.w1.clone(), p.b1.clone(), p.w2.clone());
            let f = move |xs: &[Var]| Ok(vec![mlp(&xs[0], &w1, &b1, &w2)?.add(&xs[0])?]);
            checkpoint(f, std::slice::from_ref(&h)).unwrap().remove(0)
        } else {
            mlp(&h, &p.w1, &p.b1, &p.w2).unwrap().add(&h).unwrap()
        };
    }
    let loss = h.sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    (loss, grads)
}

#[test]
fn checkpoint_grads_identical_and_less_memory() {
    let p = params();
    let x = Var::param(rnd(&[37, 8], 4));
    let (loss_a, ga) = run(&x, &p, false);
    let state_a = rng::rng_state();
    let (loss_b, gb) = run(&x, &p, true);
    assert_eq!(
        rng::rng_state(),
        state_a,
        "the stream advances the same with checkpointing"
    );
    assert_eq!(vals(loss_a.tensor()), vals(loss_b.tensor()));
    for v in [&x, &p.w1, &p.b1, &p.w2] {
        let (a, b) = (vals(ga.get(v).unwrap()), vals(gb.get(v).unwrap()));
        for (i, (u, w)) in a.iter().zip(&b).enumerate() {
            assert!(
                (u - w).abs() <= 1e-13 * (1.0 + u.abs()),
                "{v:?}[{i}]: {u} vs {w}"
            );
        }
    }
    // between forward and backward: each checkpointed block keeps only its input
    let (sa, sb) = (tape_stats(&[&loss_a]), tape_stats(&[&loss_b]));
    assert_eq!(sb.nodes, 3 + 2, "3 checkpoint nodes + sqr + mean");
    assert!(
        sb.saved_bytes * 3 < sa.saved_bytes,
        "checkpoint {sb:?} vs plain {sa:?}"
    );
}

#[test]
fn closed_over_params_get_grads_with_constant_inputs() {
    // LoRA-like: frozen activations in, trainable params inside the checkpointed function.
    let p = params();
    let x = Var::constant(rnd(&[5, 8], 5));
    let (w1, b1, w2) = (p.w1.clone(), p.b1.clone(), p.w2.clone());
    rng::manual_seed(1);
    let out = checkpoint(
        move |xs| Ok(vec![mlp(&xs[0], &w1, &b1, &w2)?]),
        std::slice::from_ref(&x),
    )
    .unwrap();
    assert!(out[0].requires_grad());
    assert_eq!(out[0].op_name(), Some("checkpoint"));
    let gc = out[0].sum_all().unwrap().backward().unwrap();
    rng::manual_seed(1);
    let gp = mlp(&x, &p.w1, &p.b1, &p.w2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for v in [&p.w1, &p.b1, &p.w2] {
        assert_eq!(vals(gc.get(v).unwrap()), vals(gp.get(v).unwrap()));
    }
    assert!(gc.get(&x).is_none());
}

#[test]
fn checkpoint_nested_and_multi_output() {
    let p = params();
    let x = Var::param(rnd(&[6, 8], 6));
    let (w1, b1, w2) = (p.w1.clone(), p.b1.clone(), p.w2.clone());
    // outer checkpoint returns two outputs; it checkpoints its first half again inside
    let f = move |xs: &[Var]| {
        let (w1c, b1c) = (w1.clone(), b1.clone());
        let inner = checkpoint(
            move |ys| Ok(vec![ys[0].matmul(&w1c)?.add(&b1c)?.tanh()?]),
            &xs[..1],
        )?;
        let y = inner[0].matmul(&w2)?;
        Ok(vec![y.clone(), y.exp()?])
    };
    let outs = checkpoint(f, std::slice::from_ref(&x)).unwrap();
    // only the second output is used: the first one's grad is zero-filled
    let gc = outs[1].sum_all().unwrap().backward().unwrap();
    let plain = x
        .matmul(&p.w1)
        .unwrap()
        .add(&p.b1)
        .unwrap()
        .tanh()
        .unwrap()
        .matmul(&p.w2)
        .unwrap();
    let gp = plain.exp().unwrap().sum_all().unwrap().backward().unwrap();
    for v in [&x, &p.w1, &p.b1, &p.w2] {
        let (a, b) = (vals(gc.get(v).unwrap()), vals(gp.get(v).unwrap()));
        for (u, w) in a.iter().zip(&b) {
            assert!((u - w).abs() <= 1e-12 * (1.0 + u.abs()));
        }
    }
}

#[test]
fn checkpoint_under_no_grad_is_plain() {
    let x = Var::param(rnd(&[3, 8], 7));
    let out =
        no_grad(|| checkpoint(|xs| Ok(vec![xs[0].sqr()?]), std::slice::from_ref(&x))).unwrap();
    assert!(!out[0].requires_grad());
    assert_eq!(vals(out[0].tensor()), vals(&x.tensor().sqr().unwrap()));
}
