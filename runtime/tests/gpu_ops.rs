//! Every `Tensor` op on `Device::Cuda(0)` against the same op on CPU tensors: random inputs,
//! several shapes (odd sizes included), broadcasting, and transposed / narrowed views (the
//! views are taken on the device tensor itself, so the kernels see real strides), for f32
//! and bf16 (plus the integer / mask outputs, which must match exactly).
//! Tolerances: fp32 1e-5, bf16 1e-2 relative (`assert_rel_close`; NaN never passes).
//! Without a CUDA device every test prints `skipped: no CUDA device` and passes.

use lmf_kernels::cuda::testing::{assert_rel_close, gpu_or_skip, tolerance};
use lmf_kernels::testing::{rand_vec, Lcg};
use lmf_runtime::{DType, Device, Tensor};

const DEV: Device = Device::Cuda(0);
const FLOATS: [DType; 2] = [DType::F32, DType::BF16];

/// A CPU tensor of `dtype` with values uniform in [-scale, scale) (rounded to `dtype`).
fn rand_t(rng: &mut Lcg, shape: &[usize], dtype: DType, scale: f64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(rand_vec::<f32>(rng, n, scale), shape, Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// A CPU tensor of small integers in [-r, r] stored as `dtype` (exact in every float type).
fn int_t(rng: &mut Lcg, shape: &[usize], dtype: DType, r: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| rng.below(2 * r + 1) as f32 - r as f32)
        .collect();
    Tensor::from_vec(v, shape, Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn tol(dtype: DType) -> f64 {
    tolerance(dtype.name())
}

/// The GPU result `g` against the CPU result `c`: same shape and dtype, `g` on the device,
/// values within the dtype's tolerance.
fn close(what: &str, g: &Tensor, c: &Tensor) {
    close_to(what, g, c, tol(c.dtype()));
}

/// [`close`] with an explicit relative tolerance.
fn close_to(what: &str, g: &Tensor, c: &Tensor, rel: f64) {
    assert_eq!(g.shape(), c.shape(), "{what}: shape");
    assert_eq!(g.dtype(), c.dtype(), "{what}: dtype");
    assert_eq!(g.device(), DEV, "{what}: device");
    let got = g.to_vec::<f32>().unwrap();
    let want = c.to_vec::<f64>().unwrap();
    assert_rel_close(what, &got, &want, rel);
}

/// Exact equality (integer outputs, masks, copies, casts).
fn same(what: &str, g: &Tensor, c: &Tensor) {
    assert_eq!(g.shape(), c.shape(), "{what}: shape");
    assert_eq!(g.dtype(), c.dtype(), "{what}: dtype");
    assert_eq!(g.device(), DEV, "{what}: device");
    let got = g.to_vec::<f64>().unwrap();
    let want = c.to_vec::<f64>().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            a == b || (a.is_nan() && b.is_nan()),
            "{what}[{i}]: gpu {a} vs cpu {b}"
        );
    }
}

/// Exact for f32 results; within tolerance for bf16 (the library's output rounding).
fn exact_f32(what: &str, g: &Tensor, c: &Tensor) {
    if c.dtype() == DType::F32 {
        same(what, g, c)
    } else {
        close(what, g, c)
    }
}

fn up(t: &Tensor) -> Tensor {
    t.to_device(DEV).unwrap()
}

/// Named views applied identically to the CPU tensor and its device copy.
type View = (&'static str, fn(&Tensor) -> Tensor);

/// Views of a rank-2 `[r, c]` tensor giving a `[c - 1, r]`-ish strided operand.
fn views2() -> Vec<View> {
    vec![
        ("contiguous", |t| t.clone()),
        ("transposed", |t| t.t().unwrap()),
        ("narrowed", |t| {
            t.narrow(1, 1, t.dim(1).unwrap() - 1).unwrap()
        }),
        ("narrowed+transposed", |t| {
            t.narrow(0, 1, t.dim(0).unwrap() - 1).unwrap().t().unwrap()
        }),
    ]
}

const SHAPES2: [[usize; 2]; 4] = [[1, 2], [3, 5], [17, 33], [64, 257]];

#[test]
fn storage_copies_and_errors() {
    let Some(_g) = gpu_or_skip("storage_copies_and_errors") else {
        return;
    };
    let mut rng = Lcg::new(1);
    for dtype in [
        DType::F32,
        DType::F64,
        DType::BF16,
        DType::F16,
        DType::I32,
        DType::I64,
        DType::U8,
    ] {
        let c = int_t(&mut rng, &[3, 7], DType::F32, 5)
            .abs()
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let g = up(&c);
        assert_eq!((g.device(), g.dtype()), (DEV, dtype));
        same(&format!("upload {dtype}"), &g, &c);
        let back = g.to_device(Device::Cpu).unwrap();
        assert_eq!(back.device(), Device::Cpu);
        assert_eq!(back.to_vec::<f64>().unwrap(), c.to_vec::<f64>().unwrap());
        same(
            &format!("zeros {dtype}"),
            &g.zeros_like().unwrap(),
            &c.zeros_like().unwrap(),
        );
        same(
            &format!("full {dtype}"),
            &Tensor::full(3.7, &[2, 5], dtype, DEV).unwrap(),
            &Tensor::full(3.7, &[2, 5], dtype, Device::Cpu).unwrap(),
        );
        same(
            &format!("arange {dtype}"),
            &Tensor::arange(-3, 11, dtype, DEV).unwrap(),
            &Tensor::arange(-3, 11, dtype, Device::Cpu).unwrap(),
        );
        // strided views made contiguous on the device
        same(
            &format!("contiguous(t) {dtype}"),
            &g.t().unwrap().contiguous().unwrap(),
            &c.t().unwrap().contiguous().unwrap(),
        );
        same(
            &format!("reshape(narrow) {dtype}"),
            &g.narrow(1, 2, 4).unwrap().reshape(&[12]).unwrap(),
            &c.narrow(1, 2, 4).unwrap().reshape(&[12]).unwrap(),
        );
        // casts to every dtype, from a strided view
        for to in [
            DType::F32,
            DType::F64,
            DType::BF16,
            DType::F16,
            DType::I32,
            DType::I64,
            DType::U8,
        ] {
            same(
                &format!("to_dtype {dtype}->{to}"),
                &g.t().unwrap().to_dtype(to).unwrap(),
                &c.t().unwrap().to_dtype(to).unwrap(),
            );
        }
    }
    // same-dtype copies are exact for every i64 (not through f64)
    let big = Tensor::from_vec(
        vec![(1i64 << 62) + 1, -(1i64 << 60) - 3],
        &[2, 1],
        Device::Cpu,
    )
    .unwrap();
    let gb = up(&big)
        .broadcast_as(&[2, 3])
        .unwrap()
        .contiguous()
        .unwrap();
    assert_eq!(
        gb.to_vec::<i64>().unwrap(),
        big.broadcast_as(&[2, 3]).unwrap().to_vec::<i64>().unwrap()
    );
    // uploading CPU views: a narrowed (offset) view and a transposed one
    let c = int_t(&mut rng, &[4, 6], DType::F32, 9);
    for v in [
        c.narrow(0, 1, 2).unwrap(),
        c.narrow(1, 2, 3).unwrap(),
        c.t().unwrap(),
    ] {
        let g = up(&v);
        assert!(g.is_contiguous());
        same(
            &format!("upload view {:?}", v.shape()),
            &g,
            &v.contiguous().unwrap(),
        );
    }
    // float -> int casts truncate and saturate like the CPU; NaN -> 0
    let v = vec![
        -300.7f32,
        -1.5,
        -0.4,
        0.4,
        2.9,
        254.6,
        300.2,
        3e10,
        f32::NAN,
    ];
    let c = Tensor::from_vec(v, &[9], Device::Cpu).unwrap();
    for to in [DType::U8, DType::I32, DType::I64, DType::BF16, DType::F16] {
        same(
            &format!("saturating f32->{to}"),
            &up(&c).to_dtype(to).unwrap(),
            &c.to_dtype(to).unwrap(),
        );
    }
    // from_vec / from_slice / scalar / to_scalar / as_slice on the device
    let g = Tensor::from_slice(&[1.5f32, 2.5, 3.5], &[3], DEV).unwrap();
    assert_eq!(g.as_slice::<f32>().unwrap().to_vec(), vec![1.5, 2.5, 3.5]);
    assert_eq!(g.narrow(0, 1, 1).unwrap().to_scalar::<f64>().unwrap(), 2.5);
    assert_eq!(
        Tensor::scalar(4.0, DType::BF16, DEV)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        4.0
    );
    // empty tensors
    let e = Tensor::zeros(&[0, 3], DType::F32, DEV).unwrap();
    assert_eq!(e.to_vec::<f32>().unwrap(), Vec::<f32>::new());
    assert_eq!(e.t().unwrap().contiguous().unwrap().shape(), &[3, 0]);
    // host-only calls on a device tensor are clear errors, not panics
    let mut g = Tensor::ones(&[2], DType::F32, DEV).unwrap();
    let err = g.update::<f32>(|x| x[0] = 2.0).unwrap_err().to_string();
    assert!(err.contains("CUDA") && err.contains("update"), "{err}");
    assert!(g.storage().cpu().is_err());
    // mixing devices is a device error
    let cpu = Tensor::ones(&[2], DType::F32, Device::Cpu).unwrap();
    assert!(g.add(&cpu).unwrap_err().to_string().contains("device"));
}

#[test]
fn unary_ops_match_cpu() {
    let Some(_g) = gpu_or_skip("unary_ops_match_cpu") else {
        return;
    };
    type Op = (&'static str, fn(&Tensor) -> Tensor);
    let ops: Vec<Op> = vec![
        ("neg", |t| t.neg().unwrap()),
        ("exp", |t| t.exp().unwrap()),
        ("sqr", |t| t.sqr().unwrap()),
        ("recip", |t| t.recip().unwrap()),
        ("tanh", |t| t.tanh().unwrap()),
        ("sin", |t| t.sin().unwrap()),
        ("cos", |t| t.cos().unwrap()),
        ("abs", |t| t.abs().unwrap()),
        ("relu", |t| t.relu().unwrap()),
        ("silu", |t| t.silu().unwrap()),
        ("gelu_tanh", |t| t.gelu_tanh().unwrap()),
        ("sigmoid", |t| t.sigmoid().unwrap()),
        ("affine", |t| t.affine(1.5, -0.25).unwrap()),
        ("scale", |t| t.scale(-3.0).unwrap()),
        ("clamp", |t| t.clamp(-0.5, 0.75).unwrap()),
        // positive-domain ops get |x| + 0.5
        ("log", |t| {
            t.abs().unwrap().affine(1.0, 0.5).unwrap().log().unwrap()
        }),
        ("sqrt", |t| {
            t.abs().unwrap().affine(1.0, 0.5).unwrap().sqrt().unwrap()
        }),
        ("powf", |t| {
            t.abs()
                .unwrap()
                .affine(1.0, 0.5)
                .unwrap()
                .powf(1.7)
                .unwrap()
        }),
    ];
    let mut rng = Lcg::new(2);
    for dtype in FLOATS {
        for shape in SHAPES2 {
            let c = rand_t(&mut rng, &shape, dtype, 3.0);
            let g = up(&c);
            for (vn, view) in views2() {
                let (cv, gv) = (view(&c), view(&g));
                for (on, op) in &ops {
                    // gelu_tanh cancels in 1 + tanh(..) for x < 0: one ulp of tanh (GPU and
                    // CPU libm differ there) is ~1e-4 of the small result in f32.
                    let rel = if *on == "gelu_tanh" && dtype == DType::F32 {
                        5e-4
                    } else {
                        tol(dtype)
                    };
                    let what = format!("{on} {vn} {shape:?} {dtype}");
                    close_to(&what, &op(&gv), &op(&cv), rel);
                }
            }
        }
    }
    // f64 and an integer dtype run too (f64 / integer compute)
    let c = rand_t(&mut rng, &[5, 7], DType::F64, 2.0);
    close("exp f64", &up(&c).exp().unwrap(), &c.exp().unwrap());
    let i = int_t(&mut rng, &[4, 6], DType::I64, 9);
    same("abs i64", &up(&i).abs().unwrap(), &i.abs().unwrap());
    same(
        "affine i32",
        &up(&i.to_dtype(DType::I32).unwrap())
            .affine(2.5, 1.0)
            .unwrap(),
        &i.to_dtype(DType::I32).unwrap().affine(2.5, 1.0).unwrap(),
    );
}

#[test]
fn binary_compare_where_match_cpu() {
    let Some(_g) = gpu_or_skip("binary_compare_where_match_cpu") else {
        return;
    };
    type Op = (&'static str, fn(&Tensor, &Tensor) -> Tensor);
    let ops: Vec<Op> = vec![
        ("add", |a, b| a.add(b).unwrap()),
        ("sub", |a, b| a.sub(b).unwrap()),
        ("mul", |a, b| a.mul(b).unwrap()),
        ("div", |a, b| a.div(b).unwrap()),
        ("maximum", |a, b| a.maximum(b).unwrap()),
        ("minimum", |a, b| a.minimum(b).unwrap()),
    ];
    let cmps: Vec<Op> = vec![
        ("eq", |a, b| a.eq(b).unwrap()),
        ("ne", |a, b| a.ne(b).unwrap()),
        ("lt", |a, b| a.lt(b).unwrap()),
        ("le", |a, b| a.le(b).unwrap()),
        ("gt", |a, b| a.gt(b).unwrap()),
        ("ge", |a, b| a.ge(b).unwrap()),
    ];
    // (lhs shape, rhs shape): same, row/col/scalar broadcast, rank-changing broadcast
    let pairs: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![3, 5], vec![3, 5]),
        (vec![17, 33], vec![33]),
        (vec![17, 33], vec![17, 1]),
        (vec![64, 257], vec![]),
        (vec![2, 1, 7], vec![5, 1]),
        (vec![4, 3, 1, 9], vec![3, 6, 1]),
    ];
    let mut rng = Lcg::new(3);
    for dtype in FLOATS {
        for (sa, sb) in &pairs {
            let a = rand_t(&mut rng, sa, dtype, 2.0);
            // rhs: half-integers (away from 0 for div)
            let b = int_t(&mut rng, sb, dtype, 2).affine(1.0, 0.5).unwrap();
            let (ga, gb) = (up(&a), up(&b));
            for (on, op) in &ops {
                close(
                    &format!("{on} {sa:?}x{sb:?} {dtype}"),
                    &op(&ga, &gb),
                    &op(&a, &b),
                );
            }
            for (on, op) in &cmps {
                same(
                    &format!("{on} {sa:?}x{sb:?} {dtype}"),
                    &op(&ga, &gb),
                    &op(&a, &b),
                );
                // ties: compare a tensor with itself broadcast
                same(
                    &format!("{on} self {sa:?} {dtype}"),
                    &op(&ga, &ga),
                    &op(&a, &a),
                );
            }
        }
        // strided operands: a transposed lhs with a narrowed rhs
        let a = rand_t(&mut rng, &[9, 6], dtype, 2.0);
        let b = rand_t(&mut rng, &[6, 12], dtype, 2.0)
            .affine(1.0, 3.0)
            .unwrap();
        let (ga, gb) = (up(&a), up(&b));
        let (av, bv) = (a.t().unwrap(), b.narrow(1, 3, 9).unwrap());
        let (gav, gbv) = (ga.t().unwrap(), gb.narrow(1, 3, 9).unwrap());
        for (on, op) in &ops {
            close(
                &format!("{on} strided {dtype}"),
                &op(&gav, &gbv),
                &op(&av, &bv),
            );
        }
        // where_cond: mask [5, 1] with on_true [7] and a transposed on_false [5, 7]
        let zero = Tensor::zeros(&[], DType::F32, Device::Cpu).unwrap();
        let m = rand_t(&mut rng, &[5, 1], DType::F32, 1.0)
            .gt(&zero)
            .unwrap();
        let t = rand_t(&mut rng, &[7], dtype, 1.0);
        let f = rand_t(&mut rng, &[7, 5], dtype, 1.0);
        same(
            &format!("where {dtype}"),
            &up(&m).where_cond(&up(&t), &up(&f).t().unwrap()).unwrap(),
            &m.where_cond(&t, &f.t().unwrap()).unwrap(),
        );
    }
    // NaN wins in maximum / minimum on both devices
    let a = Tensor::from_vec(vec![f32::NAN, 1.0, 2.0], &[3], Device::Cpu).unwrap();
    let b = Tensor::from_vec(vec![0.0, f32::NAN, 1.0], &[3], Device::Cpu).unwrap();
    same(
        "maximum nan",
        &up(&a).maximum(&up(&b)).unwrap(),
        &a.maximum(&b).unwrap(),
    );
    same(
        "minimum nan",
        &up(&a).minimum(&up(&b)).unwrap(),
        &a.minimum(&b).unwrap(),
    );
}

#[test]
fn reductions_and_softmax_match_cpu() {
    let Some(_g) = gpu_or_skip("reductions_and_softmax_match_cpu") else {
        return;
    };
    let mut rng = Lcg::new(4);
    let shapes: [&[usize]; 4] = [&[7], &[3, 5, 4], &[17, 33], &[2, 300, 3]];
    for dtype in FLOATS {
        for shape in shapes {
            let c = rand_t(&mut rng, shape, dtype, 2.0);
            let g = up(&c);
            let r = shape.len();
            close(
                &format!("sum_all {shape:?} {dtype}"),
                &g.sum_all().unwrap(),
                &c.sum_all().unwrap(),
            );
            for d in 0..r {
                for keep in [false, true] {
                    let w = format!("dim {d} keep {keep} {shape:?} {dtype}");
                    close(
                        &format!("sum {w}"),
                        &g.sum(&[d], keep).unwrap(),
                        &c.sum(&[d], keep).unwrap(),
                    );
                    close(
                        &format!("mean {w}"),
                        &g.mean(&[d], keep).unwrap(),
                        &c.mean(&[d], keep).unwrap(),
                    );
                    same(
                        &format!("max {w}"),
                        &g.max(d, keep).unwrap(),
                        &c.max(d, keep).unwrap(),
                    );
                    same(
                        &format!("min {w}"),
                        &g.min(d, keep).unwrap(),
                        &c.min(d, keep).unwrap(),
                    );
                    same(
                        &format!("argmax {w}"),
                        &g.argmax(d, keep).unwrap(),
                        &c.argmax(d, keep).unwrap(),
                    );
                }
                close(
                    &format!("softmax {d} {shape:?} {dtype}"),
                    &g.softmax(d).unwrap(),
                    &c.softmax(d).unwrap(),
                );
                close(
                    &format!("log_softmax {d} {shape:?} {dtype}"),
                    &g.log_softmax(d).unwrap(),
                    &c.log_softmax(d).unwrap(),
                );
            }
            if r == 3 {
                // several dims: a block ([0, 1]) and a non-block ([0, 2]); a strided input
                for dims in [[0usize, 1], [0, 2]] {
                    close(
                        &format!("sum {dims:?} {dtype}"),
                        &g.sum(&dims, false).unwrap(),
                        &c.sum(&dims, false).unwrap(),
                    );
                    close(
                        &format!("mean {dims:?} {dtype}"),
                        &g.mean(&dims, true).unwrap(),
                        &c.mean(&dims, true).unwrap(),
                    );
                }
                let (gv, cv) = (g.transpose(0, 2).unwrap(), c.transpose(0, 2).unwrap());
                close(
                    &format!("sum transposed {dtype}"),
                    &gv.sum(&[1], false).unwrap(),
                    &cv.sum(&[1], false).unwrap(),
                );
                same(
                    &format!("argmax transposed {dtype}"),
                    &gv.argmax(2, false).unwrap(),
                    &cv.argmax(2, false).unwrap(),
                );
                close(
                    &format!("softmax transposed {dtype}"),
                    &gv.softmax(2).unwrap(),
                    &cv.softmax(2).unwrap(),
                );
                // sum_to: reduce a broadcast result back
                let to = [shape[0], 1, shape[2]];
                close(
                    &format!("sum_to {dtype}"),
                    &g.sum_to(&to).unwrap(),
                    &c.sum_to(&to).unwrap(),
                );
                close(
                    &format!("sum_to rank {dtype}"),
                    &g.sum_to(&shape[1..]).unwrap(),
                    &c.sum_to(&shape[1..]).unwrap(),
                );
            }
        }
    }
    // argmax picks the first maximum (ties from small integers), NaN counts as the maximum
    let c = int_t(&mut rng, &[9, 40], DType::F32, 2);
    same(
        "argmax ties rows",
        &up(&c).argmax(1, false).unwrap(),
        &c.argmax(1, false).unwrap(),
    );
    same(
        "argmax ties cols",
        &up(&c).argmax(0, false).unwrap(),
        &c.argmax(0, false).unwrap(),
    );
    let n = Tensor::from_vec(
        vec![1.0f32, f32::NAN, 3.0, f32::NAN, 0.0, 5.0],
        &[2, 3],
        Device::Cpu,
    )
    .unwrap();
    for d in 0..2 {
        same(
            "argmax nan",
            &up(&n).argmax(d, false).unwrap(),
            &n.argmax(d, false).unwrap(),
        );
        same(
            "max nan",
            &up(&n).max(d, false).unwrap(),
            &n.max(d, false).unwrap(),
        );
    }
    // integer sums and f64 reductions
    let i = int_t(&mut rng, &[5, 6], DType::I64, 100);
    same(
        "sum i64",
        &up(&i).sum(&[1], false).unwrap(),
        &i.sum(&[1], false).unwrap(),
    );
    let f = rand_t(&mut rng, &[5, 6], DType::F64, 1.0);
    close(
        "mean f64",
        &up(&f).mean(&[0], false).unwrap(),
        &f.mean(&[0], false).unwrap(),
    );
}

#[test]
fn index_ops_match_cpu() {
    let Some(_g) = gpu_or_skip("index_ops_match_cpu") else {
        return;
    };
    let mut rng = Lcg::new(5);
    for dtype in FLOATS {
        for &(v, d) in &[(5usize, 3usize), (37, 64), (1000, 17)] {
            let table = rand_t(&mut rng, &[v, d], dtype, 1.0);
            let gt = up(&table);
            let ids: Vec<i64> = (0..2 * 7).map(|_| rng.below(v) as i64).collect();
            let ids = Tensor::from_vec(ids, &[2, 7], Device::Cpu).unwrap();
            let gids = up(&ids);
            same(
                &format!("embedding [{v}, {d}] {dtype}"),
                &gt.index_select(&gids, 0).unwrap(),
                &table.index_select(&ids, 0).unwrap(),
            );
            // i32 ids from the host, along dim 1 of a transposed table
            let ids1: Vec<i32> = (0..5).map(|_| rng.below(v) as i32).collect();
            let ids1 = Tensor::from_vec(ids1, &[5], Device::Cpu).unwrap();
            same(
                &format!("index_select dim 1 of t() {dtype}"),
                &gt.t().unwrap().index_select(&ids1, 1).unwrap(),
                &table.t().unwrap().index_select(&ids1, 1).unwrap(),
            );
            // index_add with repeated ids (the embedding backward)
            let src = rand_t(&mut rng, &[2, 7, d], dtype, 1.0);
            close(
                &format!("index_add [{v}, {d}] {dtype}"),
                &gt.index_add(0, &gids, &up(&src)).unwrap(),
                &table.index_add(0, &ids, &src).unwrap(),
            );
            let src1 = rand_t(&mut rng, &[d, 5], dtype, 1.0);
            close(
                &format!("index_add dim 1 {dtype}"),
                &gt.t().unwrap().index_add(1, &ids1, &up(&src1)).unwrap(),
                &table.t().unwrap().index_add(1, &ids1, &src1).unwrap(),
            );
        }
        // cat / stack along several dims; the third part is a strided (transposed) view
        let a = rand_t(&mut rng, &[3, 4, 5], dtype, 1.0);
        let b = rand_t(&mut rng, &[3, 4, 2], dtype, 1.0);
        let c = rand_t(&mut rng, &[5, 4, 3], dtype, 1.0); // used as c.transpose(0, 2): [3, 4, 5]
        let (ga, gb, gc) = (up(&a), up(&b), up(&c));
        let (cv, gcv) = (c.transpose(0, 2).unwrap(), gc.transpose(0, 2).unwrap());
        same(
            &format!("cat dim 2 {dtype}"),
            &Tensor::cat(&[&ga, &gb, &gcv], 2).unwrap(),
            &Tensor::cat(&[&a, &b, &cv], 2).unwrap(),
        );
        same(
            &format!("cat dim 0 {dtype}"),
            &Tensor::cat(&[&gcv, &ga], 0).unwrap(),
            &Tensor::cat(&[&cv, &a], 0).unwrap(),
        );
        same(
            &format!("cat dim 1 narrowed {dtype}"),
            &Tensor::cat(&[&ga.narrow(1, 1, 2).unwrap(), &gcv], 1).unwrap(),
            &Tensor::cat(&[&a.narrow(1, 1, 2).unwrap(), &cv], 1).unwrap(),
        );
        same(
            &format!("stack dim 1 {dtype}"),
            &Tensor::stack(&[&ga, &gcv], 1).unwrap(),
            &Tensor::stack(&[&a, &cv], 1).unwrap(),
        );
    }
    // out-of-range ids are the same clear error on both devices
    let t = Tensor::zeros(&[3, 2], DType::F32, DEV).unwrap();
    let bad = Tensor::from_vec(vec![3i64], &[1], Device::Cpu).unwrap();
    let e = t.index_select(&bad, 0).unwrap_err().to_string();
    assert!(
        e.contains("index_select") && e.contains("out of range"),
        "{e}"
    );
}

#[test]
fn matmul_matches_cpu() {
    let Some(_g) = gpu_or_skip("matmul_matches_cpu") else {
        return;
    };
    let mut rng = Lcg::new(7);
    // (lhs shape, rhs shape); small-integer inputs make every product and sum exact in f32,
    // so GPU (any summation order) and CPU must agree to the last bit.
    let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![1, 1], vec![1, 1]),
        (vec![37, 48], vec![48, 5]),
        (vec![3, 130], vec![130, 67]),
        (vec![4, 5, 6], vec![4, 6, 3]),
        (vec![2, 1, 4, 5], vec![3, 5, 6]),
        (vec![7, 9], vec![2, 9, 4]),
        (vec![9], vec![9, 4]),
        (vec![3, 9], vec![9]),
        (vec![6, 0], vec![0, 3]),
    ];
    for dtype in FLOATS {
        for (sa, sb) in &cases {
            let a = int_t(&mut rng, sa, dtype, 3);
            let b = int_t(&mut rng, sb, dtype, 3);
            let what = format!("{sa:?}x{sb:?} {dtype}");
            exact_f32(
                &what,
                &up(&a).matmul(&up(&b)).unwrap(),
                &a.matmul(&b).unwrap(),
            );
        }
        // transposed, narrowed and broadcast views read without copies or through copies
        let a = int_t(&mut rng, &[3, 24, 17], dtype, 3); // used as a.t(): [3, 17, 24]
        let b = int_t(&mut rng, &[10, 24], dtype, 3); // used as b.t(): [24, 10]
        let (ga, gb) = (up(&a), up(&b));
        exact_f32(
            &format!("t x t {dtype}"),
            &ga.t().unwrap().matmul(&gb.t().unwrap()).unwrap(),
            &a.t().unwrap().matmul(&b.t().unwrap()).unwrap(),
        );
        exact_f32(
            &format!("narrowed {dtype}"),
            &ga.narrow(1, 1, 20)
                .unwrap()
                .t()
                .unwrap()
                .matmul(&gb.narrow(1, 3, 20).unwrap().t().unwrap())
                .unwrap(),
            &a.narrow(1, 1, 20)
                .unwrap()
                .t()
                .unwrap()
                .matmul(&b.narrow(1, 3, 20).unwrap().t().unwrap())
                .unwrap(),
        );
        exact_f32(
            &format!("permuted batch {dtype}"),
            &ga.permute(&[1, 0, 2])
                .unwrap()
                .narrow(0, 0, 4)
                .unwrap()
                .matmul(&gb.t().unwrap().narrow(0, 0, 17).unwrap())
                .unwrap(),
            &a.permute(&[1, 0, 2])
                .unwrap()
                .narrow(0, 0, 4)
                .unwrap()
                .matmul(&b.t().unwrap().narrow(0, 0, 17).unwrap())
                .unwrap(),
        );
    }
    // random floats: f32 accumulation order differs, so compare against the GEMM error bound
    // |c - c_ref| <= 1e-5 * (|a| |b|)_ij
    let a = rand_t(&mut rng, &[33, 200], DType::F32, 1.0);
    let b = rand_t(&mut rng, &[200, 45], DType::F32, 1.0);
    let got = up(&a).matmul(&up(&b)).unwrap().to_vec::<f32>().unwrap();
    let a64 = a.to_dtype(DType::F64).unwrap();
    let b64 = b.to_dtype(DType::F64).unwrap();
    let want = a64.matmul(&b64).unwrap().to_vec::<f64>().unwrap();
    let bound = a64
        .abs()
        .unwrap()
        .matmul(&b64.abs().unwrap())
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    for i in 0..got.len() {
        assert!(
            got[i].is_finite() && (got[i] as f64 - want[i]).abs() <= 1e-5 * bound[i],
            "random matmul [{i}]: {} vs {}",
            got[i],
            want[i]
        );
    }
    // f64 / integer matmul are a clear error on CUDA
    let f = Tensor::ones(&[2, 2], DType::F64, DEV).unwrap();
    let e = f.matmul(&f).unwrap_err().to_string();
    assert!(e.contains("not implemented on CUDA yet: matmul"), "{e}");
}

