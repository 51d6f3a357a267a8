//! Self-consistency of the decoder: decoding token by token through the KV cache gives the
//! logits of a full forward, a padded row equals the row alone, and packed sequences do not
//! see each other.

mod common;

use lmf_autograd::no_grad;
use lmf_models::{CausalLM, SeqBatch};
use lmf_runtime::{DType, Device};

fn model(tag: &str, model_type: &str) -> CausalLM {
    CausalLM::load(
        &common::tiny_model(tag, model_type),
        DType::F32,
        Device::Cpu,
    )
    .unwrap()
}

fn logits(m: &CausalLM, b: &SeqBatch) -> Vec<f32> {
    no_grad(|| m.forward(b))
        .unwrap()
        .tensor()
        .to_vec::<f32>()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn cached_decode_equals_full_forward() {
    for t in ["llama", "qwen2"] {
        let m = model(&format!("kv-{t}"), t);
        let seqs = [vec![3u32, 17, 4, 9, 22, 41, 8], vec![5u32, 6, 7, 30]];
        let full = logits(&m, &SeqBatch::from_seqs(&seqs));
        let v = m.config.vocab_size;
        // prefill all but the last 2 tokens, then one token per step
        let mut cache = m.new_cache(2);
        let prefix: Vec<Vec<u32>> = seqs.iter().map(|s| s[..s.len() - 2].to_vec()).collect();
        no_grad(|| m.forward_last(&SeqBatch::from_seqs(&prefix), &mut cache)).unwrap();
        for step in (1..=2).rev() {
            let feed: Vec<Vec<u32>> = seqs.iter().map(|s| vec![s[s.len() - step]]).collect();
            let b = SeqBatch::with_offsets(&feed, cache.lens());
            let got = no_grad(|| m.forward_last(&b, &mut cache))
                .unwrap()
                .tensor()
                .to_vec::<f32>()
                .unwrap();
            for (i, s) in seqs.iter().enumerate() {
                let row = [0, seqs[0].len()][i] + s.len() - step;
                let d = max_diff(&got[i * v..(i + 1) * v], &full[row * v..(row + 1) * v]);
                assert!(d < 1e-5, "{t}: seq {i} step {step}: {d}");
            }
        }
    }
}

#[test]
fn packed_sequences_are_independent_and_padding_is_ignored() {
    let m = model("pack", "llama");
    let v = m.config.vocab_size;
    let a = vec![3u32, 17, 4, 9, 22];
    let b = vec![5u32, 6, 7];
    let alone = logits(&m, &SeqBatch::from_seqs(std::slice::from_ref(&b)));
    let packed = logits(&m, &SeqBatch::from_seqs(&[a.clone(), b.clone()]));
    assert!(max_diff(&packed[a.len() * v..], &alone) < 1e-5);
    // left-padded row [0, 0, 5, 6, 7] next to a
    let ids = [a.clone(), vec![0, 0, 5, 6, 7]].concat();
    let mask = [vec![1u8; 5], vec![0, 0, 1, 1, 1]].concat();
    let (batch, index) = SeqBatch::from_padded(&ids, &mask, 5).unwrap();
    assert_eq!(index[5..], [7, 8, 9]);
    let padded = logits(&m, &batch);
    assert!(max_diff(&padded[a.len() * v..], &alone) < 1e-5);
}

#[test]
fn in_place_cache_reads_equal_the_packed_path_bitwise() {
    // the f32 CPU cache is read in place by attention; with a tape recording, the same cache
    // is packed for the attention op instead: both give the same bits
    let m = model("kv-inplace", "llama");
    let seqs = [vec![3u32, 17, 4, 9, 22], vec![5u32, 6, 7]];
    let run = |grad: bool| -> Vec<u32> {
        let mut cache = m.new_cache(2);
        let mut out = vec![];
        let mut step = |b: &SeqBatch, cache: &mut lmf_models::KvCache| {
            let l = if grad {
                m.forward_last(b, cache).unwrap()
            } else {
                no_grad(|| m.forward_last(b, cache)).unwrap()
            };
            out.extend(
                l.tensor()
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits()),
            );
        };
        step(&SeqBatch::from_seqs(&seqs), &mut cache);
        for t in [11u32, 12] {
            let b = SeqBatch::with_offsets(&[vec![t], vec![t + 1]], cache.lens());
            step(&b, &mut cache);
        }
        out
    };
    assert_eq!(run(false), run(true));
}
