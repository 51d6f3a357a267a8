//! LLaMA-Factory argument parsing against facts produced by LLaMA-Factory 0.9.5 itself
//! (`tests/fixtures/hf/args/make_args.py` → `lf_args.json`): every field's name, type and
//! default, `__post_init__` results, `get_infer_args` on real command lines, and the generation
//! settings its engine derives. Plus precedence, and the text of each kind of error.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use lmf_trainers::args::data::DataArguments;
use lmf_trainers::args::finetuning::FinetuningArguments;
use lmf_trainers::args::generating::{GenerateRequest, GeneratingArguments};
use lmf_trainers::args::infer::{infer_fields, InferArgs};
use lmf_trainers::args::model::ModelArguments;
use lmf_trainers::args::multi::{List, Union2};
use lmf_trainers::args::raw::yaml_value;
use lmf_trainers::args::raw::{parse_raw, RawArgs, RawValue};
use lmf_trainers::args::spec::{FieldSpec, Resolver, Status};
use lmf_trainers::args::training::{training_fields, SchedulerType, TrainingArguments};
use lmf_trainers::args::value::ArgValue;
use lmf_trainers::args::{parse_infer_args, ArgsError, Origin};

fn fixture_dir() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/hf/args"
    ))
    .to_path_buf()
}