#[test]
fn random_matches_cpu() {
    let Some(_g) = gpu_or_skip("random_matches_cpu") else {
        return;
    };
    for dtype in [DType::F32, DType::BF16, DType::F64, DType::F16] {
        for &(seed, offset, n) in &[
            (0u64, 0u64, 1usize),
            (7, 123, 1000),
            (u64::MAX, 1 << 40, 4097),
        ] {
            let shape = [n];
            let w = format!("seed {seed} offset {offset} n {n} {dtype}");
            same(
                &format!("rand {w}"),
                &Tensor::rand(seed, offset, &shape, dtype, DEV).unwrap(),
                &Tensor::rand(seed, offset, &shape, dtype, Device::Cpu).unwrap(),
            );
            same(
                &format!("dropout {w}"),
                &Tensor::dropout_mask(seed, offset, 0.3, &shape, dtype, DEV).unwrap(),
                &Tensor::dropout_mask(seed, offset, 0.3, &shape, dtype, Device::Cpu).unwrap(),
            );
            let g = Tensor::randn(seed, offset, &shape, dtype, DEV).unwrap();
            let c = Tensor::randn(seed, offset, &shape, dtype, Device::Cpu).unwrap();
            if dtype == DType::F64 || dtype == DType::F32 {
                // f32 Box-Muller: GPU logf/cosf vs the CPU's, within a few ulps
                let got = g.to_vec::<f32>().unwrap();
                assert_rel_close(
                    &format!("randn {w}"),
                    &got,
                    &c.to_vec::<f64>().unwrap(),
                    1e-5,
                );
            } else {
                close(&format!("randn {w}"), &g, &c);
            }
        }
    }
    assert!(Tensor::rand(0, 0, &[2], DType::I32, DEV).is_err());
}
