//! `train_from_scratch` init against transformers 5.6 itself:
//! `tests/fixtures/hf/train/scratch_init/cases.json` (`make_scratch_init.py`) holds, for tiny
//! llama / mistral / qwen2 / qwen3 / gemma configs and seeds 42 / 7 / 1234, every tensor of
//! `torch.manual_seed(seed); AutoModelForCausalLM.from_config(config).state_dict()`.
//!
//! Bit identity is checked with the FNV-1a 64 hash of each tensor's f32 little-endian bytes (the
//! workspace has no `sha2`; the fixture's SHA-256 is kept for other tools), plus the bit patterns
//! of the first and last 8 values, the sum of all values (f64, |Δ| < 1e-12 against `math.fsum`),
//! name, shape and order, and the generator's position after the init (the next 8 `uniform_` and
//! 2 scalar `normal_` torch drew).

use lmf_trainers::optim::torch_init::{
    hf_init_weights, hf_init_weights_with, HfInitConfig, TorchGenerator,
};
use serde_json::Value;

const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/hf/train/scratch_init/cases.json"
);

fn load() -> Value {
    let text = std::fs::read_to_string(CASES).expect("read scratch_init/cases.json");
    serde_json::from_str(&text).expect("parse scratch_init/cases.json")
}

fn usize_of(v: &Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or_else(|| panic!("{key}")) as usize
}

fn init_config(init: &Value) -> HfInitConfig {
    HfInitConfig {
        model_type: init["model_type"].as_str().expect("model_type").to_string(),
        vocab_size: usize_of(init, "vocab_size"),
        hidden_size: usize_of(init, "hidden_size"),
        intermediate_size: usize_of(init, "intermediate_size"),
        num_hidden_layers: usize_of(init, "num_hidden_layers"),
        num_attention_heads: usize_of(init, "num_attention_heads"),
        num_key_value_heads: usize_of(init, "num_key_value_heads"),
        head_dim: usize_of(init, "head_dim"),
        initializer_range: init["initializer_range"]
            .as_f64()
            .expect("initializer_range"),
        pad_token_id: init["pad_token_id"].as_i64(),
        tie_word_embeddings: init["tie_word_embeddings"].as_bool().expect("tie"),
        attention_bias: init["attention_bias"].as_bool().expect("attention_bias"),
        mlp_bias: init["mlp_bias"].as_bool().expect("mlp_bias"),
        dtype: init["dtype"].as_str().map(str::to_string),
    }
}

