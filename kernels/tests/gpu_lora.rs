//! GPU fused LoRA linear against its CPU twin (`cpu::lora`, run in f64 on the storage-rounded
//! inputs), forward and backward, for f32/bf16/f16 storage: tokens 1, 7, 33, 300; in 64/100;
//! ranks 1, 8, 16; dropout 0 and 0.1 (the same Philox mask on both sides); with and without
//! bias, dx, dW. Outputs that are overwritten (`y`, `xa`, `dx`) are poisoned (NaN) first;
//! accumulated ones (`dA`, `dB`, `dW`, `dbias`) start from random values. The backward gets the
//! GPU's own `xa` (as a training step would) on both sides.
//!
//! Comparison: `|got − want| ≤ tol·(max(|want|, 1e-3·max|want|) + S)`, where `S` is the twin
//! run on the absolute values of every input (the sum of the magnitudes of the terms of each
//! output). The GPU rounds to the storage type where the twin run in that type would (after
//! the base GEMM, `xa`, `d_xa`, `d_xa·A`): each such rounding is an error relative to those
//! terms, not to an output that happens to cancel to near zero.
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.

use half::{bf16, f16};
use lmf_kernels::cpu::lora::{self as cpu, LoraDropout};
use lmf_kernels::cuda::lora::{self as gk, LoraGrads};
use lmf_kernels::cuda::testing::{assert_bounded, gpu_or_skip, tolerance};
use lmf_kernels::cuda::{BlasFloat, Gpu};
use lmf_kernels::testing::{rand_vec, Lcg};

/// One set of host inputs (f64 values of the storage-rounded numbers).
struct Inputs {
    x: Vec<f64>,
    w: Vec<f64>,
    bias: Vec<f64>,
    a: Vec<f64>,
    b: Vec<f64>,
    dy: Vec<f64>,
    da0: Vec<f64>,
    db0: Vec<f64>,
    dw0: Vec<f64>,
    dbias0: Vec<f64>,
}

impl Inputs {
    fn abs(&self) -> Inputs {
        let f = |v: &[f64]| v.iter().map(|x| x.abs()).collect();
        Inputs {
            x: f(&self.x),
            w: f(&self.w),
            bias: f(&self.bias),
            a: f(&self.a),
            b: f(&self.b),
            dy: f(&self.dy),
            da0: f(&self.da0),
            db0: f(&self.db0),
            dw0: f(&self.dw0),
            dbias0: f(&self.dbias0),
        }
    }
}

/// The twin's outputs: forward `y`, `xa`; backward (given `xa`) `dx`, `dA`, `dB`, `dW`, `dbias`.
struct Outputs {
    y: Vec<f64>,
    xa: Vec<f64>,
    dx: Vec<f64>,
    da: Vec<f64>,
    db: Vec<f64>,
    dw: Vec<f64>,
    dbias: Vec<f64>,
}

/// The CPU twin in f64. The backward uses `xa_bwd` (the GPU's saved `xa`).
fn twin(
    i: &Inputs,
    (n, in_f, out_f, r): (usize, usize, usize, usize),
    scale: f64,
    bias: bool,
    d: Option<&LoraDropout>,
    xa_bwd: &[f64],
) -> Outputs {
    let mut y = vec![0.0; n * out_f];
    let mut xa = vec![0.0; n * r];
    cpu::lora_forward(
        &i.x,
        &i.w,
        bias.then_some(&i.bias[..]),
        &i.a,
        &i.b,
        n,
        in_f,
        out_f,
        r,
        scale,
        d,
        &mut y,
        &mut xa,
    );
    let mut dx = vec![0.0; n * in_f];
    let (mut da, mut db) = (i.da0.clone(), i.db0.clone());
    let (mut dw, mut dbias) = (i.dw0.clone(), i.dbias0.clone());
    cpu::lora_backward(
        &i.dy,
        &i.x,
        &i.w,
        &i.a,
        &i.b,
        xa_bwd,
        n,
        in_f,
        out_f,
        r,
        scale,
        d,
        cpu::LoraGrads {
            dx: Some(&mut dx),
            da: &mut da,
            db: &mut db,
            dw: Some(&mut dw),
            dbias: bias.then_some(&mut dbias[..]),
        },
    );
    Outputs {
        y,
        xa,
        dx,
        da,
        db,
        dw,
        dbias,
    }
}

