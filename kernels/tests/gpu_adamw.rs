//! GPU fused AdamW against its CPU twin (`cpu::adamw`, f32 only: the optimizer state is fp32
//! everywhere) over 3 steps with weight decay: param, m and v (fp32, 1e-5, and bit-identical:
//! the kernel uses the CPU's scalars and rounding), with grads in f32/bf16/f16, and the
//! bf16/f16 compute copy of the updated weights (`tolerance`, and equal to rounding the
//! master). Sizes from 1 to past the grid-stride cap. Copies are poisoned (NaN) first.
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.

use half::{bf16, f16};
use lmf_kernels::cpu::adamw::{self as cpu, AdamWParams, ParamCopy};
use lmf_kernels::cuda::testing::{assert_rel_close, gpu_or_skip, tolerance};
use lmf_kernels::cuda::{adamw as gpu_k, Gpu, GpuFloat};
use lmf_kernels::testing::{rand_vec, Lcg};

fn params(step: u64) -> AdamWParams {
    AdamWParams {
        lr: 1e-3,
        weight_decay: 0.01,
        step,
        ..Default::default()
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// 3 steps of `adamw_step_with_copy` into `C` (or, without `with_copy`, of plain `adamw_step`).
fn check<G, C>(gpu: &Gpu, n: usize, with_copy: bool)
where
    G: GpuFloat + Into<f32>,
    C: GpuFloat + ParamCopy,
{
    let mut rng = Lcg::new(n as u64 * 3 + 1);
    let mut p_ref: Vec<f32> = rand_vec(&mut rng, n, 1.0);
    let (mut m_ref, mut v_ref) = (vec![0f32; n], vec![0f32; n]);
    let mut c_ref = vec![C::of_f32(0.0); n];
    let mut p = gpu.htod(&p_ref).unwrap();
    let (mut m, mut v) = (gpu.zeros::<f32>(n).unwrap(), gpu.zeros::<f32>(n).unwrap());
    let mut copy = gpu.poisoned::<C>(n).unwrap();
    let what = format!(
        "adamw n={n} grad {} copy {}",
        G::SUFFIX,
        if with_copy { C::SUFFIX } else { "none" }
    );
    for step in 1..=3 {
        let h = params(step);
        // Grads in their storage type; the CPU twin widens them exactly.
        let g: Vec<G> = rand_vec::<f32>(&mut rng, n, 0.5)
            .iter()
            .map(|&x| G::of_f32(x))
            .collect();
        let gd = gpu.htod(&g).unwrap();
        if with_copy {
            cpu::adamw_step_with_copy(&mut p_ref, &g, &mut m_ref, &mut v_ref, &h, &mut c_ref);
            gpu_k::adamw_step_with_copy(
                gpu,
                &mut p.as_view_mut(),
                &gd.as_view(),
                &mut m.as_view_mut(),
                &mut v.as_view_mut(),
                &h,
                &mut copy.as_view_mut(),
            )
            .unwrap();
        } else {
            let gw: Vec<f32> = g.iter().map(|&x| x.into()).collect();
            cpu::adamw_step(&mut p_ref, &gw, &mut m_ref, &mut v_ref, &h);
            gpu_k::adamw_step(
                gpu,
                &mut p.as_view_mut(),
                &gd.as_view(),
                &mut m.as_view_mut(),
                &mut v.as_view_mut(),
                &h,
            )
            .unwrap();
        }
    }
    let (pg, mg, vg) = (
        gpu.dtoh(&p).unwrap(),
        gpu.dtoh(&m).unwrap(),
        gpu.dtoh(&v).unwrap(),
    );
    assert_rel_close(&format!("{what} param"), &pg, &f64s(&p_ref), 1e-5);
    assert_rel_close(&format!("{what} m"), &mg, &f64s(&m_ref), 1e-5);
    assert_rel_close(&format!("{what} v"), &vg, &f64s(&v_ref), 1e-5);
    assert_eq!(bits(&pg), bits(&p_ref), "{what}: param not bit-identical");
    assert_eq!(bits(&mg), bits(&m_ref), "{what}: m not bit-identical");
    assert_eq!(bits(&vg), bits(&v_ref), "{what}: v not bit-identical");
    if with_copy {
        let cg: Vec<f32> = gpu
            .dtoh(&copy)
            .unwrap()
            .iter()
            .map(|x| x.to_f32())
            .collect();
        let cr: Vec<f32> = c_ref.iter().map(|x| x.to_f32()).collect();
        assert_rel_close(
            &format!("{what} copy"),
            &cg,
            &f64s(&p_ref),
            tolerance(C::SUFFIX),
        );
        assert_eq!(bits(&cg), bits(&cr), "{what}: copy is not round(param)");
    }
}

#[test]
fn adamw_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("adamw_matches_cpu_twin") else {
        return;
    };
    for n in [1, 7, 300, 4096, 4096 * 257 + 3] {
        check::<f32, f32>(&gpu, n, false);
        check::<bf16, f32>(&gpu, n, false);
        check::<f32, bf16>(&gpu, n, true);
        check::<bf16, bf16>(&gpu, n, true);
        check::<f16, f16>(&gpu, n, true);
    }
    // Past 256 threads x 65536 blocks: the grid-stride loop's second lap.
    check::<bf16, bf16>(&gpu, 256 * 65536 + 77, true);
}

#[test]
fn adamw_rejects_step_zero_and_bad_lengths() {
    let Some(gpu) = gpu_or_skip("adamw_rejects_step_zero_and_bad_lengths") else {
        return;
    };
    let mut p = gpu.zeros::<f32>(4).unwrap();
    let g = gpu.zeros::<f32>(4).unwrap();
    let g3 = gpu.zeros::<f32>(3).unwrap();
    let (mut m, mut v) = (gpu.zeros::<f32>(4).unwrap(), gpu.zeros::<f32>(4).unwrap());
    let mut run = |grad: &cudarc::driver::CudaSlice<f32>, step| {
        gpu_k::adamw_step(
            &gpu,
            &mut p.as_view_mut(),
            &grad.as_view(),
            &mut m.as_view_mut(),
            &mut v.as_view_mut(),
            &params(step),
        )
    };
    assert!(run(&g, 0).is_err(), "step 0");
    assert!(run(&g3, 1).is_err(), "grad length");
    assert!(run(&g, 1).is_ok());
}
