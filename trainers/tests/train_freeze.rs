//! Full / freeze selection against LLaMA-Factory itself: `tests/fixtures/hf/trainer/freeze.json`
//! (made by `make_freeze.py` running LF 0.9.5's `_setup_freeze_tuning` / `_setup_full_tuning`
//! on the tiny llama, qwen3 and gemma models) lists the trainable names per setting.

use std::path::PathBuf;

use lmf_autograd::{DType, Device};
use lmf_models::CausalLM;
use lmf_trainers::train::{freeze_trainable, full_trainable, FreezeSpec};
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

/// The FinetuningArguments of each case in make_freeze.py.
fn spec(case: &str) -> FreezeSpec {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut f = FreezeSpec {
        trainable_layers: 2,
        trainable_modules: s(&["all"]),
        extra_modules: vec![],
        use_llama_pro: false,
    };
    match case {
        "default" => {}
        "last1_mlp" => {
            f.trainable_layers = 1;
            f.trainable_modules = s(&["mlp"]);
        }
        "first1_all" => f.trainable_layers = -1,
        "first5_attn_extra_norm" => {
            f.trainable_layers = -5;
            f.trainable_modules = s(&["self_attn", "input_layernorm"]);
            f.extra_modules = s(&["norm", "embed_tokens"]);
        }
        "llama_pro_2" => f.use_llama_pro = true,
        "bad_module" => f.trainable_modules = s(&["attn"]),
        "bad_extra" => f.extra_modules = s(&["head"]),
        other => panic!("unknown case {other}"),
    }
    f
}

#[test]
fn selections_match_llamafactory() {
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/trainer/freeze.json")).unwrap(),
    )
    .unwrap();
    for (model_name, cases) in fx.as_object().unwrap() {
        let dir = PathBuf::from(format!("{ROOT}/models/{model_name}"));
        let model = CausalLM::load(&dir, DType::F32, Device::Cpu).unwrap();
        let names: Vec<String> = model
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for (case, want) in cases.as_object().unwrap() {
            let got = if case == "full" {
                Ok(full_trainable(&names))
            } else {
                freeze_trainable(&names, model.layers.len(), &spec(case)).map(|r| r.0)
            };
            match want {
                Value::Array(w) => {
                    let mut w: Vec<String> =
                        w.iter().map(|x| x.as_str().unwrap().to_string()).collect();
                    let mut g = got.unwrap_or_else(|e| panic!("{model_name}/{case}: {e}"));
                    w.sort();
                    g.sort();
                    assert_eq!(g, w, "{model_name}/{case}");
                }
                Value::Object(e) => {
                    let msg = e["error"].as_str().unwrap();
                    let got = got.expect_err(&format!("{model_name}/{case} must fail"));
                    // LF lists the choices from a set (unordered): compare up to the list.
                    let head = msg.split(", please choose from").next().unwrap();
                    assert!(
                        got.to_string().starts_with(head),
                        "{model_name}/{case}: {got}"
                    );
                }
                _ => panic!("bad fixture"),
            }
        }
    }
}