fn fnv1a64(values: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in values.iter().flat_map(|v| v.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn bits(values: &[f32]) -> Vec<String> {
    values
        .iter()
        .map(|x| format!("{:08x}", x.to_bits()))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// Checks one tensor against its fixture fingerprint; returns the mismatch, if any.
fn check_tensor(
    case: &str,
    want: &Value,
    name: &str,
    shape: &[usize],
    data: &[f32],
) -> Vec<String> {
    let mut bad = Vec::new();
    let want_name = want["name"].as_str().unwrap_or("");
    if want_name != name {
        bad.push(format!(
            "{case}: tensor `{name}`, fixture has `{want_name}` here"
        ));
        return bad;
    }
    let want_shape: Vec<usize> = want["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    if want_shape != shape {
        bad.push(format!("{case}: {name} shape {shape:?} != {want_shape:?}"));
        return bad;
    }
    let n = data.len();
    if bits(&data[..n.min(8)]) != strings(&want["first"]) {
        bad.push(format!("{case}: {name} first values differ"));
    }
    if bits(&data[n.saturating_sub(8)..]) != strings(&want["last"]) {
        bad.push(format!("{case}: {name} last values differ"));
    }
    if fnv1a64(data) != want["fnv1a64"].as_str().unwrap_or("") {
        bad.push(format!("{case}: {name} FNV-1a of the f32 bytes differs"));
    }
    let sum: f64 = data.iter().map(|&x| x as f64).sum();
    let want_sum = want["fsum"].as_f64().expect("fsum");
    if (sum - want_sum).abs() >= 1e-12 {
        bad.push(format!("{case}: {name} sum {sum} != {want_sum}"));
    }
    bad
}

#[test]
fn scratch_init_matches_transformers() {
    let doc = load();
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    let mut bad = Vec::new();
    let mut types = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let cfg = init_config(&case["init"]);
        types.insert(cfg.model_type.clone());
        let seed = case["seed"].as_u64().expect("seed");
        let mut g = TorchGenerator::manual_seed(seed);
        let got = hf_init_weights_with(&cfg, &mut g).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut want: Vec<&Value> = case["tensors"]
            .as_array()
            .expect("tensors")
            .iter()
            .collect();
        if case["tied_lm_head"].as_bool() == Some(true) {
            // state_dict lists the tied head too: it must be the embedding
            let head = want.pop().expect("lm_head");
            assert_eq!(head["name"], "lm_head.weight", "{name}");
            assert_eq!(
                head["fnv1a64"], want[0]["fnv1a64"],
                "{name}: tied head != embedding"
            );
        }
        if got.len() != want.len() {
            bad.push(format!(
                "{name}: {} tensors, fixture {}",
                got.len(),
                want.len()
            ));
            continue;
        }
        for ((tname, shape, data), w) in got.iter().zip(&want) {
            bad.extend(check_tensor(name, w, tname, shape, data));
        }
        // the generator is where from_config left torch's: the next uniforms and scalar normals
        if bits(&g.uniform_(8, 0.0, 1.0)) != strings(&case["next_uniform"]) {
            bad.push(format!("{name}: stream position after init differs"));
        }
        if bits(&g.normal_(2, 0.0, 1.0)) != strings(&case["next_normal"]) {
            bad.push(format!("{name}: cached scalar normal after init differs"));
        }
        // the seed-only entry point gives the same tensors
        assert_eq!(hf_init_weights(&cfg, seed).as_ref(), Ok(&got), "{name}");
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    let all: Vec<&str> = types.iter().map(String::as_str).collect();
    assert_eq!(all, ["gemma", "llama", "mistral", "qwen2", "qwen3"]);
}

/// The raw generator calls of the fixture's `torch_ops`, in full.
#[test]
fn torch_ops_match_torch() {
    let doc = load();
    let ops = &doc["torch_ops"];
    let mut g = TorchGenerator::manual_seed(42);
    for op in ops["sequence_seed42"].as_array().expect("sequence") {
        let n = usize_of(op, "n");
        let (a, b) = (op["a"].as_f64().expect("a"), op["b"].as_f64().expect("b"));
        let got = match op["op"].as_str() {
            Some("uniform") => g.uniform_(n, a, b),
            _ => g.normal_(n, a, b),
        };
        assert_eq!(bits(&got), strings(&op["bits"]), "{op:?}");
    }
    let mut g = TorchGenerator::manual_seed(7);
    let (w, b) = g.linear_reset_(5, 7, true);
    let lin = &ops["linear_7_to_5_seed7"];
    assert_eq!(bits(&w), strings(&lin["weight"]));
    assert_eq!(bits(&b.unwrap_or_default()), strings(&lin["bias"]));
    let randn = lmf_trainers::optim::torch_randn::randn(40, 1234);
    assert_eq!(bits(&randn), strings(&ops["randn_40_seed1234"]));
    let z = &ops["zero_uniform"];
    let (seed, n, i) = (
        z["seed"].as_u64().expect("seed"),
        usize_of(z, "n"),
        usize_of(z, "index"),
    );
    let v = TorchGenerator::manual_seed(seed).normal_(n, 0.0, 1.0);
    assert_eq!(bits(&v[i..i + 1])[0], z["normal_"].as_str().unwrap_or(""));
    assert_eq!(
        bits(&v[i + 8..i + 9])[0],
        z["partner"].as_str().unwrap_or("")
    );
    let r = lmf_trainers::optim::torch_randn::randn(n, seed);
    assert_eq!(bits(&r[i..i + 1])[0], z["randn"].as_str().unwrap_or(""));
}
