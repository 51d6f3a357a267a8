//! Tape behaviour: no_grad, detach, accumulation, backward contracts, deep graphs, custom
//! nodes, and that the gradient checker itself catches a wrong backward.

use lmf_autograd::gradcheck::check_grads;
use lmf_autograd::{
    backward_multi, grad_if, is_grad_enabled, no_grad, record1, tape_stats, with_grad_mode, Var,
};
use lmf_kernels::testing::Lcg;
use lmf_runtime::{DType, Device, Tensor};

fn rnd(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Lcg::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.sym(1.0)).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f64>().unwrap()
}

#[test]
fn no_grad_records_nothing() {
    let p = Var::param(rnd(&[3, 5], 1));
    assert!(is_grad_enabled());
    let y = no_grad(|| {
        assert!(!is_grad_enabled());
        p.mul(&p).unwrap().exp().unwrap().sum_all().unwrap()
    });
    assert!(is_grad_enabled(), "mode restored");
    assert!(!y.requires_grad());
    assert!(y.is_leaf());
    assert_eq!(y.op_name(), None);
    assert_eq!(tape_stats(&[&y]).nodes, 0);
    assert!(y.backward().is_err());
    // the same graph with grad on records 3 nodes (mul, exp, sum)
    let y = p.mul(&p).unwrap().exp().unwrap().sum_all().unwrap();
    assert_eq!(tape_stats(&[&y]).nodes, 3);
    assert_eq!(y.op_name(), Some("sum"));
    // nested modes restore, also when the closure fails
    let r: lmf_runtime::Result<()> = no_grad(|| {
        with_grad_mode(true, || assert!(is_grad_enabled()));
        assert!(!is_grad_enabled());
        Err(lmf_runtime::Error::invalid("test", "x"))
    });
    assert!(r.is_err() && is_grad_enabled());
}

#[test]
fn constants_get_no_grad() {
    let p = Var::param(rnd(&[4], 2));
    let c = Var::constant(rnd(&[4], 3));
    let y = p.mul(&c).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    assert_eq!(vals(g.get(&p).unwrap()), vals(c.tensor()));
    assert!(g.get(&c).is_none());
    assert_eq!(g.len(), 1);
    // ops on constants only are not recorded
    let z = c.exp().unwrap();
    assert!(!z.requires_grad() && z.is_leaf());
}

#[test]
fn detach_stops_gradients() {
    let x = rnd(&[3, 5], 4);
    let p = Var::param(x.clone());
    let d = p.detach();
    assert!(!d.requires_grad() && d.is_leaf() && d.id() != p.id());
    assert!(d.tensor().same_storage(p.tensor()));
    // y = p · detach(p): dy/dp = p (not 2p)
    let g = p.mul(&d).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&p).unwrap()), vals(&x));
    // detaching an intermediate cuts everything behind it
    let h = p.exp().unwrap().detach();
    assert!(h.mul(&h).unwrap().sum_all().unwrap().backward().is_err());
}

#[test]
fn var_used_twice_accumulates() {
    let x = rnd(&[3, 5], 5);
    let p = Var::param(x.clone());
    // y = Σ p·p + p  ->  dy/dp = 2p + 1
    let y = p.mul(&p).unwrap().add(&p).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    let want: Vec<f64> = vals(&x).iter().map(|v| 2.0 * v + 1.0).collect();
    let got = vals(g.get(&p).unwrap());
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12);
    }
    // broadcasting accumulates: b [5] added to every row of [4, 5] gets grad 4
    let b = Var::param(rnd(&[5], 6));
    let m = Var::constant(rnd(&[4, 5], 7));
    let g = m.add(&b).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&b).unwrap()), vec![4.0; 5]);
    // a diamond: two paths from p meet again
    let a = p.exp().unwrap();
    let y = a.mul(&a.sqr().unwrap()).unwrap().sum_all().unwrap(); // e^{3p}
    let g = y.backward().unwrap();
    for (gv, xv) in vals(g.get(&p).unwrap()).iter().zip(vals(&x)) {
        assert!((gv - 3.0 * (3.0 * xv).exp()).abs() < 1e-9);
    }
}

