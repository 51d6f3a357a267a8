//! A tiny 1-layer transformer block on the tape: embedding → rmsnorm → q/k/v matmuls →
//! rope → attention (varlen, GQA, causal) → o matmul → residual → rmsnorm → SwiGLU MLP →
//! residual → fused linear-CE. Backpropagates, matches finite differences on sampled
//! elements of every param, and gives the same grads with the block checkpointed.

use lmf_autograd::gradcheck::GradCheck;
use lmf_autograd::ops::fused::{
    attention, embedding, linear_cross_entropy, rmsnorm, rope, rope_cos_sin, swiglu, AttnParams,
    CeOptions, CeReduction, RopeConfig, RopeScaling,
};
use lmf_autograd::{checkpoint, tape_stats, Result, Var};
use lmf_kernels::testing::Lcg;
use lmf_runtime::{DType, Device, Tensor};

const VOCAB: usize = 11;
const HIDDEN: usize = 12;
const HEADS: usize = 3;
const KV_HEADS: usize = 1;
const HEAD_DIM: usize = 4;
const FFN: usize = 7;
/// Two packed sequences of 5 and 4 tokens.
const CU: [usize; 3] = [0, 5, 9];
const TOKENS: usize = 9;

fn rnd(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let mut rng = Lcg::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.sym(scale)).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

/// The param shapes, in the order the block takes them.
fn param_tensors() -> Vec<Tensor> {
    let shapes: [&[usize]; 11] = [
        &[VOCAB, HIDDEN],               // 0 embed
        &[HIDDEN],                      // 1 input norm weight
        &[HIDDEN, HEADS * HEAD_DIM],    // 2 wq
        &[HIDDEN, KV_HEADS * HEAD_DIM], // 3 wk
        &[HIDDEN, KV_HEADS * HEAD_DIM], // 4 wv
        &[HEADS * HEAD_DIM, HIDDEN],    // 5 wo
        &[HIDDEN],                      // 6 post-attention norm weight
        &[HIDDEN, FFN],                 // 7 gate
        &[HIDDEN, FFN],                 // 8 up
        &[FFN, HIDDEN],                 // 9 down
        &[VOCAB, HIDDEN],               // 10 lm_head
    ];
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let t = rnd(s, 100 + i as u64, 0.6);
            if s.len() == 1 {
                t.affine(0.3, 1.0).unwrap()
            } else {
                t
            }
        })
        .collect()
}

/// SwiGLU MLP: `swiglu(x·Wg, x·Wu)·Wd`.
fn swiglu_mlp(x: &Var, wg: &Var, wu: &Var, wd: &Var) -> Result<Var> {
    swiglu(&x.matmul(wg)?, &x.matmul(wu)?)?.matmul(wd)
}

/// The decoder layer on hidden states `x: [tokens, hidden]`; `p` = params 1..=9.
fn layer(x: &Var, p: &[Var], cos: &Tensor, sin: &Tensor) -> Result<Var> {
    let h = rmsnorm(x, &p[1], 1e-5, 0.0)?;
    let q = h.matmul(&p[2])?.reshape(&[TOKENS, HEADS, HEAD_DIM])?;
    let k = h.matmul(&p[3])?.reshape(&[TOKENS, KV_HEADS, HEAD_DIM])?;
    let v = h.matmul(&p[4])?.reshape(&[TOKENS, KV_HEADS, HEAD_DIM])?;
    let (q, k) = (rope(&q, cos, sin, HEAD_DIM)?, rope(&k, cos, sin, HEAD_DIM)?);
    let ap = AttnParams {
        num_heads: HEADS,
        num_kv_heads: KV_HEADS,
        head_dim: HEAD_DIM,
        causal: true,
        window: None,
        scale: 1.0 / (HEAD_DIM as f64).sqrt(),
        softcap: None,
    };
    let a = attention(&q, &k, &v, &CU, &CU, &ap)?.reshape(&[TOKENS, HEADS * HEAD_DIM])?;
    let x = x.add(&a.matmul(&p[5])?)?;
    let h = rmsnorm(&x, &p[6], 1e-5, 0.0)?;
    x.add(&swiglu_mlp(&h, &p[7], &p[8], &p[9])?)
}

