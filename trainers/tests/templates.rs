//! Chat templates and the tokenizer against LLaMA-Factory 0.9.5 + transformers 5.6: every id,
//! string and flag expected here was written by `tests/fixtures/hf/make_templates.py` from the
//! reference (`cases.json`). Each test gathers all mismatches and reports them together.

use std::path::{Path, PathBuf};

use lmf_models::tokenizer::{ChatTemplates, Tokenizer};
use lmf_trainers::template::pyjson::PyJson;
use lmf_trainers::template::{
    get_template, load_template_file, message_value, render_chat_template, template_names, Message,
    Pair, Template, TemplateOptions,
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
    let mut errors = Vec::new();
    let mut checked = 0;
    for run in runs {
        let name = run["template"].as_str();
        checked += check_run(&cases, run, name, &options(&run["settings"]), &mut errors);
    }
    report("templates", checked, errors);
}

/// Checks one fixture run (`run` of `cases["templates"]`) with the template `name` set up with
/// `options`: the template's flags, the fixed tokenizer, the stop ids and every case's ids
/// against what LLaMA-Factory gave. Mismatches go to `errors`; returns the number of checks.
fn check_run(
    cases: &Value,
    run: &Value,
    name: Option<&str>,
    options: &TemplateOptions,
    errors: &mut Vec<String>,
) -> usize {
    let runs = cases["templates"].as_array().expect("templates");
    let conversations = &cases["conversations"];
    let date = cases["tool_date"].as_str().expect("tool_date").to_string();
    let mut checked = 0;
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
    let template = match Template::for_tokenizer(name, &mut tok, options) {
        Ok(mut t) => {
            t.set_tool_date(Some(date.clone()));
            t
        }
        Err(e) => {
            errors.push(format!("{label}: {e}"));
            return checked;
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
    checked
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

/// `examples/templates/`: built-in templates written as template files (`template_file`).
fn example_templates() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/templates"
    ))
    .to_path_buf()
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lmf-template-file-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `text` with `from` replaced by `to`, which must be in it.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the file");
    text.replacen(from, to, 1)
}

/// Encodes every conversation of the fixture with `a` and `b` (each on its own fixed
/// tokenizer); any difference (ids, errors, fixed tokenizer, stop ids) goes to `errors`.
fn same_encodings(
    cases: &Value,
    tok_name: &str,
    (a_name, a_options): (&str, &TemplateOptions),
    (b_name, b_options): (&str, &TemplateOptions),
    errors: &mut Vec<String>,
) -> usize {
    let date = cases["tool_date"].as_str().expect("tool_date").to_string();
    let setup = |name: &str, options: &TemplateOptions| {
        let mut tok = load(tok_name);
        let mut t = Template::for_tokenizer(Some(name), &mut tok, options)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        t.set_tool_date(Some(date.clone()));
        (t, tok)
    };
    let (a, a_tok) = setup(a_name, a_options);
    let (b, b_tok) = setup(b_name, b_options);
    let label = format!("{a_name} vs {b_name} [{tok_name}]");
    let mut checked = 2;
    if state(&a_tok, None) != state(&b_tok, None) {
        errors.push(format!("{label}: fixed tokenizers differ"));
    }
    if a.stop_token_ids(&a_tok) != b.stop_token_ids(&b_tok) {
        errors.push(format!("{label}: stop ids differ"));
    }
    let conversations = cases["conversations"].as_object().expect("conversations");
    for (case_name, conv) in conversations {
        let messages: Vec<Message> =
            serde_json::from_value(conv["messages"].clone()).expect("messages");
        let system = opt_str(&conv["system"]);
        let tools = opt_str(&conv["tools"]);
        let show = |r: lmf_trainers::template::Result<Vec<Pair>>| r.map_err(|e| e.to_string());
        for discard in [false, true] {
            checked += 1;
            let got = show(a.encode_multiturn_with(&a_tok, &messages, system, tools, discard));
            let want = show(b.encode_multiturn_with(&b_tok, &messages, system, tools, discard));
            if got != want {
                errors.push(format!(
                    "{label} {case_name} (discard cot {discard}):\n  got  {got:?}\n  want {want:?}"
                ));
            }
        }
        checked += 1;
        let got = a.encode_oneturn(&a_tok, &messages, system, tools);
        let want = b.encode_oneturn(&b_tok, &messages, system, tools);
        if got.as_ref().ok() != want.as_ref().ok() || got.is_ok() != want.is_ok() {
            errors.push(format!(
                "{label} {case_name}: oneturn\n  got  {got:?}\n  want {want:?}"
            ));
        }
    }
    checked
}