#[derive(Clone, Copy)]
struct Case {
    n: usize,
    in_f: usize,
    out_f: usize,
    r: usize,
    scale: f32,
    bias: bool,
    p: f32,
    with_dx: bool,
    with_dw: bool,
}

fn check<T: BlasFloat>(gpu: &Gpu, c: Case) {
    let Case {
        n,
        in_f,
        out_f,
        r,
        scale,
        bias,
        p,
        with_dx,
        with_dw,
    } = c;
    let what = format!(
        "lora n={n} in={in_f} out={out_f} r={r} bias={bias} p={p} dx={with_dx} dw={with_dw} {}",
        T::SUFFIX
    );
    let mut rng = Lcg::new((n * 1009 + in_f * 101 + out_f * 7 + r) as u64);
    let mut rnd = |len: usize, s: f64| -> Vec<T> {
        rand_vec::<f64>(&mut rng, len, s)
            .iter()
            .map(|&v| T::of_f32(v as f32))
            .collect()
    };
    let x = rnd(n * in_f, 1.0);
    let w = rnd(out_f * in_f, 0.5);
    let bias_v = rnd(out_f, 0.5);
    let a = rnd(r * in_f, 0.5);
    let b = rnd(out_f * r, 0.5);
    let dy = rnd(n * out_f, 1.0);
    let da0 = rnd(r * in_f, 0.5);
    let db0 = rnd(out_f * r, 0.5);
    let dw0 = rnd(out_f * in_f, 0.5);
    let dbias0 = rnd(out_f, 0.5);
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|y| y.to_f32() as f64).collect() };
    let inputs = Inputs {
        x: f64s(&x),
        w: f64s(&w),
        bias: f64s(&bias_v),
        a: f64s(&a),
        b: f64s(&b),
        dy: f64s(&dy),
        da0: f64s(&da0),
        db0: f64s(&db0),
        dw0: f64s(&dw0),
        dbias0: f64s(&dbias0),
    };
    let drop = LoraDropout {
        p,
        seed: 0x5eed + n as u64,
        offset: 12_345,
    };
    let dropout = Some(&drop); // p = 0 must behave as no dropout

    // GPU forward.
    let up = |v: &[T]| gpu.htod(v).unwrap();
    let (xd, wd, biasd, ad, bd, dyd) = (up(&x), up(&w), up(&bias_v), up(&a), up(&b), up(&dy));
    let mut y = gpu.poisoned::<T>(n * out_f).unwrap();
    let mut xa = gpu.poisoned::<T>(n * r).unwrap();
    gk::lora_forward(
        gpu,
        &xd.as_view(),
        &wd.as_view(),
        bias.then(|| biasd.as_view()).as_ref(),
        &ad.as_view(),
        &bd.as_view(),
        n,
        in_f,
        out_f,
        r,
        scale,
        dropout,
        &mut y.as_view_mut(),
        &mut xa.as_view_mut(),
    )
    .unwrap();
    let host = |s: &cudarc::driver::CudaSlice<T>| -> Vec<f32> {
        gpu.dtoh(s).unwrap().iter().map(|v| v.to_f32()).collect()
    };
    let f32s = |v: &[T]| -> Vec<f32> { v.iter().map(|y| y.to_f32()).collect() };
    let xa_gpu = host(&xa);
    let xa_bwd: Vec<f64> = xa_gpu.iter().map(|&v| v as f64).collect();

    // GPU backward, from the GPU's xa.
    let mut dx = gpu.poisoned::<T>(n * in_f).unwrap();
    let (mut da, mut db) = (up(&da0), up(&db0));
    let (mut dw, mut dbias) = (up(&dw0), up(&dbias0));
    {
        let mut dx_v = dx.as_view_mut();
        let mut da_v = da.as_view_mut();
        let mut db_v = db.as_view_mut();
        let mut dw_v = dw.as_view_mut();
        let mut dbias_v = dbias.as_view_mut();
        gk::lora_backward(
            gpu,
            &dyd.as_view(),
            &xd.as_view(),
            &wd.as_view(),
            &ad.as_view(),
            &bd.as_view(),
            &xa.as_view(),
            n,
            in_f,
            out_f,
            r,
            scale,
            dropout,
            LoraGrads {
                dx: with_dx.then_some(&mut dx_v),
                da: &mut da_v,
                db: &mut db_v,
                dw: with_dw.then_some(&mut dw_v),
                dbias: bias.then_some(&mut dbias_v),
            },
        )
        .unwrap();
    }

    // The twin, and the twin on magnitudes (the error scale of every output).
    let dims = (n, in_f, out_f, r);
    let want = twin(&inputs, dims, scale as f64, bias, dropout, &xa_bwd);
    let xa_abs: Vec<f64> = xa_bwd.iter().map(|v| v.abs()).collect();
    let mag = twin(
        &inputs.abs(),
        dims,
        scale.abs() as f64,
        bias,
        dropout,
        &xa_abs,
    );
    let tol = tolerance(T::SUFFIX);
    assert_bounded(&format!("{what} y"), &host(&y), &want.y, &mag.y, tol);
    assert_bounded(&format!("{what} xa"), &xa_gpu, &want.xa, &mag.xa, tol);
    assert_bounded(&format!("{what} dA"), &host(&da), &want.da, &mag.da, tol);
    assert_bounded(&format!("{what} dB"), &host(&db), &want.db, &mag.db, tol);
    if with_dx {
        assert_bounded(&format!("{what} dx"), &host(&dx), &want.dx, &mag.dx, tol);
    } else {
        assert!(
            host(&dx).iter().all(|v| v.is_nan()),
            "{what}: dx written though not requested"
        );
    }
    if with_dw {
        assert_bounded(&format!("{what} dW"), &host(&dw), &want.dw, &mag.dw, tol);
    } else {
        assert_eq!(host(&dw), f32s(&dw0), "{what}: dW touched (frozen)");
    }
    if bias {
        assert_bounded(
            &format!("{what} dbias"),
            &host(&dbias),
            &want.dbias,
            &mag.dbias,
            tol,
        );
    } else {
        assert_eq!(host(&dbias), f32s(&dbias0), "{what}: dbias touched");
    }
}

