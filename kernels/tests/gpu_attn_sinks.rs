//! GPU attention-sink fold and gradient against their CPU twin
//! (`cpu::attention::sinks`, run in f64 on the storage-rounded inputs), for f32/bf16/f16
//! storage, with rows that saw no key (`lse = −∞`) among them and head dims that are not a
//! multiple of 32. Outputs are poisoned first (dsink). Without a CUDA device: prints
//! `skipped: no CUDA device` and passes.

use half::{bf16, f16};
use lmf_kernels::cpu::attention::sinks as cpu;
use lmf_kernels::cuda::testing::{assert_bounded, assert_rel_close, gpu_or_skip, tolerance};
use lmf_kernels::cuda::{attn_sinks as gpu_k, Gpu, GpuFloat};
use lmf_kernels::testing::{rand_vec, Lcg};

fn check<T: GpuFloat>(gpu: &Gpu, tokens: usize, heads: usize, d: usize) {
    let mut rng = Lcg::new((tokens * 31 + heads * 7 + d) as u64);
    let round = |v: Vec<f64>| -> Vec<T> { v.iter().map(|&x| T::of_f32(x as f32)).collect() };
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f32() as f64).collect() };
    let f32s = |v: &[T]| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
    let mut out = round(rand_vec::<f64>(&mut rng, tokens * heads * d, 1.0));
    let mut lse: Vec<f32> = rand_vec::<f64>(&mut rng, heads * tokens, 3.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    // every 5th row of head 0 saw no key: out 0, lse −∞
    for t in (0..tokens).step_by(5) {
        lse[t] = f32::NEG_INFINITY;
        out[t * heads * d..][..d].fill(T::of_f32(0.0));
    }
    let sinks = round(rand_vec::<f64>(&mut rng, heads, 2.0));
    let dout = round(rand_vec::<f64>(&mut rng, tokens * heads * d, 1.0));

    // CPU twin in f64
    let (mut o_ref, mut l_ref) = (
        f64s(&out),
        lse.iter().map(|&v| v as f64).collect::<Vec<_>>(),
    );
    cpu::fold_sinks(&mut o_ref, &mut l_ref, &f64s(&sinks), d);
    let mut ds_ref = vec![0f64; heads];
    cpu::sinks_backward(&f64s(&dout), &o_ref, &l_ref, &f64s(&sinks), d, &mut ds_ref);
    // the bound of dsink: Σ_t exp(sink − lse')·Σ|dout·out'|
    let mut ds_abs = vec![0f64; heads];
    let (da, oa): (Vec<f64>, Vec<f64>) = (
        f64s(&dout).iter().map(|v| v.abs()).collect(),
        o_ref.iter().map(|v| v.abs()).collect(),
    );
    cpu::sinks_backward(&da, &oa, &l_ref, &f64s(&sinks), d, &mut ds_abs);
    ds_abs.iter_mut().for_each(|v| *v = v.abs());

    let mut od = gpu.htod(&out).unwrap();
    let mut ld = gpu.htod(&lse).unwrap();
    let sd = gpu.htod(&sinks).unwrap();
    gpu_k::fold_sinks(
        gpu,
        &mut od.as_view_mut(),
        &mut ld.as_view_mut(),
        &sd.as_view(),
        d,
    )
    .unwrap();
    let dd = gpu.htod(&dout).unwrap();
    let mut ds = gpu.poisoned::<T>(heads).unwrap();
    gpu_k::sinks_backward(
        gpu,
        &dd.as_view(),
        &od.as_view(),
        &ld.as_view(),
        &sd.as_view(),
        d,
        &mut ds.as_view_mut(),
    )
    .unwrap();
    let tol = tolerance(T::SUFFIX);
    let what = format!(
        "attn_sinks tokens={tokens} heads={heads} d={d} {}",
        T::SUFFIX
    );
    let o = f32s(&gpu.dtoh(&od).unwrap());
    assert_rel_close(&format!("{what} out"), &o, &o_ref, tol);
    let l = gpu.dtoh(&ld).unwrap();
    assert_rel_close(&format!("{what} lse"), &l, &l_ref, 1e-5);
    let g = f32s(&gpu.dtoh(&ds).unwrap());
    assert_bounded(&format!("{what} dsink"), &g, &ds_ref, &ds_abs, tol);
}

#[test]
fn attn_sinks_match_cpu_twin() {
    let Some(gpu) = gpu_or_skip("attn_sinks_match_cpu_twin") else {
        return;
    };
    for (tokens, heads, d) in [(1, 1, 64), (37, 4, 64), (300, 8, 45), (1025, 3, 128)] {
        check::<f32>(&gpu, tokens, heads, d);
        check::<bf16>(&gpu, tokens, heads, d);
        check::<f16>(&gpu, tokens, heads, d);
    }
}
