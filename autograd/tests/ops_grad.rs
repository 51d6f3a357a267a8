//! Gradient checks of every differentiable (non-fused) op against f64 finite differences,
//! with odd shapes and broadcasting.

use lmf_autograd::gradcheck::{check_grads, GradCheck};
use lmf_autograd::{rng, Var};
use lmf_kernels::testing::Lcg;
use lmf_runtime::{DType, Device, Result, Tensor};

/// Uniform in [-scale, scale), F64.
fn rnd(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let mut rng = Lcg::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.sym(scale)).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

/// Uniform in [0.5, 2), F64 (for log, sqrt, recip, powf, divisors).
fn pos(shape: &[usize], seed: u64) -> Tensor {
    rnd(shape, seed, 0.75).affine(1.0, 1.25).unwrap()
}

fn ids(v: &[i64]) -> Tensor {
    Tensor::from_slice(v, &[v.len()], Device::Cpu).unwrap()
}

type Bin = fn(&Var, &Var) -> Result<Var>;

#[test]
fn binary_ops_broadcasting() {
    let ops: [(&str, Bin); 6] = [
        ("add", |a, b| a.add(b)),
        ("sub", |a, b| a.sub(b)),
        ("mul", |a, b| a.mul(b)),
        ("div", |a, b| a.div(b)),
        ("maximum", |a, b| a.maximum(b)),
        ("minimum", |a, b| a.minimum(b)),
    ];
    for (name, op) in ops {
        // [3, 1, 5] with [4, 5] -> [3, 4, 5]; and same-shape [3, 37]
        let cases = [
            (rnd(&[3, 1, 5], 1, 1.0), pos(&[4, 5], 2)),
            (rnd(&[3, 37], 3, 1.0), pos(&[3, 37], 4)),
            (rnd(&[4, 5], 5, 1.0), pos(&[3, 1, 5], 6)),
        ];
        for (a, b) in cases {
            check_grads(name, &[a, b], |v| op(&v[0], &v[1])).unwrap();
        }
    }
}

type Un = fn(&Var) -> Result<Var>;

#[test]
fn unary_ops() {
    let any: [(&str, Un); 14] = [
        ("neg", |x| x.neg()),
        ("exp", |x| x.exp()),
        ("sqr", |x| x.sqr()),
        ("tanh", |x| x.tanh()),
        ("sigmoid", |x| x.sigmoid()),
        ("silu", |x| x.silu()),
        ("gelu_tanh", |x| x.gelu_tanh()),
        ("relu", |x| x.relu()),
        ("sin", |x| x.sin()),
        ("cos", |x| x.cos()),
        ("affine", |x| x.affine(-1.7, 0.3)),
        ("scale", |x| x.scale(2.5)),
        ("clamp", |x| x.clamp(-0.5, 0.7)),
        ("contiguous", |x| x.t()?.contiguous()),
    ];
    for (name, op) in any {
        check_grads(name, &[rnd(&[3, 37], 11, 2.0)], |v| op(&v[0])).unwrap();
    }
    let positive: [(&str, Un); 4] = [
        ("log", |x| x.log()),
        ("sqrt", |x| x.sqrt()),
        ("recip", |x| x.recip()),
        ("powf", |x| x.powf(2.5)),
    ];
    for (name, op) in positive {
        check_grads(name, &[pos(&[3, 37], 12)], |v| op(&v[0])).unwrap();
    }
}

#[test]
fn reductions() {
    let x = rnd(&[3, 7, 5], 21, 1.0);
    let ops: [(&str, Un); 9] = [
        ("sum [1]", |x| x.sum(&[1], false)),
        ("sum [0, 2] keepdim", |x| x.sum(&[2, 0], true)),
        ("sum_all", |x| x.sum_all()),
        ("mean [2]", |x| x.mean(&[2], false)),
        ("mean [0, 1] keepdim", |x| x.mean(&[0, 1], true)),
        ("mean_all", |x| x.mean_all()),
        ("max dim 1", |x| x.max(1, false)),
        ("max dim 2 keepdim", |x| x.max(2, true)),
        ("min dim 0", |x| x.min(0, false)),
    ];
    for (name, op) in ops {
        check_grads(name, std::slice::from_ref(&x), |v| op(&v[0])).unwrap();
    }
}

#[test]
fn softmax_family() {
    for dim in [0, 1] {
        check_grads("softmax", &[rnd(&[3, 37], 31, 2.0)], |v| v[0].softmax(dim)).unwrap();
        check_grads("log_softmax", &[rnd(&[3, 37], 32, 2.0)], |v| {
            v[0].log_softmax(dim)
        })
        .unwrap();
    }
}

#[test]
fn matmul_shapes() {
    let cases: [(Vec<usize>, Vec<usize>); 7] = [
        (vec![37, 48], vec![48, 5]),
        (vec![2, 3, 4, 5], vec![5, 6]),
        (vec![2, 1, 4, 5], vec![3, 5, 6]),
        (vec![4, 5], vec![2, 5, 3]),
        (vec![5], vec![5, 3]),
        (vec![4, 5], vec![5]),
        (vec![5], vec![5]),
    ];
    for (i, (sa, sb)) in cases.iter().enumerate() {
        let (a, b) = (rnd(sa, 40 + i as u64, 1.0), rnd(sb, 50 + i as u64, 1.0));
        check_grads(&format!("matmul {sa:?} x {sb:?}"), &[a, b], |v| {
            v[0].matmul(&v[1])
        })
        .unwrap();
    }
    // transposed operand views
    check_grads(
        "matmul aᵀ·b",
        &[rnd(&[5, 4], 61, 1.0), rnd(&[5, 3], 62, 1.0)],
        |v| v[0].t()?.matmul(&v[1]),
    )
    .unwrap();
}