#[test]
fn backward_contracts() {
    let p = Var::param(rnd(&[3, 5], 8));
    let y = p.sqr().unwrap();
    assert!(y.backward().is_err(), "non-scalar loss must be rejected");
    let w = rnd(&[3, 5], 9);
    let g = y.backward_with(&w).unwrap();
    let want: Vec<f64> = vals(p.tensor())
        .iter()
        .zip(vals(&w))
        .map(|(x, w)| 2.0 * x * w)
        .collect();
    assert_eq!(vals(g.get(&p).unwrap()), want);
    // wrong seed shape is an error, not a panic
    assert!(y.backward_with(&rnd(&[5, 3], 1)).is_err());
    // a leaf loss: its own grad
    let s = Var::param(Tensor::scalar(2.0, DType::F64, Device::Cpu).unwrap());
    assert_eq!(vals(s.backward().unwrap().get(&s).unwrap()), vec![1.0]);
    // backward twice gives the same grads (the graph lives as long as its vars)
    let l = y.sum_all().unwrap();
    assert_eq!(
        vals(l.backward().unwrap().get(&p).unwrap()),
        vals(l.backward().unwrap().get(&p).unwrap())
    );
    // several roots with their own grads
    let z = p.scale(3.0).unwrap();
    let g = backward_multi(&[(&y, w.clone()), (&z, w.clone())]).unwrap();
    let want: Vec<f64> = vals(p.tensor())
        .iter()
        .zip(vals(&w))
        .map(|(x, w)| (2.0 * x + 3.0) * w)
        .collect();
    for (a, b) in vals(g.get(&p).unwrap()).iter().zip(&want) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn grads_are_contiguous_and_typed() {
    // broadcast_as hands back a stride-0 grad; the store makes it row-major.
    let p = Var::param(Tensor::ones(&[1, 5], DType::F32, Device::Cpu).unwrap());
    let y = p
        .broadcast_as(&[4, 5])
        .unwrap()
        .t()
        .unwrap()
        .sum_all()
        .unwrap();
    let g = y.backward().unwrap();
    let g = g.get(&p).unwrap();
    assert!(g.is_contiguous());
    assert_eq!(g.dtype(), DType::F32);
    assert_eq!(g.to_vec::<f32>().unwrap(), vec![4.0; 5]);
}

#[test]
fn deep_chain_backward_and_drop() {
    // 30k nodes: the iterative sort and the iterative drop must not overflow the stack.
    let p = Var::param(Tensor::ones(&[1], DType::F64, Device::Cpu).unwrap());
    let mut h = p.clone();
    for _ in 0..30_000 {
        h = h.affine(1.0, 1e-3).unwrap();
    }
    let g = h.sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&p).unwrap()), vec![1.0]);
    assert_eq!(tape_stats(&[&h]).nodes, 30_000);
    drop(h);
}

#[test]
fn saved_tensors_follow_ownership() {
    let p = Var::param(rnd(&[64, 64], 10));
    let y = p.exp().unwrap(); // saves its output: 64·64 f64
    let s = tape_stats(&[&y]);
    assert_eq!(
        (s.nodes, s.saved_tensors, s.saved_bytes),
        (1, 1, 64 * 64 * 8)
    );
    let z = y.mul(&p).unwrap(); // saves y (already counted) and p
    let s = tape_stats(&[&z]);
    assert_eq!(
        (s.nodes, s.saved_tensors, s.saved_bytes),
        (2, 2, 2 * 64 * 64 * 8)
    );
    // add saves nothing
    assert_eq!(tape_stats(&[&p.add(&p).unwrap()]).saved_bytes, 0);
}

#[test]
fn custom_node_via_record1() {
    // y = 3x written as a custom op
    let p = Var::param(rnd(&[2, 3], 11));
    let out = p.tensor().scale(3.0).unwrap();
    let y = record1("triple", &[&p], out, vec![], |ctx| {
        Ok(vec![grad_if(ctx.needs(0), || ctx.grad(0).scale(3.0))?])
    });
    assert_eq!(y.op_name(), Some("triple"));
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&p).unwrap()), vec![3.0; 6]);
}

#[test]
#[should_panic(expected = "analytic")]
fn gradcheck_catches_a_wrong_backward() {
    check_grads("wrong", &[rnd(&[3, 4], 12)], |v| {
        let out = v[0].tensor().scale(3.0)?;
        Ok(record1("wrong", &[&v[0]], out, vec![], |ctx| {
            Ok(vec![grad_if(ctx.needs(0), || ctx.grad(0).scale(2.9))?])
        }))
    })
    .unwrap();
}

#[test]
fn backward_rejects_wrongly_shaped_grads() {
    let p = Var::param(rnd(&[2, 3], 13));
    let out = p.tensor().clone();
    let y = record1("bad", &[&p], out, vec![], |ctx| {
        Ok(vec![Some(ctx.grad(0).t()?)])
    });
    let e = y.sum_all().unwrap().backward().unwrap_err();
    assert!(e.to_string().contains("bad"), "{e}");
}

#[test]
fn releasing_backward_frees_the_graph_as_it_goes() {
    let p = Var::param(rnd(&[3, 5], 7));
    let q = Var::param(rnd(&[5, 2], 8));
    let build = || {
        p.exp()
            .unwrap()
            .matmul(&q)
            .unwrap()
            .tanh()
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let y = build();
    let kept = tape_stats(&[&y]);
    assert!(
        kept.saved_bytes > 0,
        "the graph holds saved tensors: {kept:?}"
    );
    let plain = build().backward().unwrap();
    let g = y.backward_releasing().unwrap();
    // the same gradients as a plain backward, bit for bit
    for v in [&p, &q] {
        assert_eq!(vals(g.get(v).unwrap()), vals(plain.get(v).unwrap()));
    }
    // nodes stay (the var still points at them) but nothing they saved is alive
    let after = tape_stats(&[&y]);
    assert_eq!(after.nodes, kept.nodes);
    assert_eq!((after.saved_tensors, after.saved_bytes), (0, 0));
    // a second walk through the released graph is refused, naming why
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("releasing backward"), "{err}");
    // a plain backward keeps the graph: it can run again
    let z = build();
    let (a, b) = (z.backward().unwrap(), z.backward().unwrap());
    assert_eq!(vals(a.get(&p).unwrap()), vals(b.get(&p).unwrap()));
}
