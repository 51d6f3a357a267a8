//! Continuous batching ([`DecodeBatch`] in batch-invariant mode): sequences that join a
//! running batch at different steps, with their own settings, each get exactly the tokens
//! they get alone — and alone they get what `generate` (the `lmf chat` path) gives.

mod common;

use lmf_models::{generate, CausalLM, DecodeBatch, Finish, GenerationConfig};
use lmf_runtime::{DType, Device};
use std::collections::BTreeMap;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

/// A small deterministic generator of prompts (no test depends on its exact values).
fn prompts(vocab: u32, n: usize) -> Vec<Vec<u32>> {
    let mut x = 0x2545f4914f6cdd1du64;
    (0..n)
        .map(|i| {
            let len = 3 + (i * 7) % 29;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % vocab as u64) as u32
                })
                .collect()
        })
        .collect()
}

/// Settings of request `i`: mostly greedy, some sampled (seeded) or penalised, lengths vary.
fn settings(i: usize, eos: u32) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: 4 + (i * 5) % 19,
        do_sample: i % 4 == 3,
        temperature: 0.8,
        top_p: 0.9,
        top_k: 20,
        repetition_penalty: if i % 5 == 2 { 1.3 } else { 1.0 },
        eos_token_ids: vec![eos],
        seed: 100 + i as u64,
    }
}

/// The tokens of one sequence run alone through a batch-invariant batch.
fn solo(m: &CausalLM, prompt: &[u32], cfg: &GenerationConfig) -> (Vec<u32>, Finish) {
    let mut b = DecodeBatch::new(m, true);
    b.admit(0, prompt.to_vec(), cfg.clone(), 0).unwrap();
    let mut out = vec![];
    loop {
        let e = b.step().unwrap();
        assert_eq!(e.len(), 1);
        out.push(e[0].token);
        if let Some(f) = e[0].finish {
            assert!(b.is_empty());
            return (out, f);
        }
    }
}

fn check(m: &CausalLM, what: &str) {
    let vocab = m.config.vocab_size as u32;
    let eos = 2.min(vocab - 1);
    let ps = prompts(vocab, 16);
    let cfgs: Vec<GenerationConfig> = (0..16).map(|i| settings(i, eos)).collect();
    let alone: Vec<(Vec<u32>, Finish)> = ps.iter().zip(&cfgs).map(|(p, c)| solo(m, p, c)).collect();
    // alone in the batch = what `generate` gives the same prompt (stream 0 both)
    for (i, (p, c)) in ps.iter().zip(&cfgs).enumerate() {
        let g = generate(m, std::slice::from_ref(p), c, |_, _| {}).unwrap();
        assert_eq!(
            g[0], alone[i].0,
            "{what}: request {i}: generate vs solo batch"
        );
    }
    // all 16 together: 4 at the start, then one more per step; request 5 cancelled after
    // its third token
    let mut b = DecodeBatch::new(m, true);
    let mut got: BTreeMap<u64, (Vec<u32>, Option<Finish>)> = BTreeMap::new();
    let mut next = 0;
    let mut steps = 0;
    let mut cancelled = false;
    while next < 16 || !b.is_empty() {
        let admit = if steps == 0 { 4 } else { 1 };
        for _ in 0..admit {
            if next < 16 {
                b.admit(next as u64, ps[next].clone(), cfgs[next].clone(), 0)
                    .unwrap();
                next += 1;
            }
        }
        for e in b.step().unwrap() {
            let entry = got.entry(e.key).or_default();
            assert!(
                entry.1.is_none(),
                "{what}: request {} ran after finishing",
                e.key
            );
            entry.0.push(e.token);
            entry.1 = e.finish;
        }
        if !cancelled && got.get(&5).is_some_and(|g| g.0.len() == 3 && g.1.is_none()) {
            cancelled = true;
            assert!(b.cancel(5));
            assert!(!b.cancel(5), "cancelled twice");
        }
        steps += 1;
        assert!(steps < 200, "{what}: the batch never drained");
    }
    for i in 0..16u64 {
        let (toks, fin) = &got[&i];
        let (want, want_fin) = &alone[i as usize];
        if i == 5 && want.len() > 3 {
            assert_eq!(toks[..], want[..3], "{what}: cancelled request 5");
            assert_eq!(*fin, None);
            continue;
        }
        assert_eq!(toks, want, "{what}: request {i} in the batch vs alone");
        assert_eq!(fin.as_ref(), Some(want_fin), "{what}: request {i} finish");
    }
}