#[test]
fn shape_ops() {
    let x = rnd(&[3, 4, 5], 71, 1.0);
    let ops: [(&str, Un); 12] = [
        ("reshape", |x| {
            x.reshape(&[12, 5])?.mul(&x.reshape(&[12, 5])?)
        }),
        ("flatten_all", |x| x.flatten_all()?.sqr()),
        ("transpose", |x| x.transpose(0, 2)?.sqr()),
        ("t", |x| x.t()),
        ("permute", |x| {
            x.permute(&[2, 0, 1])?.contiguous()?.reshape(&[60])
        }),
        ("narrow", |x| x.narrow(1, 1, 2)),
        ("narrow end", |x| x.narrow(2, 3, 2)?.sqr()),
        ("broadcast_as", |x| {
            x.narrow(0, 0, 1)?.broadcast_as(&[2, 3, 4, 5])
        }),
        ("unsqueeze", |x| x.unsqueeze(1)?.sqr()),
        ("squeeze", |x| x.narrow(1, 2, 1)?.squeeze(1)),
        ("cat", |x| Var::cat(&[&x.narrow(1, 0, 1)?, &x.sqr()?, x], 1)),
        ("cat last", |x| Var::cat(&[x, &x.exp()?], 2)),
    ];
    for (name, op) in ops {
        check_grads(name, std::slice::from_ref(&x), |v| op(&v[0])).unwrap();
    }
    // cat of distinct inputs
    check_grads(
        "cat 3 inputs",
        &[
            rnd(&[2, 3], 72, 1.0),
            rnd(&[5, 3], 73, 1.0),
            rnd(&[1, 3], 74, 1.0),
        ],
        |v| Var::cat(&[&v[0], &v[1], &v[2]], 0),
    )
    .unwrap();
}

#[test]
fn index_and_where() {
    let table = rnd(&[7, 5], 81, 1.0);
    let rows = ids(&[3, 0, 3, 6, 3]);
    check_grads("index_select dim 0", std::slice::from_ref(&table), |v| {
        v[0].index_select(&rows, 0)
    })
    .unwrap();
    let cols = ids(&[4, 4, 1]);
    check_grads("index_select dim 1", &[table], |v| {
        v[0].index_select(&cols, 1)
    })
    .unwrap();
    // mask: [3, 1, 5] broadcast against [4, 5] values
    let mask = rnd(&[3, 1, 5], 82, 1.0)
        .gt(&Tensor::scalar(0.0, DType::F64, Device::Cpu).unwrap())
        .unwrap();
    check_grads(
        "where_cond",
        &[rnd(&[4, 5], 83, 1.0), rnd(&[3, 4, 5], 84, 1.0)],
        |v| Var::where_cond(&mask, &v[0], &v[1]),
    )
    .unwrap();
}

#[test]
fn to_dtype_grad_is_cast_back() {
    let x = Var::param(rnd(&[3, 37], 91, 1.0));
    let y = x.to_dtype(DType::F32).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    let w = rnd(&[3, 37], 92, 1.0).to_dtype(DType::F32).unwrap();
    let grads = y.backward_with(&w).unwrap();
    let g = grads.get(&x).unwrap();
    assert_eq!(g.dtype(), DType::F64);
    assert_eq!(g.to_vec::<f64>().unwrap(), w.to_vec::<f64>().unwrap());
    // f64 -> f64 is the identity and fully differentiable
    check_grads("to_dtype f64", &[rnd(&[3, 5], 93, 1.0)], |v| {
        v[0].to_dtype(DType::F64)?.sqr()
    })
    .unwrap();
}

#[test]
fn dropout_grad_uses_the_same_mask() {
    check_grads("dropout", &[rnd(&[3, 37], 95, 1.0)], |v| {
        rng::manual_seed(5);
        v[0].dropout(0.3)?.sqr()
    })
    .unwrap();
    // about p of the elements are dropped
    rng::manual_seed(6);
    let y = Var::constant(Tensor::ones(&[4000], DType::F64, Device::Cpu).unwrap())
        .dropout(0.25)
        .unwrap();
    let zeros = y
        .tensor()
        .to_vec::<f64>()
        .unwrap()
        .iter()
        .filter(|&&v| v == 0.0)
        .count();
    assert!((800..1200).contains(&zeros), "{zeros} of 4000 dropped");
}

#[test]
fn composite_chain_sampled() {
    // A longer chain with sampled elements: exercises accumulation through many nodes.
    let chk = GradCheck {
        max_elems: 40,
        ..GradCheck::default()
    };
    chk.run(
        "chain",
        &[
            rnd(&[37, 48], 101, 0.5),
            rnd(&[48, 5], 102, 0.5),
            rnd(&[5], 103, 0.5),
        ],
        |v| {
            let h = v[0].matmul(&v[1])?.add(&v[2])?.tanh()?;
            h.log_softmax(1)?.mul(&h)?.sum(&[0], false)
        },
    )
    .unwrap();
}