/// The Llama 4 and Qwen 3 templates written as template files (`examples/templates/`), named
/// `my_llama4` / `my_qwen3` and also under the built-in names they then replace, encode every
/// fixture run of `llama4` / `qwen3` exactly as LLaMA-Factory did (each run's settings:
/// `enable_thinking` true / false / null, `tool_format`, `default_system`,
/// `preserve_thinking`), and every fixture conversation exactly as the built-in template does.
#[test]
fn template_files_encode_as_llamafactory_and_the_builtin_templates() {
    let cases = cases();
    let runs = cases["templates"].as_array().expect("templates");
    let dir = scratch("examples");
    let mut errors = Vec::new();
    let mut checked = 0;
    for (builtin, file_name) in [("llama4", "my_llama4"), ("qwen3", "my_qwen3")] {
        let file = example_templates().join(format!("{builtin}.yaml"));
        let text = std::fs::read_to_string(&file).expect("example template file");
        // The same template under the built-in name (it replaces the built-in one), as JSON too.
        let as_builtin = dir.join(format!("{builtin}.yaml"));
        let renamed = edit(
            &text,
            &format!("name: {file_name}"),
            &format!("name: {builtin}"),
        );
        std::fs::write(&as_builtin, &renamed).expect("write");
        let as_json = dir.join(format!("{builtin}.json"));
        let value: Value = serde_norway::from_str(&renamed).expect("YAML");
        std::fs::write(&as_json, serde_json::to_string_pretty(&value).unwrap()).expect("write");

        // The file's template is the built-in one, field for field.
        let from_file = load_template_file(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_file.len(), 1);
        assert_eq!(from_file[0].name(), file_name);
        for path in [&as_builtin, &as_json] {
            let loaded = load_template_file(path).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
            if loaded != vec![get_template(builtin).unwrap()] {
                errors.push(format!(
                    "{}: not the built-in {builtin}: {loaded:?}",
                    path.display()
                ));
            }
        }

        let mut found = 0;
        for run in runs
            .iter()
            .filter(|r| r["template"].as_str() == Some(builtin))
        {
            found += 1;
            let builtin_options = options(&run["settings"]);
            for (name, path) in [
                (file_name, &file),
                (builtin, &as_builtin),
                (builtin, &as_json),
            ] {
                let with_file = TemplateOptions {
                    template_file: Some(path.clone()),
                    ..builtin_options.clone()
                };
                checked += check_run(&cases, run, Some(name), &with_file, &mut errors);
                let tok_name = run["tokenizer"].as_str().expect("tokenizer");
                checked += same_encodings(
                    &cases,
                    tok_name,
                    (name, &with_file),
                    (builtin, &builtin_options),
                    &mut errors,
                );
            }
        }
        assert!(found > 0, "the fixture has no {builtin} run");
    }
    let _ = std::fs::remove_dir_all(&dir);
    report("template files", checked, errors);
}

/// A template file's template replaces the built-in template of its name (only where the file
/// is given), and `template` must name a template of the file or a built-in one.
#[test]
fn a_file_template_replaces_the_builtin_of_its_name() {
    let dir = scratch("override");
    let text = std::fs::read_to_string(example_templates().join("llama4.yaml")).unwrap();
    // `llama4` with answers ending in <|eom|>, next to the file's own `my_llama4`.
    let changed = edit(&text, "name: my_llama4", "name: llama4");
    let changed = edit(
        &changed,
        r#"format_assistant: {slots: ["{{content}}<|eot|>"]}"#,
        r#"format_assistant: {slots: ["{{content}}<|eom|>"]}"#,
    );
    let both = format!(
        "{changed}{}",
        &text[text.find("  - name: my_llama4").expect("list item")..]
    );
    let path = dir.join("templates.yaml");
    std::fs::write(&path, both).unwrap();
    let with_file = TemplateOptions {
        template_file: Some(path.clone()),
        ..TemplateOptions::default()
    };
    let messages = [
        Message::new(lmf_trainers::template::Role::User, "Hi"),
        Message::new(lmf_trainers::template::Role::Assistant, "Hello"),
    ];
    let answer = |name: &str, options: &TemplateOptions| {
        let mut tok = load("tokenizer");
        let t = Template::for_tokenizer(Some(name), &mut tok, options).unwrap();
        let pairs = t.encode_multiturn(&tok, &messages, None, None).unwrap();
        (
            t.name().to_string(),
            tok.decode(&pairs[0].1, false).unwrap(),
        )
    };
    assert_eq!(
        answer("llama4", &with_file),
        ("llama4".into(), "Hello<|eom|>".into())
    );
    assert_eq!(
        answer("my_llama4", &with_file),
        ("my_llama4".into(), "Hello<|eot|>".into())
    );
    assert_eq!(
        answer("llama4", &TemplateOptions::default()),
        ("llama4".into(), "Hello<|eot|>".into())
    );

    let mut tok = load("tokenizer");
    let err = Template::for_tokenizer(Some("my_llama"), &mut tok, &with_file)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("unknown template `my_llama` (neither built in nor in template_file `")
            && err.contains("my_llama4")
            && !err.contains('\n'),
        "{err}"
    );
    // A file whose templates no `template` names would go unused.
    let err = Template::for_tokenizer(None, &mut tok, &with_file)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`template` is not set") && err.contains("llama4, my_llama4"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each mistake in a template file is one line naming the file, the template and the field.