#[test]
fn batched_requests_get_their_solo_tokens() {
    let llama3 = CausalLM::load(
        std::path::Path::new(&format!("{FIX}/models/llama3")),
        DType::F32,
        Device::Cpu,
    )
    .unwrap();
    check(&llama3, "llama3 fixture");
    let qwen2 = CausalLM::load(
        &common::tiny_model("decode-batch-qwen2", "qwen2"),
        DType::F32,
        Device::Cpu,
    )
    .unwrap();
    check(&qwen2, "tiny qwen2");
}

#[test]
fn admit_rejects_bad_requests() {
    let m = CausalLM::load(
        &common::tiny_model("decode-batch-bad", "llama"),
        DType::F32,
        Device::Cpu,
    )
    .unwrap();
    let mut b = DecodeBatch::new(&m, true);
    let cfg = GenerationConfig::default();
    assert!(b.admit(0, vec![], cfg.clone(), 0).is_err());
    let zero = GenerationConfig {
        max_new_tokens: 0,
        ..cfg.clone()
    };
    assert!(b.admit(0, vec![1], zero, 0).is_err());
    let hot = GenerationConfig {
        do_sample: true,
        temperature: 0.0,
        ..cfg
    };
    assert!(b.admit(0, vec![1], hot, 0).is_err());
    assert!(b.is_empty());
}

/// The property underneath, on logits: a decode step of 16 cached sequences in one forward
/// gives each sequence, bit for bit, the logits of its own one-sequence step — inside
/// `batch_invariant`. Outside it the 16-row weight products take the blocked GEMM, whose
/// sums are ordered differently, which is why serving needs the mode.
#[test]
fn batch_invariant_decode_logits_equal_solo_bitwise() {
    use lmf_autograd::no_grad;
    use lmf_models::model::batch_invariant;
    use lmf_models::SeqBatch;
    let m = CausalLM::load(
        std::path::Path::new(&format!("{FIX}/models/llama3")),
        DType::F32,
        Device::Cpu,
    )
    .unwrap();
    let v = m.config.vocab_size;
    let ps = prompts(v as u32, 16);
    let prefill = |p: &Vec<u32>| {
        let mut c = m.new_cache(1);
        no_grad(|| m.forward_last(&SeqBatch::from_seqs(std::slice::from_ref(p)), &mut c)).unwrap();
        c
    };
    let bits = |x: lmf_autograd::Var| -> Vec<u32> {
        let x = x.tensor().to_vec::<f32>().unwrap();
        x.iter().map(|f| f.to_bits()).collect()
    };
    let feed: Vec<Vec<u32>> = (0..16)
        .map(|i| vec![(7 * i + 1) as u32 % v as u32])
        .collect();
    let mut solo = vec![];
    for (p, f) in ps.iter().zip(&feed) {
        let mut c = prefill(p);
        let b = SeqBatch::with_offsets(std::slice::from_ref(f), c.lens());
        solo.push(bits(no_grad(|| m.forward_last(&b, &mut c)).unwrap()));
    }
    let step = |invariant: bool| -> Vec<u32> {
        let mut cache = m.new_cache(0);
        for p in &ps {
            cache.extend(prefill(p));
        }
        let b = SeqBatch::with_offsets(&feed, cache.lens());
        let mut run = || no_grad(|| m.forward_last(&b, &mut cache)).unwrap();
        bits(if invariant {
            batch_invariant(run)
        } else {
            run()
        })
    };
    let together = step(true);
    for (i, s) in solo.iter().enumerate() {
        assert_eq!(&together[i * v..(i + 1) * v], &s[..], "sequence {i}");
    }
    let plain = step(false);
    assert!(
        (0..16).any(|i| plain[i * v..(i + 1) * v] != solo[i][..]),
        "without the mode the batched logits were bitwise solo too: this test no longer shows why the mode exists"
    );
}
