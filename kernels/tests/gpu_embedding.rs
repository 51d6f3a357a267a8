//! GPU embedding gather and scatter-add backward against the CPU twin (`cpu::embedding`, in
//! f64 on the storage-rounded inputs), ids i64 and i32, f32/bf16/f16 storage, shapes from one
//! token to more tokens than one sort tile (the global bitonic stages), many repeated ids.
//! The forward output is poisoned (NaN) first; the backward ACCUMULATES into a random dtable.
//! The backward sums each id's tokens in fp32 and rounds once, so it is compared relative to
//! `max(|want|, |dtable0| + Σ|dout|)` per element (the terms' size: a sum of signed terms may
//! cancel below any fp32 rounding of them). It must also be bit-reproducible.
//! Out-of-range ids: NaN rows forward, skipped backward.
//! Without a CUDA device: prints `skipped: no CUDA device` and passes.

use half::{bf16, f16};
use lmf_kernels::cpu::embedding as cpu;
use lmf_kernels::cuda::embedding::{self as gpu_k, EmbeddingId};
use lmf_kernels::cuda::testing::{gpu_or_skip, tolerance};
use lmf_kernels::cuda::{Gpu, GpuFloat};
use lmf_kernels::testing::{rand_vec, Lcg};

/// `|got − want| ≤ rel · max(|want|, scale[i])`; NaN or infinity never passes.
fn assert_close_scaled(what: &str, got: &[f32], want: &[f64], scale: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let g = g as f64;
        assert!(g.is_finite(), "{what}[{i}]: got {g} (want {w})");
        let bound = rel * w.abs().max(s).max(1e-30);
        assert!(
            (g - w).abs() <= bound,
            "{what}[{i}]: got {g}, want {w} (err {:.3e} > {bound:.3e})",
            (g - w).abs()
        );
    }
}

/// The ids as the kernel's id type.
trait Id: EmbeddingId {
    fn of(v: i64) -> Self;
}
impl Id for i64 {
    fn of(v: i64) -> Self {
        v
    }
}
impl Id for i32 {
    fn of(v: i64) -> Self {
        v as i32
    }
}

/// `n` ids, `bad` of them out of range (-1 or vocab), the rest in [0, vocab) with repeats.
fn make_ids(rng: &mut Lcg, n: usize, vocab: usize, bad: bool) -> Vec<i64> {
    let mut ids: Vec<i64> = (0..n).map(|_| rng.below(vocab) as i64).collect();
    if n > 3 {
        ids[1] = ids[0]; // a repeat next to its first use
    }
    if bad && n > 5 {
        ids[2] = -1;
        ids[n - 1] = vocab as i64;
    }
    ids
}