/// Inputs that stay fixed: token ids, labels, rope tables.
struct Batch {
    ids: Tensor,
    labels: Tensor,
    cos: Tensor,
    sin: Tensor,
}

fn batch() -> Batch {
    let ids: Vec<i64> = vec![1, 5, 9, 2, 2, 10, 0, 3, 7];
    let labels: Vec<i64> = vec![5, 9, 2, 2, -100, 0, 3, 7, -100];
    let positions: Vec<i64> = vec![0, 1, 2, 3, 4, 0, 1, 2, 3];
    let cfg = RopeConfig {
        head_dim: HEAD_DIM,
        rotary_dim: HEAD_DIM,
        theta: 10000.0,
        max_position_embeddings: 64,
        scaling: RopeScaling::Default,
    };
    let (cos, sin) = rope_cos_sin(&cfg, &positions, DType::F64, Device::Cpu).unwrap();
    Batch {
        ids: Tensor::from_vec(ids, &[TOKENS], Device::Cpu).unwrap(),
        labels: Tensor::from_vec(labels, &[TOKENS], Device::Cpu).unwrap(),
        cos,
        sin,
    }
}

/// The whole model's mean CE loss; the layer is checkpointed when `ckpt`.
fn model(p: &[Var], b: &Batch, ckpt: bool) -> Result<Var> {
    let x = embedding(&p[0], &b.ids)?; // [tokens, hidden]
    let x = if ckpt {
        let (ps, cos, sin) = (p.to_vec(), b.cos.clone(), b.sin.clone());
        checkpoint(move |xs| Ok(vec![layer(&xs[0], &ps, &cos, &sin)?]), &[x])?.remove(0)
    } else {
        layer(&x, p, &b.cos, &b.sin)?
    };
    linear_cross_entropy(
        &x,
        &p[10],
        &b.labels,
        &CeOptions::default(),
        CeReduction::Mean,
    )
}

#[test]
fn block_matches_finite_differences() {
    let b = batch();
    let chk = GradCheck {
        max_elems: 6,
        ..GradCheck::default()
    };
    for ckpt in [false, true] {
        chk.run(
            &format!("block (checkpoint {ckpt})"),
            &param_tensors(),
            |p| model(p, &b, ckpt),
        )
        .unwrap();
    }
}

#[test]
fn block_checkpoint_same_grads_less_memory() {
    let b = batch();
    let p: Vec<Var> = param_tensors().into_iter().map(Var::param).collect();
    let plain = model(&p, &b, false).unwrap();
    let ckpt = model(&p, &b, true).unwrap();
    assert_eq!(
        plain.tensor().to_scalar::<f64>().unwrap(),
        ckpt.tensor().to_scalar::<f64>().unwrap()
    );
    let (ga, gb) = (plain.backward().unwrap(), ckpt.backward().unwrap());
    for (i, v) in p.iter().enumerate() {
        let a = ga.get(v).unwrap().to_vec::<f64>().unwrap();
        let c = gb.get(v).unwrap().to_vec::<f64>().unwrap();
        assert!(a.iter().any(|g| *g != 0.0), "param {i} got a zero grad");
        for (u, w) in a.iter().zip(&c) {
            assert!(
                (u - w).abs() <= 1e-13 * (1.0 + u.abs()),
                "param {i}: {u} vs {w}"
            );
        }
    }
    let (sa, sb) = (tape_stats(&[&plain]), tape_stats(&[&ckpt]));
    assert!(
        sb.saved_bytes < sa.saved_bytes / 2,
        "checkpoint {sb:?} vs plain {sa:?}"
    );
    assert!(
        sb.nodes < 5,
        "embedding + checkpoint + CE, got {}",
        sb.nodes
    );
}