#[test]
fn template_file_mistakes_name_the_file_template_and_field() {
    let dir = scratch("errors");
    let good = std::fs::read_to_string(example_templates().join("llama4.yaml")).unwrap();
    let at = "templates[0] (`my_llama4`): ";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown_field.yaml",
            edit(&good, "replace_eos: true", "replace_eoss: true"),
            vec![at, "unknown field `replace_eoss` (did you mean `replace_eos`?)"],
        ),
        (
            "bad_slot.yaml",
            edit(&good, "[{bos_token}]", "[{bos: 1}]"),
            vec![at, "`format_prefix.slots[0]`: a slot is a string", r#"found {"bos":1}"#],
        ),
        (
            "bad_special.yaml",
            edit(&good, "[{bos_token}]", "[{pad_token}]"),
            vec![at, "`format_prefix.slots[0]`: a slot is a string"],
        ),
        (
            "missing_name.yaml",
            edit(&good, "- name: my_llama4\n    format_user", "- format_user"),
            vec!["templates[0]: missing `name`"],
        ),
        (
            "bad_tool_format.yaml",
            edit(&good, "{tool_format: llama3}", "{tool_format: llama5}"),
            vec![at, "`format_tools.tool_format`: unknown tool format `llama5`"],
        ),
        (
            "no_tool_format.yaml",
            edit(&good, "{tool_format: llama3}", "{}"),
            vec![at, "`format_tools`: a ToolFormatter needs a `tool_format`"],
        ),
        (
            "wrong_type.yaml",
            edit(&good, "replace_eos: true", "replace_eos: 1"),
            vec![at, "`replace_eos`: expected true or false, found a number"],
        ),
        (
            "no_placeholder.yaml",
            edit(&good, r#"["{{content}}<|eot|>"]}"#, r#"["<|eot|>"]}"#),
            vec![at, "`format_assistant.slots`: a StringFormatter needs a placeholder"],
        ),
        (
            "placeholder_in_prefix.yaml",
            edit(&good, "[{bos_token}]", r#"["{{content}}"]"#),
            vec![at, "`format_prefix.slots`: an EmptyFormatter cannot hold a placeholder"],
        ),
        (
            "bad_class.yaml",
            edit(&good, "replace_eos: true", "template_class: Reasoning"),
            vec![at, "`template_class`: unknown class `Reasoning`"],
        ),
        (
            "bad_formatter_type.yaml",
            edit(&good, "{tool_format: llama3}", "{type: EmptyFormatter}"),
            vec![at, "`format_tools.type`: `EmptyFormatter` is not one of ToolFormatter, StringFormatter"],
        ),
        (
            "bad_words.yaml",
            edit(&good, "replace_eos: true", "thought_words: [\"<think>\"]"),
            vec![at, "`thought_words`: expected a list of two strings", "found a list of 1"],
        ),
        (
            "bad_plugin.yaml",
            edit(&good, "name: llama4,", "name: llama5,"),
            vec![at, "`mm_plugin`: unknown multimodal plugin `llama5`"],
        ),
        (
            "duplicate.yaml",
            format!("{good}{}", &good[good.find("  - name:").unwrap()..]),
            vec!["templates[1]: `my_llama4` is defined twice (also templates[0])"],
        ),
        (
            "top_level.yaml",
            "name: x\n".to_string(),
            vec!["`name` at the top level: the templates go in a `templates:` list"],
        ),
        ("not_yaml.yaml", "templates: [".to_string(), vec!["invalid YAML"]),
        (
            "unknown_field.json",
            r#"{"templates": [{"name": "j", "format_usr": {"slots": ["{{content}}"]}}]}"#
                .to_string(),
            vec!["templates[0] (`j`): unknown field `format_usr` (did you mean `format_user`?)"],
        ),
    ];
    for (file, text, wants) in &cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let err = load_template_file(&path).unwrap_err().to_string();
        let prefix = format!("template_file `{}`: ", path.display());
        assert!(err.starts_with(&prefix), "{file}: {err}");
        assert!(!err.contains('\n'), "{file}: {err}");
        for want in wants {
            assert!(
                err.contains(want),
                "{file}: {err}\n  should contain {want:?}"
            );
        }
        // The same error stops `Template::for_tokenizer` (what train, chat and export call).
        let mut tok = load("tokenizer");
        let options = TemplateOptions {
            template_file: Some(path.clone()),
            ..TemplateOptions::default()
        };
        let err2 = Template::for_tokenizer(Some("my_llama4"), &mut tok, &options)
            .unwrap_err()
            .to_string();
        assert_eq!(err2, err, "{file}");
    }
    let missing = dir.join("missing.yaml");
    let err = load_template_file(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "template_file `{}`: cannot read it: ",
            missing.display()
        )) && !err.contains('\n'),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