fn check<T: GpuFloat, I: Id>(gpu: &Gpu, n: usize, vocab: usize, dim: usize, bad: bool) {
    let mut rng = Lcg::new((n * 31 + vocab * 7 + dim) as u64);
    let round = |v: Vec<f64>| -> Vec<T> { v.iter().map(|&x| T::of_f32(x as f32)).collect() };
    let f64s = |v: &[T]| -> Vec<f64> { v.iter().map(|x| x.to_f32() as f64).collect() };
    let f32s = |v: &[T]| -> Vec<f32> { v.iter().map(|x| x.to_f32()).collect() };
    let ids = make_ids(&mut rng, n, vocab, bad);
    let valid = |id: i64| id >= 0 && (id as usize) < vocab;
    let table = round(rand_vec::<f64>(&mut rng, vocab * dim, 1.0));
    let dout = round(rand_vec::<f64>(&mut rng, n * dim, 1.0));
    let dtable0 = round(rand_vec::<f64>(&mut rng, vocab * dim, 1.0));
    let what = format!(
        "embedding n={n} vocab={vocab} dim={dim} {} {}",
        T::SUFFIX,
        I::SUFFIX
    );

    // CPU twin on the valid tokens only (it panics on bad ids; the GPU skips them).
    let keep: Vec<usize> = (0..n).filter(|&i| valid(ids[i])).collect();
    let ids_ok: Vec<i64> = keep.iter().map(|&i| ids[i]).collect();
    let doutf = f64s(&dout);
    let dout_ok: Vec<f64> = keep
        .iter()
        .flat_map(|&i| doutf[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let mut dtable_ref = f64s(&dtable0);
    cpu::embedding_backward(&ids_ok, &dout_ok, vocab, dim, &mut dtable_ref);
    let mut scale: Vec<f64> = f64s(&dtable0).iter().map(|v| v.abs()).collect();
    for (k, &id) in ids_ok.iter().enumerate() {
        for j in 0..dim {
            scale[id as usize * dim + j] += dout_ok[k * dim + j].abs();
        }
    }

    let idk: Vec<I> = ids.iter().map(|&v| I::of(v)).collect();
    let idd = gpu.htod(&idk).unwrap();
    let td = gpu.htod(&table).unwrap();
    let mut out = gpu.poisoned::<T>(n * dim).unwrap();
    gpu_k::embedding_forward(
        gpu,
        &idd.as_view(),
        &td.as_view(),
        vocab,
        dim,
        &mut out.as_view_mut(),
    )
    .unwrap();
    let out = gpu.dtoh(&out).unwrap();
    for (i, &id) in ids.iter().enumerate() {
        let row = f32s(&out[i * dim..(i + 1) * dim]);
        if valid(id) {
            let want = f32s(&table[id as usize * dim..(id as usize + 1) * dim]);
            assert_eq!(row, want, "{what}: forward row {i} (id {id})");
        } else {
            assert!(
                row.iter().all(|v| v.is_nan()),
                "{what}: row {i} of bad id {id} must be NaN"
            );
        }
    }

    let dd = gpu.htod(&dout).unwrap();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut dtable = gpu.htod(&dtable0).unwrap();
        gpu_k::embedding_backward(
            gpu,
            &idd.as_view(),
            &dd.as_view(),
            vocab,
            dim,
            &mut dtable.as_view_mut(),
        )
        .unwrap();
        runs.push(f32s(&gpu.dtoh(&dtable).unwrap()));
    }
    let tol = tolerance(T::SUFFIX);
    assert_close_scaled(
        &format!("{what} dtable"),
        &runs[0],
        &dtable_ref,
        &scale,
        tol,
    );
    let bits = |v: &[f32]| -> Vec<u32> { v.iter().map(|x| x.to_bits()).collect() };
    assert_eq!(
        bits(&runs[0]),
        bits(&runs[1]),
        "{what}: backward not bit-reproducible"
    );
}

fn all_types(gpu: &Gpu, n: usize, vocab: usize, dim: usize, bad: bool) {
    check::<f32, i64>(gpu, n, vocab, dim, bad);
    check::<bf16, i64>(gpu, n, vocab, dim, bad);
    check::<f16, i64>(gpu, n, vocab, dim, bad);
    check::<f32, i32>(gpu, n, vocab, dim, bad);
    check::<bf16, i32>(gpu, n, vocab, dim, bad);
}

#[test]
fn embedding_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip("embedding_matches_cpu_twin") else {
        return;
    };
    for &(n, vocab, dim) in &[
        (1, 1, 2),
        (7, 5, 64),
        (300, 13, 130),   // every id many times
        (1024, 7, 2),     // exactly one sort tile
        (1025, 3000, 64), // two tiles: one global stage
        (4100, 300, 256), // 8192 keys: several global stages
        (300, 2000, 4096),
    ] {
        all_types(&gpu, n, vocab, dim, false);
    }
}

#[test]
fn embedding_bad_ids_are_nan_forward_and_skipped_backward() {
    let Some(gpu) = gpu_or_skip("embedding_bad_ids") else {
        return;
    };
    all_types(&gpu, 7, 5, 64, true);
    all_types(&gpu, 2000, 100, 33, true);
}

#[test]
fn embedding_one_hot_id_many_tokens() {
    let Some(gpu) = gpu_or_skip("embedding_one_hot_id_many_tokens") else {
        return;
    };
    // vocab 1: all 5000 tokens are one run, summed by one block per column tile.
    check::<f32, i64>(&gpu, 5000, 1, 300, false);
    check::<bf16, i32>(&gpu, 5000, 1, 300, false);
}
