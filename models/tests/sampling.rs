//! Sampling distributions against transformers' own logits processors (repetition penalty,
//! temperature, top-k, top-p in `generate`'s order). Fixture: `tests/fixtures/hf/make_sampling.py`.

use lmf_models::generate::apply_repetition_penalty;
use lmf_models::{sampling_distribution, GenerationConfig};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

#[test]
fn processed_probabilities_match_transformers() {
    let text = std::fs::read_to_string(format!("{FIXTURES}/expected/sampling.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let vocab = fixture["vocab"].as_u64().unwrap() as usize;
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for (n, c) in cases.iter().enumerate() {
        let f = |k: &str| c[k].as_f64().unwrap();
        let cfg = GenerationConfig {
            do_sample: true,
            temperature: f("temperature"),
            top_k: f("top_k") as usize,
            top_p: f("top_p"),
            repetition_penalty: f("repetition_penalty"),
            ..Default::default()
        };
        let mut logits: Vec<f32> = c["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let seen: Vec<u32> = c["seen"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        apply_repetition_penalty(&mut logits, &seen, cfg.repetition_penalty);
        let mut ours = vec![0.0; vocab];
        for (tok, p) in sampling_distribution(&logits, &cfg) {
            ours[tok as usize] = p;
        }
        let want: Vec<f64> = c["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        for (t, (a, b)) in ours.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-5, "case {n} token {t}: {a} vs {b}");
            assert_eq!(
                *a == 0.0,
                *b == 0.0,
                "case {n} token {t}: kept in one and not the other"
            );
        }
    }
}
