//! Chat templates and the tokenizer against LLaMA-Factory 0.9.5 + transformers 5.6: every id,
//! string and flag expected here was written by `tests/fixtures/hf/make_templates.py` from the
//! reference (`cases.json`). Each test gathers all mismatches and reports them together.

use std::path::{Path, PathBuf};

use lmf_models::tokenizer::{ChatTemplates, Tokenizer};
use lmf_trainers::template::pyjson::PyJson;
use lmf_trainers::template::{
    get_template, message_value, render_chat_template, template_names, Message, Pair, Template,
    TemplateOptions,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/hf/templates"
    ))
    .to_path_buf()
}

fn cases() -> Value {
    let path = fixtures().join("cases.json");
    let text = std::fs::read_to_string(&path).expect("cases.json (run make_templates.py)");
    serde_json::from_str(&text).expect("cases.json is JSON")
}

fn load(name: &str) -> Tokenizer {
    Tokenizer::from_dir(&fixtures().join(name)).expect("fixture tokenizer loads")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn pairs(v: &Value) -> Vec<Pair> {
    v.as_array()
        .expect("pair list")
        .iter()
        .map(|p| (ids(&p[0]), ids(&p[1])))
        .collect()
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Panics with every mismatch (first 30) when there is any.
fn report(what: &str, checked: usize, errors: Vec<String>) {
    assert!(checked > 0, "{what}: nothing was checked");
    if !errors.is_empty() {
        let shown: Vec<&String> = errors.iter().take(30).collect();
        panic!(
            "{what}: {} of {checked} checks differ from the reference:\n{}",
            errors.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The tokenizer state as the fixture records it.
fn state(tok: &Tokenizer, loaded_template: Option<&ChatTemplates>) -> Value {
    let template = match tok.chat_templates() {
        t if Some(t) == loaded_template => Value::Null,
        ChatTemplates::None => Value::Null,
        ChatTemplates::Single(s) => Value::String(s.clone()),
        ChatTemplates::Named(list) => {
            let mut list = list.clone();
            list.sort();
            Value::Array(
                list.into_iter()
                    .map(|(n, t)| Value::Array(vec![n.into(), t.into()]))
                    .collect(),
            )
        }
    };
    serde_json::json!({
        "eos_token": tok.eos_token(),
        "eos_token_id": tok.eos_token_id(),
        "pad_token": tok.pad_token(),
        "pad_token_id": tok.pad_token_id(),
        "bos_token": tok.bos_token(),
        "bos_token_id": tok.bos_token_id(),
        "vocab_size": tok.vocab_size(),
        "additional_special_tokens": tok.additional_special_tokens(),
        "chat_template": template,
    })
}

#[test]
fn tokenizers_match_transformers() {
    let cases = cases();
    let mut errors = Vec::new();
    let mut checked = 0;
    for fixture in cases["tokenizers"].as_array().expect("tokenizers") {
        let name = fixture["name"].as_str().expect("name");
        let tok = load(name);
        let expect_state = &fixture["state"];
        let got_state = state(&tok, None);
        checked += 1;
        if &got_state != expect_state {
            errors.push(format!(
                "{name}: state\n  got  {got_state}\n  want {expect_state}"
            ));
        }
        checked += 2;
        if tok.unk_token_id().map(u64::from) != fixture["unk_token_id"].as_u64() {
            errors.push(format!("{name}: unk id {:?}", tok.unk_token_id()));
        }
        if Some(tok.clean_up_tokenization_spaces())
            != fixture["clean_up_tokenization_spaces"].as_bool()
        {
            errors.push(format!("{name}: clean_up_tokenization_spaces"));
        }
        for case in fixture["encode"].as_array().expect("encode") {
            let text = case["text"].as_str().expect("text");
            let add = case["add_special_tokens"].as_bool().expect("flag");
            let want = ids(&case["ids"]);
            checked += 3;
            match tok.encode(text, add) {
                Ok(got) if got == want => {}
                other => errors.push(format!(
                    "{name}: encode({text:?}, {add}) = {other:?}, want {want:?}"
                )),
            }
            for (skip, key) in [(false, "decoded"), (true, "decoded_skip_special")] {
                let got = tok.decode(&want, skip).expect("decode");
                if Some(got.as_str()) != case[key].as_str() {
                    errors.push(format!(
                        "{name}: decode(skip={skip}) of {text:?} = {got:?}, want {}",
                        case[key]
                    ));
                }
            }
        }
        let Some(source) = tok.chat_template() else {
            errors.push(format!("{name}: no chat template"));
            continue;
        };
        for case in fixture["render"].as_array().expect("render") {
            let messages: Vec<PyJson> = case["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| {
                    message_value(
                        m["role"].as_str().unwrap_or(""),
                        m["content"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            let tools = case["tools"]
                .as_str()
                .map(|t| PyJson::parse(t).expect("tools JSON"));
            let generation = case["add_generation_prompt"].as_bool().expect("flag");
            let got =
                render_chat_template(source, &tok, &messages, tools.as_ref(), generation, &[]);
            checked += 1;
            match (&got, case.get("text").and_then(Value::as_str)) {
                (Ok(g), Some(w)) if g == w => {}
                (Err(_), None) => {}
                _ => errors.push(format!(
                    "{name}: render {} gen={generation} tools={}\n  got  {got:?}\n  want {:?}",
                    case["messages"],
                    !case["tools"].is_null(),
                    case.get("text").or(case.get("error"))
                )),
            }
        }
    }
    report("tokenizers", checked, errors);
}

#[test]
fn template_names_match_llamafactory() {
    let cases = cases();
    let want: Vec<&str> = cases["template_names"]
        .as_array()
        .expect("names")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    assert_eq!(template_names(), want.as_slice());
    for name in &want {
        assert!(get_template(name).is_ok(), "{name}");
    }
}

/// Options as LLaMA-Factory's DataArguments in the fixture run.
fn options(settings: &Value) -> TemplateOptions {
    let mut options = TemplateOptions::default();
    if let Some(v) = settings.get("enable_thinking") {
        options.enable_thinking = v.as_bool();
    }
    if let Some(v) = settings.get("preserve_thinking") {
        options.preserve_thinking = v.as_bool().unwrap_or(false);
    }
    options.tool_format = settings
        .get("tool_format")
        .and_then(Value::as_str)
        .map(String::from);
    options.default_system = settings
        .get("default_system")
        .and_then(Value::as_str)
        .map(String::from);
    options
}

#[test]
fn templates_match_llamafactory() {
    let cases = cases();
    let runs = cases["templates"].as_array().expect("templates");
    let conversations = &cases["conversations"];
    let date = cases["tool_date"].as_str().expect("tool_date").to_string();
    let mut errors = Vec::new();
    let mut checked = 0;
    for run in runs {
        let name = run["template"].as_str();
        let tok_name = run["tokenizer"].as_str().expect("tokenizer");
        let settings = &run["settings"];
        let label = format!("{}[{tok_name}]{settings}", name.unwrap_or("<none>"));
        // Runs equal to an earlier one only name it.
        let expect = match run.get("same_as").and_then(Value::as_u64) {
            Some(i) => &runs[i as usize],
            None => run,
        };

        let mut tok = load(tok_name);
        let loaded = tok.chat_templates().clone();
        let template = match Template::for_tokenizer(name, &mut tok, &options(settings)) {
            Ok(mut t) => {
                t.set_tool_date(Some(date.clone()));
                t
            }
            Err(e) => {
                errors.push(format!("{label}: {e}"));
                continue;
            }
        };
        checked += 1;
        let got_meta = (
            template.is_reasoning(),
            template.default_system().to_string(),
            template.stop_words().to_vec(),
            template.efficient_eos(),
        );
        let want_meta = (
            run["reasoning"].as_bool().expect("reasoning"),
            run["default_system"]
                .as_str()
                .expect("default_system")
                .to_string(),
            run["stop_words"]
                .as_array()
                .expect("stop words")
                .iter()
                .map(|w| w.as_str().expect("word").to_string())
                .collect::<Vec<_>>(),
            run["efficient_eos"].as_bool().expect("efficient_eos"),
        );
        if got_meta != want_meta {
            errors.push(format!(
                "{label}: template {got_meta:?}, want {want_meta:?}"
            ));
        }
        checked += 2;
        let got_state = state(&tok, Some(&loaded));
        if got_state != expect["fixed"] {
            errors.push(format!(
                "{label}: fixed tokenizer\n  got  {got_state}\n  want {}",
                expect["fixed"]
            ));
        }
        if template.stop_token_ids(&tok) != ids(&expect["stop_token_ids"]) {
            errors.push(format!(
                "{label}: stop ids {:?}, want {}",
                template.stop_token_ids(&tok),
                expect["stop_token_ids"]
            ));
        }

        for case in expect["cases"].as_array().expect("cases") {
            let case_name = case["name"].as_str().expect("case name");
            let conv = &conversations[case_name];
            let messages: Vec<Message> =
                serde_json::from_value(conv["messages"].clone()).expect("messages");
            let system = opt_str(&conv["system"]);
            let tools = opt_str(&conv["tools"]);
            let at = format!("{label} {case_name}");
            let multi = template.encode_multiturn(&tok, &messages, system, tools);
            let one = template.encode_oneturn(&tok, &messages, system, tools);
            checked += 1;
            if case.get("error").is_some() {
                if multi.is_ok() || one.is_ok() {
                    errors.push(format!(
                        "{at}: LLaMA-Factory fails ({}), we encode",
                        case["error"]
                    ));
                }
                continue;
            }
            let (multi, one) = match (multi, one) {
                (Ok(m), Ok(o)) => (m, o),
                (m, o) => {
                    errors.push(format!("{at}: {:?} / {:?}", m.err(), o.err()));
                    continue;
                }
            };
            let want_multi = pairs(&case["multiturn"]);
            if multi != want_multi {
                errors.push(format!(
                    "{at}: multiturn\n  got  {multi:?}\n  want {want_multi:?}"
                ));
                continue;
            }
            // A null oneturn equals the one derived from the multiturn pairs.
            let want_one = if case["oneturn"].is_null() {
                let (last_prompt, last_response) = want_multi.last().cloned().unwrap_or_default();
                let mut prompt: Vec<u32> = want_multi[..want_multi.len().saturating_sub(1)]
                    .iter()
                    .flat_map(|(p, r)| p.iter().chain(r.iter()).copied())
                    .collect();
                prompt.extend(last_prompt);
                (prompt, last_response)
            } else {
                (ids(&case["oneturn"][0]), ids(&case["oneturn"][1]))
            };
            checked += 1;
            if one != want_one {
                errors.push(format!(
                    "{at}: oneturn\n  got  {one:?}\n  want {want_one:?}"
                ));
            }
            if let Some(discard) = case.get("multiturn_discard_cot") {
                let want = if discard.is_null() {
                    want_multi.clone()
                } else {
                    pairs(discard)
                };
                let got = template.encode_multiturn_with(&tok, &messages, system, tools, true);
                checked += 1;
                if got.as_ref().ok() != Some(&want) {
                    errors.push(format!(
                        "{at}: discarding history cot\n  got  {got:?}\n  want {want:?}"
                    ));
                }
            }
            if let Some(text) = case.get("decoded").and_then(Value::as_str) {
                let all: Vec<u32> = multi
                    .iter()
                    .flat_map(|(p, r)| p.iter().chain(r.iter()).copied())
                    .collect();
                checked += 2;
                if tok.decode(&all, false).ok().as_deref() != Some(text) {
                    errors.push(format!(
                        "{at}: decode {:?}, want {text:?}",
                        tok.decode(&all, false)
                    ));
                }
                let skip = case["decoded_skip_special"].as_str();
                if tok.decode(&all, true).ok().as_deref() != skip {
                    errors.push(format!(
                        "{at}: decode(skip) {:?}, want {skip:?}",
                        tok.decode(&all, true)
                    ));
                }
            }
        }
    }
    report("templates", checked, errors);
}

#[test]
fn user_mistakes_are_one_line_errors() {
    let err = get_template("qwen25").unwrap_err().to_string();
    assert!(err.starts_with("unknown template `qwen25`"), "{err}");
    assert!(err.contains("qwen"), "{err}");
    assert!(!err.contains('\n'));
    // A name from nowhere still gets the nearest names and where to see them all.
    let err = get_template("nonexistent").unwrap_err().to_string();
    assert!(
        err.starts_with("unknown template `nonexistent`; the closest are "),
        "{err}"
    );
    assert!(err.contains("`lmf templates` lists all 121"), "{err}");
    assert!(!err.contains("template_names"), "{err}");

    let dir = std::env::temp_dir().join(format!("lmf-templates-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let err = Tokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains(dir.to_str().unwrap_or("?")),
        "{err}"
    );

    std::fs::copy(
        fixtures().join("tokenizer/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .expect("copy");
    std::fs::write(dir.join("tokenizer_config.json"), "{ not json").expect("write");
    let err = Tokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer_config.json") && !err.contains('\n'),
        "{err}"
    );
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"chat_template": 3}"#).expect("write");
    let err = Tokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("chat_template"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    let mut tok = load("tokenizer");
    let err = Template::for_tokenizer(
        Some("qwen"),
        &mut tok,
        &TemplateOptions {
            tool_format: Some("nope".into()),
            ..TemplateOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown tool format `nope`"), "{err}");
}