fn fixture() -> Value {
    let path = fixture_dir().join("lf_args.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("lf_args.json is JSON")
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A fixture command line, with its config file (named relative to the fixture folder) made
/// absolute.
fn fixture_argv(words: &Value) -> Vec<String> {
    let mut out: Vec<String> = words
        .as_array()
        .expect("argv is a list")
        .iter()
        .map(|w| w.as_str().expect("argv word").to_string())
        .collect();
    if let Some(first) = out.first_mut() {
        if first.ends_with(".yaml") || first.ends_with(".json") {
            *first = fixture_dir().join(&*first).display().to_string();
        }
    }
    out
}

/// Raw arguments from a JSON mapping, as if read from a config file (what `get_infer_args(dict)`
/// gets).
fn raw_from_map(map: &Map<String, Value>) -> RawArgs {
    let mut raw = RawArgs::new();
    for (k, v) in map {
        raw.insert(k.clone(), RawValue::File(v.clone()), Origin::CommandLine);
    }
    raw
}

fn groups() -> [(&'static str, Vec<FieldSpec>); 5] {
    [
        ("ModelArguments", ModelArguments::fields()),
        ("DataArguments", DataArguments::fields()),
        ("FinetuningArguments", FinetuningArguments::fields()),
        ("GeneratingArguments", GeneratingArguments::fields()),
        ("TrainingArguments", training_fields()),
    ]
}

/// LF declares comma lists as `str` and splits them in `__post_init__`; lmf splits while parsing.
/// A Python `float` field with an `int` default (`logging_steps: float = 500`) is the same number.
fn lf_default_as_ours(lf: &Value, ours: &Value) -> Value {
    match (lf, ours) {
        (Value::Number(a), Value::Number(b)) if a.is_i64() && b.is_f64() => {
            match a.as_f64().and_then(serde_json::Number::from_f64) {
                Some(n) => Value::Number(n),
                None => lf.clone(),
            }
        }
        (Value::String(s), Value::Array(_)) => Value::Array(
            s.split(',')
                .map(|x| Value::String(x.trim().into()))
                .collect(),
        ),
        _ => lf.clone(),
    }
}

/// `value` (a serialized argument group) without lmf's own keys (`template_file`), which
/// LLaMA-Factory's dataclasses do not have.
fn lf_view(mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        for (_, fields) in groups() {
            for f in fields.iter().filter(|f| f.status == Status::LmfOnly) {
                map.remove(f.name);
            }
        }
    }
    value
}

#[test]
fn every_lf_field_is_declared_with_its_type_and_default() {
    let fx = fixture();
    for (class, ours) in groups() {
        // lmf's own keys (`template_file`) are not LF fields.
        let ours: Vec<FieldSpec> = ours
            .into_iter()
            .filter(|f| f.status != Status::LmfOnly)
            .collect();
        let lf = fx["classes"][class]["fields"].as_array().expect("fields");
        let lf_names: Vec<&str> = lf.iter().map(|f| f["name"].as_str().unwrap()).collect();
        let our_names: Vec<&str> = ours.iter().map(|f| f.name).collect();
        assert_eq!(our_names, lf_names, "{class}: field names and order");
        for (f, spec) in lf.iter().zip(&ours) {
            assert_eq!(
                spec.kind,
                f["kind"].as_str().unwrap(),
                "{class}.{}: type",
                spec.name
            );
            assert_eq!(
                spec.default,
                lf_default_as_ours(&f["default"], &spec.default),
                "{class}.{}: default",
                spec.name
            );
            let derived = !f["init"].as_bool().unwrap();
            assert_eq!(
                spec.status == Status::Derived,
                derived,
                "{class}.{}: init",
                spec.name
            );
        }
    }
}

#[test]
fn post_init_of_defaults_matches_lf() {
    let fx = fixture();
    let classes = &fx["classes"];
    let mut model = ModelArguments {
        model_name_or_path: fx["model_name_or_path"].as_str().map(String::from),
        ..Default::default()
    };
    model.post_init().expect("model post_init");
    let mut data = DataArguments::default();
    data.post_init().expect("data post_init");
    let mut finetuning = FinetuningArguments::default();
    finetuning.post_init().expect("finetuning post_init");
    let generating = GeneratingArguments::default();
    let ours = [
        ("ModelArguments", serde_json::to_value(&model).unwrap()),
        (
            "DataArguments",
            lf_view(serde_json::to_value(&data).unwrap()),
        ),
        (
            "FinetuningArguments",
            serde_json::to_value(&finetuning).unwrap(),
        ),
        (
            "GeneratingArguments",
            serde_json::to_value(&generating).unwrap(),
        ),
    ];
    for (class, value) in ours {
        assert_eq!(
            value, classes[class]["post_init"],
            "{class} after __post_init__"
        );
    }
}

#[test]
fn get_infer_args_cases_match_lf() {
    let fx = fixture();
    let cases = fx["infer"].as_array().expect("infer cases");
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let args = if case["argv"].is_array() {
            parse_infer_args(&fixture_argv(&case["argv"]))
        } else {
            InferArgs::from_raw(&raw_from_map(case["args"].as_object().unwrap()), false)
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = [
            ("model", serde_json::to_value(&args.model).unwrap()),
            ("data", lf_view(serde_json::to_value(&args.data).unwrap())),
            (
                "finetuning",
                serde_json::to_value(&args.finetuning).unwrap(),
            ),
            (
                "generating",
                serde_json::to_value(&args.generating).unwrap(),
            ),
        ];
        for (group, value) in ours {
            assert_eq!(value, case[group], "{name}: {group}");
        }
    }
}

#[test]
fn trust_remote_code_is_accepted_with_a_note() {
    let fx = fixture();
    let case = fx["infer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "flags")
        .expect("flags case");
    let args = parse_infer_args(&fixture_argv(&case["argv"])).unwrap();
    assert!(args.model.trust_remote_code);
    assert_eq!(args.notes.len(), 1, "{:?}", args.notes);
    assert!(
        args.notes[0].contains("trust_remote_code"),
        "{:?}",
        args.notes
    );
    assert_eq!(args.model.adapters(), ["a", "b"]);
}

#[test]
fn generation_settings_match_lf_engine() {
    let fx = fixture();
    let cases = fx["generate"].as_array().expect("generate cases");
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let raw = raw_from_map(case["generating"].as_object().unwrap());
        let generating = GeneratingArguments::from_resolver(&mut Resolver::new(&raw))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = &case["request"];
        let request = GenerateRequest {
            do_sample: r["do_sample"].as_bool(),
            temperature: r["temperature"].as_f64(),
            top_p: r["top_p"].as_f64(),
            top_k: r["top_k"].as_i64(),
            num_return_sequences: r["num_return_sequences"].as_i64(),
            repetition_penalty: r["repetition_penalty"].as_f64(),
            length_penalty: r["length_penalty"].as_f64(),
            skip_special_tokens: r["skip_special_tokens"].as_bool(),
            max_length: r["max_length"].as_i64(),
            max_new_tokens: r["max_new_tokens"].as_i64(),
            seed: None,
        };
        let config = serde_json::to_value(generating.to_generate_config(&request)).unwrap();
        assert_eq!(config, case["config"], "{name}");
    }
}

#[test]
fn later_settings_win_and_remember_their_origin() {
    let yaml = fixture_dir().join("chat.yaml");
    let yaml_s = yaml.display().to_string();
    // The file says temperature 0.9 and template llama3.
    let raw = parse_raw(&argv(&[
        &yaml_s,
        "temperature=0.3",
        "--temperature",
        "0.4",
        "top_k=7",
    ]))
    .unwrap();
    assert_eq!(raw.config_file(), Some(yaml.as_path()));
    assert_eq!(
        raw.get("temperature").unwrap().value,
        RawValue::Flag("0.4".into())
    );
    assert_eq!(raw.get("temperature").unwrap().origin, Origin::CommandLine);
    assert_eq!(
        raw.get("template").unwrap().origin,
        Origin::File(yaml.clone())
    );
    let args =
        parse_infer_args(&argv(&[&yaml_s, "temperature=0.3", "--temperature", "0.4"])).unwrap();
    assert_eq!(args.generating.temperature, 0.4);
    let args = parse_infer_args(&argv(&[&yaml_s, "--temperature=0.4", "temperature=0.3"])).unwrap();
    assert_eq!(args.generating.temperature, 0.3);
    assert_eq!(args.data.template.as_deref(), Some("llama3"));
    // Keys keep the position of their first setting.
    let keys: Vec<&str> = raw.iter().map(|e| e.key.as_str()).take(2).collect();
    assert_eq!(keys, ["model_name_or_path", "adapter_name_or_path"]);
}

#[test]
fn boolean_flags_follow_hf_argparser() {
    let base = ["--model_name_or_path", "m"];
    let parse = |extra: &[&str]| {
        let words: Vec<&str> = base.iter().chain(extra).copied().collect();
        parse_infer_args(&argv(&words)).unwrap()
    };
    assert!(!parse(&["--do_sample", "false"]).generating.do_sample);
    assert!(
        parse(&["--do_sample", "false", "--do_sample"])
            .generating
            .do_sample
    );
    assert!(
        !parse(&["--do_sample", "--no_do_sample"])
            .generating
            .do_sample
    );
    assert!(
        parse(&["--no-do-sample", "--do_sample", "yes"])
            .generating
            .do_sample
    );
    assert_eq!(
        parse(&["--enable_thinking", "n"]).data.enable_thinking,
        Some(false)
    );
    assert_eq!(
        parse(&["--no_enable_thinking"]).data.enable_thinking,
        Some(false)
    );
    // `--no_x` exists only for booleans that default to true.
    let err = parse_infer_args(&argv(&[
        "--model_name_or_path",
        "m",
        "--no_trust_remote_code",
    ]))
    .unwrap_err();
    assert!(
        matches!(err, ArgsError::UnknownKey { ref key, .. } if key == "no_trust_remote_code"),
        "{err}"
    );
}

fn err_text(words: &[&str]) -> String {
    match parse_infer_args(&argv(words)) {
        Ok(args) => panic!("expected an error for {words:?}, got {args:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_keys_name_the_key_origin_and_closest_key() {
    let text = err_text(&["model_name_or_path=m", "temprature=0.5"]);
    assert_eq!(
        text,
        "unknown argument `temprature` (in command line); did you mean `temperature`?"
    );
    let text = err_text(&["--model_name_or_path", "m", "--xyzzy_plugh", "1"]);
    assert_eq!(text, "unknown argument `xyzzy_plugh` (in command line)");

    let dir = tempdir("unknown");
    let yaml = dir.join("typo.yaml");
    std::fs::write(&yaml, "model_name_or_path: m\ntemplat: llama3\n").unwrap();
    let text = err_text(&[&yaml.display().to_string()]);
    assert_eq!(
        text,
        format!(
            "unknown argument `templat` (in {}); did you mean `template`?",
            yaml.display()
        )
    );
    // A training key is unknown to chat, as in LLaMA-Factory's get_infer_args.
    let text = err_text(&["model_name_or_path=m", "output_dir=saves/x"]);
    assert!(text.starts_with("unknown argument `output_dir`"), "{text}");
}

#[test]
fn not_implemented_fields_refuse_non_default_values_only() {
    let text = err_text(&["model_name_or_path=m", "oft_rank=16"]);
    assert_eq!(
        text,
        "argument `oft_rank` (in command line) = 16 is not implemented yet in lmf; \
         leave it at LLaMA-Factory's default 0"
    );
    let text = err_text(&["--model_name_or_path", "m", "--num_beams", "4"]);
    assert!(
        text.contains("`num_beams`") && text.contains("not implemented yet in lmf"),
        "{text}"
    );
    // The default value is fine, in any spelling.
    let args = parse_infer_args(&argv(&[
        "model_name_or_path=m",
        "lora_rank=8",
        "--use_unsloth",
        "false",
    ]))
    .unwrap();
    assert_eq!(args.finetuning.lora_rank, 8);
    // Derived fields cannot be set at all.
    let text = err_text(&["model_name_or_path=m", "device_map=auto"]);
    assert_eq!(
        text,
        "argument `device_map` (in command line) is derived from other arguments; do not set it"
    );
}

#[test]
fn bad_values_name_the_key_value_and_type() {
    assert_eq!(
        err_text(&["model_name_or_path=m", "temperature=hot"]),
        "bad value for `temperature` (in command line): \"hot\" is not a number"
    );
    assert_eq!(
        err_text(&["--model_name_or_path", "m", "--top_k", "1.5"]),
        "bad value for `top_k` (in command line): \"1.5\" is not an integer"
    );
    assert_eq!(
        err_text(&["model_name_or_path=m", "infer_dtype=fp16"]),
        "bad value for `infer_dtype` (in command line): \"fp16\" is not one of auto, float16, bfloat16, float32"
    );
    assert_eq!(
        err_text(&["model_name_or_path=m", "do_sample=maybe"]),
        "bad value for `do_sample` (in command line): \"maybe\" is not a boolean (true/false)"
    );
    assert_eq!(
        err_text(&["model_name_or_path=m", "--template"]),
        "bad value for `template` (in command line): (no value) is not a string or null"
    );
    let dir = tempdir("badvalue");
    let yaml = dir.join("bad.yaml");
    std::fs::write(&yaml, "model_name_or_path: m\nmax_new_tokens: [1, 2]\n").unwrap();
    assert_eq!(
        err_text(&[&yaml.display().to_string()]),
        format!(
            "bad value for `max_new_tokens` (in {}): [1,2] is not an integer",
            yaml.display()
        )
    );
}

#[test]
fn lf_inference_rules_are_enforced() {
    assert_eq!(
        err_text(&["template=llama3"]),
        "`model_name_or_path` is required: a model folder or a hub id such as org/name"
    );
    let text = err_text(&[
        "model_name_or_path=m",
        "adapter_name_or_path=a",
        "finetuning_type=full",
    ]);
    assert!(
        text.contains("adapter_name_or_path") && text.contains("lora"),
        "{text}"
    );
    let text = err_text(&["model_name_or_path=m", "infer_backend=vllm"]);
    assert!(
        text.starts_with("bad value for `infer_backend`") && text.contains("huggingface"),
        "{text}"
    );
    // A full fine-tuned model without adapters is fine.
    let args = parse_infer_args(&argv(&["model_name_or_path=m", "finetuning_type=full"])).unwrap();
    assert!(args.model.adapters().is_empty());
}

#[test]
fn model_revision_is_passed_on_to_hub_ids() {
    let args = parse_infer_args(&argv(&["model_name_or_path=org/m", "model_revision=v2"])).unwrap();
    assert_eq!(args.model.with_revision("org/m"), "org/m@v2");
    assert_eq!(args.model.with_revision("org/m@abc"), "org/m@abc");
    let dir = tempdir("revision");
    let local = dir.display().to_string();
    assert_eq!(args.model.with_revision(&local), local);
    let args = parse_infer_args(&argv(&["model_name_or_path=org/m"])).unwrap();
    assert_eq!(args.model.with_revision("org/m"), "org/m");
}

#[test]
fn command_line_syntax_errors() {
    assert_eq!(
        err_text(&["model_name_or_path=m", "oops"]),
        "bad command-line argument `oops`: expected key=value, --key value or --key"
    );
    assert_eq!(
        err_text(&["model_name_or_path=m", "other.yaml"]),
        "bad command-line argument `other.yaml`: a config file must be the first argument"
    );
    let text = err_text(&["/nonexistent/chat.yaml"]);
    assert!(text.starts_with("/nonexistent/chat.yaml: "), "{text}");
    let dir = tempdir("syntax");
    let list = dir.join("list.yaml");
    std::fs::write(&list, "- a\n- b\n").unwrap();
    assert_eq!(
        err_text(&[&list.display().to_string()]),
        format!(
            "{}: expected a mapping of argument names to values, found a list",
            list.display()
        )
    );
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"a\": ").unwrap();
    assert!(err_text(&[&broken.display().to_string()])
        .starts_with(&format!("{}: invalid JSON", broken.display())));
}

#[test]
fn implemented_fields_cover_what_chat_needs() {
    let implemented: Vec<&str> = infer_fields()
        .into_iter()
        .filter(|f| f.status == Status::Implemented)
        .map(|f| f.name)
        .collect();
    for name in [
        "model_name_or_path",
        "adapter_name_or_path",
        "cache_dir",
        "template",
        "default_system",
        "enable_thinking",
        "infer_dtype",
        "do_sample",
        "temperature",
        "top_p",
        "top_k",
        "max_new_tokens",
        "max_length",
        "repetition_penalty",
        "skip_special_tokens",
        "infer_backend",
        "hf_hub_token",
    ] {
        assert!(implemented.contains(&name), "{name} should be implemented");
    }
}

#[test]
fn override_values_read_like_omegaconf() {
    // serde_norway reads YAML 1.2; OmegaConf reads YAML 1.1, where yes/no/on/off are booleans and
    // 1_000 is a number. Those texts stay strings in lmf's raw view, and the typed fields read
    // them as LLaMA-Factory does. `012` is octal 10 in YAML 1.1: lmf reads decimal 12 (skipped).
    let fx = fixture();
    let cases = fx["overrides"].as_array().expect("override cases");
    assert!(cases.len() > 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let lf = &case["value"];
        let ours = yaml_value(text);
        if ours == *lf {
            continue;
        }
        let raw = RawValue::Override {
            text: text.to_string(),
            value: ours.clone(),
        };
        match (text, lf) {
            ("012", _) => {}
            (_, Value::Bool(b)) => assert_eq!(bool::from_raw(&raw), Ok(*b), "{text}"),
            (_, Value::Number(n)) => assert_eq!(i64::from_raw(&raw).ok(), n.as_i64(), "{text}"),
            _ => panic!("override {text:?}: lmf reads {ours}, OmegaConf {lf}"),
        }
    }
}

/// A fresh folder under the system temp dir for one test (tests run in parallel threads).
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lmf-args-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn training_arguments_defaults_read_and_non_defaults_are_refused() {
    let raw = raw_from_map(&Map::new());
    let mut resolver = Resolver::new(&raw);
    let args = TrainingArguments::from_resolver(&mut resolver).expect("defaults");
    assert_eq!(args, TrainingArguments::default());
    assert_eq!(args.lr_scheduler_type, SchedulerType::Linear);
    // The default itself is accepted, spelled as LF spells it.
    let mut map = Map::new();
    map.insert("lr_scheduler_type".into(), Value::String("linear".into()));
    map.insert("report_to".into(), Value::String("none".into()));
    map.insert("logging_steps".into(), Value::from(500));
    let raw = raw_from_map(&map);
    let mut resolver = Resolver::new(&raw);
    assert_eq!(
        TrainingArguments::from_resolver(&mut resolver).expect("defaults spelled out"),
        TrainingArguments::default()
    );
    // Not a choice of SchedulerType.
    let mut map = Map::new();
    map.insert("lr_scheduler_type".into(), Value::String("cosine_x".into()));
    let raw = raw_from_map(&map);
    let err = TrainingArguments::from_resolver(&mut Resolver::new(&raw)).unwrap_err();
    assert!(err.to_string().contains("lr_scheduler_type"), "{err}");
    assert!(err.to_string().contains("cosine_with_restarts"), "{err}");
    // A valid value lmf cannot honour yet.
    let mut map = Map::new();
    map.insert("torch_compile".into(), Value::from(true));
    let raw = raw_from_map(&map);
    let err = TrainingArguments::from_resolver(&mut Resolver::new(&raw)).unwrap_err();
    assert!(
        matches!(err, ArgsError::NotImplemented { ref key, .. } if key == "torch_compile"),
        "{err}"
    );
}

#[test]
fn training_list_and_union_values_are_typed() {
    type ReportTo = Option<Union2<String, List<String>>>;
    let list = ReportTo::from_raw(&RawValue::File(serde_json::json!(["wandb", "tensorboard"])));
    assert_eq!(
        list,
        Ok(Some(Union2::B(List(vec![
            "wandb".to_string(),
            "tensorboard".to_string()
        ]))))
    );
    assert_eq!(
        ReportTo::from_raw(&RawValue::Flag("wandb".into())),
        Ok(Some(Union2::A("wandb".into())))
    );
    assert_eq!(ReportTo::from_raw(&RawValue::File(Value::Null)), Ok(None));
    // include_num_input_tokens_seen: `str | bool`; a YAML boolean is the bool.
    assert_eq!(
        Union2::<String, bool>::from_raw(&RawValue::File(Value::Bool(true))),
        Ok(Union2::B(true))
    );
    // A list of choices checks every item.
    let debug = Union2::<String, List<lmf_trainers::args::training::DebugOption>>::from_raw(
        &RawValue::File(serde_json::json!([1])),
    );
    assert!(debug.is_err(), "{debug:?}");
    // trackio_static_space_id: `str | None | Literal[False]`.
    type Trackio = Option<Union2<String, lmf_trainers::args::multi::FalseOnly>>;
    let v = Trackio::from_raw(&RawValue::File(Value::Bool(false))).expect("false");
    assert_eq!(serde_json::to_value(v).unwrap(), Value::Bool(false));
    assert!(Trackio::from_raw(&RawValue::File(Value::Bool(true))).is_err());
}

#[test]
fn chat_still_rejects_training_keys() {
    let err = parse_infer_args(&argv(&[
        "--model_name_or_path",
        "org/tiny-model",
        "--learning_rate",
        "1e-4",
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("learning_rate"), "{err}");
    assert!(infer_fields().iter().all(|f| f.name != "learning_rate"));
}

/// `quantization_method: mxfp4` keeps MXFP4 experts 4-bit: only with `quantization_bit: 4`
/// (the checkpoint itself is checked when the model loads), other widths refused by name.
#[test]
fn mxfp4_quantization_needs_four_bits() {
    let parse = |extra: &[&str]| {
        let mut words = vec![
            "model_name_or_path=m",
            "stage=sft",
            "do_train=true",
            "dataset=alpaca_demo",
            "output_dir=o",
            "finetuning_type=lora",
            "quantization_method=mxfp4",
        ];
        words.extend_from_slice(extra);
        lmf_trainers::args::train::parse_train_args(&argv(&words))
    };
    let args = parse(&["quantization_bit=4"]).unwrap();
    assert_eq!(
        args.model.quant_spec().unwrap(),
        Some(lmf_models::QuantSpec::Mxfp4Experts)
    );
    for bits in ["8", "2"] {
        let kv = format!("quantization_bit={bits}");
        let e = parse(&[kv.as_str()])
            .err()
            .unwrap_or_else(|| panic!("{bits} bits accepted"))
            .to_string();
        assert!(
            e.contains("quantization_method: mxfp4")
                && e.contains("quantization_bit: 4")
                && e.contains(&format!("quantization_bit: {bits}")),
            "{e}"
        );
    }
    // without `quantization_bit` nothing is quantized, as for bnb
    assert_eq!(parse(&[]).unwrap().model.quant_spec().unwrap(), None);
}

/// The quantization arguments: LLaMA-Factory 0.9.5's own messages (its `hparams/parser.py`,
/// `model_utils/quantization.py`, as its runs print them) for what it refuses, and lmf's for
/// the methods it does not quantize with yet (LF 0.9.5 silently trains those unquantized).
#[test]
fn quantization_arguments_are_checked_as_llamafactory() {
    let base = [
        "model_name_or_path=m",
        "stage=sft",
        "do_train=true",
        "dataset=alpaca_demo",
        "output_dir=o",
    ];
    let err = |extra: &[&str]| -> String {
        let mut words: Vec<&str> = base.to_vec();
        words.extend_from_slice(extra);
        lmf_trainers::args::train::parse_train_args(&argv(&words))
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    };
    let lora = ["finetuning_type=lora", "quantization_bit=4"];
    assert_eq!(err(&lora), "", "4-bit LoRA is accepted");
    assert_eq!(err(&["finetuning_type=lora", "quantization_bit=8"]), "");
    let refused: [(&[&str], &str); 6] = [
        (
            &["finetuning_type=full", "quantization_bit=4"],
            "Quantization is only compatible with the LoRA or OFT method.",
        ),
        (
            &[lora[0], lora[1], "pissa_init=true"],
            "Please use scripts/pissa_init.py to initialize PiSSA",
        ),
        (
            &[lora[0], lora[1], "adapter_name_or_path=a,b"],
            "Quantized model only accepts a single adapter. Merge them first.",
        ),
        (
            &["finetuning_type=lora", "quantization_bit=3"],
            "Bitsandbytes only accepts 4-bit or 8-bit quantization.",
        ),
        (
            &[lora[0], lora[1], "quantization_method=gptq"],
            "`quantization_method: gptq` is not supported yet",
        ),
        (
            &[lora[0], lora[1], "quantization_type=int4"],
            "quantization_type",
        ),
    ];
    for (extra, want) in refused {
        let e = err(extra);
        assert!(e.contains(want), "{extra:?}: {e}");
    }
}
