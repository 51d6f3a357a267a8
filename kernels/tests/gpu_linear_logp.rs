//! GPU fused linear + per-token log-probability (`cuda::linear_logp`) against its CPU twin
//! (`cpu::linear_logp`, run in f64 on the same f32 inputs): log-probs of 1 and 37 tokens (a
//! prompt-only chunk and ignored tokens among them), vocabularies 1000 and 32003, chunks that
//! do not divide the token count, with and without the softcap; then the backward of
//! `Σ_t g[t]·logp[t]` with upstream weights of both signs (as a DPO loss gives chosen and
//! rejected tokens): `dx` poisoned (NaN) first, `dw` accumulated onto random values.
//! fp32 storage: the GPU sums in fp32 where the twin sums in f64, so values are compared
//! relative to the tensor's size (`assert_rel_close`, 1e-4). Without a CUDA device: prints
//! `skipped: no CUDA device`, passes.

use lmf_kernels::cpu::linear_ce::CeOptions;
use lmf_kernels::cpu::linear_logp as cpu;
use lmf_kernels::cuda::linear_logp as gk;
use lmf_kernels::cuda::testing::{assert_rel_close, gpu_or_skip};
use lmf_kernels::cuda::Gpu;
use lmf_kernels::testing::{rand_vec, Lcg};

const REL: f64 = 1e-4;

fn case(gpu: &Gpu, n: usize, h: usize, v: usize, o: CeOptions, seed: u64) {
    let what = format!("n {n} h {h} v {v} {o:?}");
    let mut rng = Lcg::new(seed);
    let x: Vec<f32> = rand_vec(&mut rng, n * h, 1.0);
    let w: Vec<f32> = rand_vec(&mut rng, v * h, 0.3);
    // The first 9 tokens are prompt (a whole chunk at chunk ≤ 9), then every 5th is ignored.
    let lab: Vec<i64> = (0..n)
        .map(|t| {
            if (t < 9 && n > 9) || t % 5 == 4 {
                -100
            } else {
                rng.below(v) as i64
            }
        })
        .collect();
    let g: Vec<f32> = rand_vec(&mut rng, n, 1.0);
    let dw0: Vec<f32> = rand_vec(&mut rng, v * h, 0.1);
    let f64s = |a: &[f32]| -> Vec<f64> { a.iter().map(|&y| y as f64).collect() };
    let (xf, wf, gf) = (f64s(&x), f64s(&w), f64s(&g));

    let mut want_logp = vec![0.0; n];
    cpu::linear_logp_forward(&xf, &wf, &lab, n, h, v, &o, &mut want_logp);
    let mut want_dx = vec![0.0; n * h];
    let mut want_dw = f64s(&dw0);
    cpu::linear_logp_backward(
        &xf,
        &wf,
        &lab,
        n,
        h,
        v,
        &o,
        &gf,
        Some(&mut want_dx),
        Some(&mut want_dw),
    );

    let (xd, wd, labd) = (
        gpu.htod(&x).unwrap(),
        gpu.htod(&w).unwrap(),
        gpu.htod(&lab).unwrap(),
    );
    let logp = gk::linear_logp_forward(
        gpu,
        &xd.as_view(),
        &wd.as_view(),
        &labd.as_view(),
        n,
        h,
        v,
        &o,
    )
    .unwrap();
    let logp: Vec<f32> = logp.iter().map(|&l| l as f32).collect();
    assert_rel_close(&format!("{what} logp"), &logp, &want_logp, REL);
    for (t, &y) in lab.iter().enumerate() {
        if y == -100 {
            assert_eq!(logp[t], 0.0, "{what}: ignored token {t}");
        }
    }

    let mut dx = gpu.poisoned::<f32>(n * h).unwrap();
    let mut dw = gpu.htod(&dw0).unwrap();
    gk::linear_logp_backward(
        gpu,
        &xd.as_view(),
        &wd.as_view(),
        &labd.as_view(),
        n,
        h,
        v,
        &o,
        &g,
        Some(&mut dx.as_view_mut()),
        Some(&mut dw.as_view_mut()),
    )
    .unwrap();
    assert_rel_close(
        &format!("{what} dx"),
        &gpu.dtoh(&dx).unwrap(),
        &want_dx,
        REL,
    );
    assert_rel_close(
        &format!("{what} dw"),
        &gpu.dtoh(&dw).unwrap(),
        &want_dw,
        REL,
    );
}

#[test]
fn gpu_linear_logp_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("gpu_linear_logp_matches_cpu_twin") else {
        return;
    };
    let mut seed = 0;
    for (n, h, v) in [(1, 64, 1000), (37, 64, 1000), (37, 100, 32003)] {
        for (chunk, softcap) in [(0, None), (8, None), (8, Some(30.0))] {
            seed += 1;
            let o = CeOptions {
                chunk,
                softcap,
                ..CeOptions::default()
            };
            case(&gpu, n, h, v, o, seed);
        }
    }
}
