//! NEFTune's noise against its formula (transformers' `neftune_post_forward_hook`): in
//! training forwards each embedding value moves by a uniform draw in `±α / √(len · hidden)`
//! (`len` the padded batch length), the same draws for the same seed, nothing in eval
//! forwards or outside [`with_neftune`].

use lmf_autograd::rng::manual_seed;
use lmf_autograd::{no_grad, DType, Device};
use lmf_models::adapter::set_training;
use lmf_models::model::neftune::{noise_bound, with_neftune};
use lmf_models::{CausalLM, SeqBatch};
use std::path::PathBuf;

fn model() -> CausalLM {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/train/models/llama");
    CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap()
}

fn embed(m: &CausalLM, b: &SeqBatch) -> Vec<f32> {
    no_grad(|| m.embed(b).unwrap().tensor().to_vec::<f32>().unwrap())
}

#[test]
fn noise_follows_the_formula() {
    let m = model();
    let seqs: Vec<Vec<u32>> = vec![(5..45).collect(), (100..131).collect(), (7..20).collect()];
    let b = SeqBatch::from_seqs(&seqs);
    let clean = embed(&m, &b);
    let (alpha, len) = (5.0, 40usize.next_multiple_of(8));
    let hidden = m.config.hidden_size;
    let mag = noise_bound(alpha, len, hidden);
    assert_eq!(mag, (5.0f32) / ((40 * 64) as f32).sqrt());
    let noisy = |seed| {
        manual_seed(seed);
        set_training(true);
        let out = with_neftune(alpha, len, || embed(&m, &b));
        set_training(false);
        out
    };
    let a = noisy(7);
    let d: Vec<f64> = a.iter().zip(&clean).map(|(x, y)| (x - y) as f64).collect();
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let var = d.iter().map(|x| x * x).sum::<f64>() / n - mean * mean;
    let max = d.iter().fold(0f64, |m, x| m.max(x.abs()));
    let mag = mag as f64;
    eprintln!(
        "bound {mag}, max {max}, mean {mean}, var {var} (uniform: {})",
        mag * mag / 3.0
    );
    // every value within the bound (plus the f32 rounding of the add)
    assert!(max <= mag * (1.0 + 1e-5) + 1e-6, "{max} > {mag}");
    // uniform on [−mag, mag]: the extremes are reached, mean 0, variance mag²/3 (n = 5376)
    assert!(max > 0.99 * mag);
    assert!(mean.abs() < 0.05 * mag);
    assert!((var / (mag * mag / 3.0) - 1.0).abs() < 0.05, "{var}");
    // the same seed draws the same noise, another seed other noise
    assert_eq!(a, noisy(7));
    assert_ne!(a, noisy(8));
    // eval forwards and forwards outside `with_neftune` are clean
    assert_eq!(with_neftune(alpha, len, || embed(&m, &b)), clean);
    set_training(true);
    let plain = embed(&m, &b);
    set_training(false);
    assert_eq!(plain, clean);
}
