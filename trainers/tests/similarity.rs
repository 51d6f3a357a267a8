//! `predict_with_generate` metrics against LLaMA-Factory 0.9.5's own `ComputeSimilarity`
//! (jieba + rouge-chinese ROUGE-1/2/L, nltk BLEU-4), from the pairs recorded by
//! `tests/fixtures/hf/eval/make_similarity.py` (see `similarity/README.md`): every pair's jieba
//! words and four rounded scores, and the final metric dict of the whole set and of some leading
//! subsets, all within 1e-4.

use lmf_trainers::train::similarity::{jieba_cut, row_scores, similarity_metrics, METRIC_NAMES};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/hf/eval/similarity/cases.json"
);
const TOL: f64 = 1e-4;

fn fixture() -> Value {
    let text = std::fs::read_to_string(FIXTURE).expect("the similarity fixture is there");
    serde_json::from_str(&text).expect("the fixture is JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn pairs(case: &[Value]) -> (Vec<String>, Vec<String>) {
    let preds = case
        .iter()
        .map(|c| c["pred"].as_str().unwrap().to_string())
        .collect();
    let labels = case
        .iter()
        .map(|c| c["label"].as_str().unwrap().to_string())
        .collect();
    (preds, labels)
}

/// `expected` is the fixture's `[[key, value, repr], ...]`.
fn assert_metrics(got: &[(String, f64)], expected: &Value, what: &str) {
    let expected = expected.as_array().unwrap();
    assert_eq!(got.len(), expected.len(), "{what}: metric count");
    for ((key, value), exp) in got.iter().zip(expected) {
        assert_eq!(key, exp[0].as_str().unwrap(), "{what}: key order");
        let want = exp[1].as_f64().unwrap();
        assert!(
            (value - want).abs() <= TOL,
            "{what}: {key} = {value}, LF {want}"
        );
    }
}

#[test]
fn jieba_words_match_python() {
    let doc = fixture();
    for case in doc["cases"].as_array().unwrap() {
        for side in ["pred", "label"] {
            let text = case[side].as_str().unwrap();
            let want = strings(&case[format!("{side}_tokens")]);
            assert_eq!(
                jieba_cut(text),
                want,
                "{}: jieba.cut({text:?})",
                case["name"]
            );
        }
    }
}

#[test]
fn row_scores_match_lf() {
    let doc = fixture();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "the fixture has the pairs");
    for case in cases {
        let got = row_scores(
            case["pred"].as_str().unwrap(),
            case["label"].as_str().unwrap(),
        );
        for (name, value) in METRIC_NAMES.iter().zip(got.values()) {
            let want = case[*name].as_f64().unwrap();
            assert!(
                (value - want).abs() <= TOL,
                "{}: {name} = {value}, LF {want}",
                case["name"]
            );
        }
    }
}

#[test]
fn final_metrics_match_lf() {
    let doc = fixture();
    let cases = doc["cases"].as_array().unwrap();
    let (preds, labels) = pairs(cases);
    assert_metrics(
        &similarity_metrics(&preds, &labels),
        &doc["metrics"],
        "all rows",
    );
    for subset in doc["subsets"].as_array().unwrap() {
        let n = subset["rows"].as_u64().unwrap() as usize;
        let (preds, labels) = pairs(&cases[..n]);
        let what = format!("first {n} rows");
        assert_metrics(
            &similarity_metrics(&preds, &labels),
            &subset["metrics"],
            &what,
        );
    }
}

#[test]
fn zip_stops_at_the_shorter_list() {
    let preds = vec!["好".to_string(), "多余".to_string()];
    let labels = vec!["好".to_string()];
    let got = similarity_metrics(&preds, &labels);
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, METRIC_NAMES);
    assert_eq!(got[0].1, 100.0);
}