const CASES: &[Case] = &[
    Case {
        n: 1,
        in_f: 64,
        out_f: 64,
        r: 1,
        scale: 2.0,
        bias: true,
        p: 0.0,
        with_dx: true,
        with_dw: false,
    },
    Case {
        n: 7,
        in_f: 100,
        out_f: 96,
        r: 8,
        scale: 0.5,
        bias: true,
        p: 0.1,
        with_dx: true,
        with_dw: true,
    },
    Case {
        n: 33,
        in_f: 64,
        out_f: 48,
        r: 16,
        scale: 1.0,
        bias: false,
        p: 0.1,
        with_dx: false,
        with_dw: false,
    },
    Case {
        n: 300,
        in_f: 100,
        out_f: 200,
        r: 16,
        scale: 0.125,
        bias: false,
        p: 0.1,
        with_dx: true,
        with_dw: false,
    },
    Case {
        n: 300,
        in_f: 64,
        out_f: 130,
        r: 8,
        scale: 2.0,
        bias: true,
        p: 0.0,
        with_dx: true,
        with_dw: true,
    },
];

#[test]
fn lora_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("lora_matches_cpu_twin") else {
        return;
    };
    for &c in CASES {
        check::<f32>(&gpu, c);
        check::<bf16>(&gpu, c);
        check::<f16>(&gpu, c);
    }
}

#[test]
fn lora_rejects_bad_dropout_and_shapes() {
    let Some(gpu) = gpu_or_skip("lora_rejects_bad_dropout_and_shapes") else {
        return;
    };
    let (n, in_f, out_f, r) = (2, 4, 3, 1);
    let z = |len: usize| gpu.zeros::<f32>(len).unwrap();
    let (x, w, a, b) = (z(n * in_f), z(out_f * in_f), z(r * in_f), z(out_f * r));
    let (mut y, mut xa) = (z(n * out_f), z(n * r));
    let bad = LoraDropout {
        p: 1.0,
        seed: 1,
        offset: 0,
    };
    let e = gk::lora_forward(
        &gpu,
        &x.as_view(),
        &w.as_view(),
        None,
        &a.as_view(),
        &b.as_view(),
        n,
        in_f,
        out_f,
        r,
        1.0,
        Some(&bad),
        &mut y.as_view_mut(),
        &mut xa.as_view_mut(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("dropout p = 1"), "{e}");
    let e = gk::lora_forward(
        &gpu,
        &x.as_view(),
        &w.as_view(),
        None,
        &a.as_view(),
        &b.as_view(),
        n,
        in_f + 1,
        out_f,
        r,
        1.0,
        None,
        &mut y.as_view_mut(),
        &mut xa.as_view_mut(),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("lora:"), "{e}");
}
