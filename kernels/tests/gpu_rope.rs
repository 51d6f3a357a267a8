//! GPU RoPE against its CPU twin (`cpu::rope`) on random inputs of several shapes (odd head
//! dims, partial rotary, one token, long rows), forward and backward, for f32/bf16/f16 storage.
//! The cos/sin tables come from `rope_tables` (f64) rounded to the storage type, as the
//! runtime uploads them. bf16/f16 are compared with the CPU twin run in f64 on the same
//! storage-rounded inputs; f32 with the CPU twin run in f32 (the kernel rounds like it, no
//! fused multiply-add: an f64 result differs from every f32 evaluation by more than 1e-5 of an
//! element where `a·cos − b·sin` cancels). Outputs are poisoned (NaN) first.
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.

use half::{bf16, f16};
use lmf_kernels::cpu::rope::{self as cpu, RopeConfig, RopeScaling};
use lmf_kernels::cuda::testing::{assert_rel_close, gpu_or_skip, tolerance};
use lmf_kernels::cuda::{rope as gpu_k, Gpu, GpuFloat};
use lmf_kernels::testing::{rand_vec, Lcg};

struct Case {
    tokens: usize,
    heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    scaling: RopeScaling,
}

fn check<T: GpuFloat>(gpu: &Gpu, c: &Case) {
    let (tokens, heads, head_dim, r) = (c.tokens, c.heads, c.head_dim, c.rotary_dim);
    let n = tokens * heads * head_dim;
    let half = r / 2;
    let cfg = RopeConfig {
        head_dim,
        rotary_dim: r,
        theta: 10000.0,
        max_position_embeddings: 4096,
        scaling: c.scaling.clone(),
    };
    // Two packed sequences (positions restart at 0), the second starting far out.
    let split = tokens / 2;
    let pos: Vec<i64> = (0..split as i64)
        .chain((0..(tokens - split) as i64).map(|p| 3000 + 7 * p))
        .collect();
    let (cos64, sin64) = cpu::rope_tables::<f64>(&cfg, &pos);
    let mut rng = Lcg::new((tokens * 131 + heads * 17 + head_dim + r) as u64);
    let round = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::of_f32(x as f32)).collect() };
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f32() as f64).collect() };
    let f32s = |v: &[T]| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
    let (cos, sin) = (round(&cos64), round(&sin64));
    let x = round(&rand_vec::<f64>(&mut rng, n, 2.0));
    let dy = round(&rand_vec::<f64>(&mut rng, n, 1.0));

    // The CPU twin: f32 storage runs it in f32, bf16/f16 in f64 on the rounded inputs.
    let reference = |input: &[T], backward: bool| -> Vec<f64> {
        if T::SUFFIX == "f32" {
            let (xi, ci, si) = (f32s(input), f32s(&cos), f32s(&sin));
            let mut y = vec![0f32; n];
            if backward {
                cpu::rope_backward(&xi, &ci, &si, tokens, heads, head_dim, r, &mut y);
            } else {
                cpu::rope_forward(&xi, &ci, &si, tokens, heads, head_dim, r, &mut y);
            }
            y.iter().map(|&v| v as f64).collect()
        } else {
            let (xi, ci, si) = (f64s(input), f64s(&cos), f64s(&sin));
            let mut y = vec![0f64; n];
            if backward {
                cpu::rope_backward(&xi, &ci, &si, tokens, heads, head_dim, r, &mut y);
            } else {
                cpu::rope_forward(&xi, &ci, &si, tokens, heads, head_dim, r, &mut y);
            }
            y
        }
    };
    let (y_ref, dx_ref) = (reference(&x, false), reference(&dy, true));

    let (xd, dyd) = (gpu.htod(&x).unwrap(), gpu.htod(&dy).unwrap());
    let (cd, sd) = (gpu.htod(&cos).unwrap(), gpu.htod(&sin).unwrap());
    assert_eq!(cos.len(), tokens * half);
    let mut y = gpu.poisoned::<T>(n).unwrap();
    gpu_k::rope_forward(
        gpu,
        &xd.as_view(),
        &cd.as_view(),
        &sd.as_view(),
        tokens,
        heads,
        head_dim,
        r,
        &mut y.as_view_mut(),
    )
    .unwrap();
    let mut dx = gpu.poisoned::<T>(n).unwrap();
    gpu_k::rope_backward(
        gpu,
        &dyd.as_view(),
        &cd.as_view(),
        &sd.as_view(),
        tokens,
        heads,
        head_dim,
        r,
        &mut dx.as_view_mut(),
    )
    .unwrap();
    let tol = tolerance(T::SUFFIX);
    let what = format!(
        "rope [{tokens}, {heads}, {head_dim}] rotary {r} {:?} {}",
        c.scaling,
        T::SUFFIX
    );
    let y_got = f32s(&gpu.dtoh(&y).unwrap());
    assert_rel_close(&format!("{what} y"), &y_got, &y_ref, tol);
    assert_rel_close(
        &format!("{what} dx"),
        &f32s(&gpu.dtoh(&dx).unwrap()),
        &dx_ref,
        tol,
    );
    // The partial-rotary tail is copied exactly.
    for (row, (yh, xh)) in y_got.chunks(head_dim).zip(x.chunks(head_dim)).enumerate() {
        for (d, (a, b)) in yh.iter().zip(xh).enumerate().skip(r) {
            assert_eq!(*a, b.to_f32(), "{what} tail row {row} dim {d}");
        }
    }
}

#[test]
fn rope_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("rope_matches_cpu_twin") else {
        return;
    };
    let yarn = RopeScaling::Yarn {
        factor: 4.0,
        original_max_position_embeddings: 1024,
        beta_fast: 32.0,
        beta_slow: 1.0,
        mscale: None,
        mscale_all_dim: None,
        attention_factor: None,
        truncate: true,
    };
    let case = |tokens, heads, head_dim, rotary_dim, scaling: &RopeScaling| Case {
        tokens,
        heads,
        head_dim,
        rotary_dim,
        scaling: scaling.clone(),
    };
    let d = RopeScaling::Default;
    for c in [
        case(1, 1, 2, 2, &d),
        case(7, 3, 64, 64, &d),
        case(300, 2, 130, 64, &d), // partial rotary, odd tail
        case(300, 5, 130, 130, &yarn),
        case(7, 1, 64, 2, &d),
        case(3, 2, 4096, 4096, &d),
        case(1, 1, 4096, 1024, &yarn),
        case(2048, 8, 128, 128, &d),
    ] {
        check::<f32>(&gpu, &c);
        check::<bf16>(&gpu, &c);
        check::<f16>(&gpu, &c);
    }
}

#[test]
fn rope_rejects_bad_shapes() {
    let Some(gpu) = gpu_or_skip("rope_rejects_bad_shapes") else {
        return;
    };
    let x = gpu.zeros::<f32>(2 * 8).unwrap();
    let t = gpu.zeros::<f32>(2 * 2).unwrap();
    let mut y = gpu.zeros::<f32>(2 * 8).unwrap();
    // rotary_dim odd, then larger than head_dim, then tables of the wrong size.
    for (rd, hd) in [(3, 8), (10, 8), (8, 8)] {
        let e = gpu_k::rope_forward(
            &gpu,
            &x.as_view(),
            &t.as_view(),
            &t.as_view(),
            2,
            1,
            hd,
            rd,
            &mut y.as_view_mut(),
        );
        assert!(e.is_err(), "rotary {rd} head_dim {hd} must be rejected");
    }
}
