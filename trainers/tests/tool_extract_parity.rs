//! Tool-call extraction against LLaMA-Factory 0.9.5: every expected result in
//! `tests/fixtures/hf/expected/tool_extract.json` was returned by LF's own
//! `ToolUtils.tool_extractor` / `Template.extract_tool` (written by
//! `tests/fixtures/hf/templates/make_tool_extract.py`). All mismatches are gathered and reported
//! together.

use std::path::Path;

use lmf_trainers::template::{get_template, Extracted, NoResult, ToolFormat};
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/hf/expected/tool_extract.json"
    ));
    let text = std::fs::read_to_string(path).expect("tool_extract.json (run make_tool_extract.py)");
    serde_json::from_str(&text).expect("tool_extract.json is JSON")
}

/// Whether our result is LF's: the same text, the same calls, or (where LF raises or returns a
/// call with a non-string name) a [`NoResult`] saying so.
fn check(got: &Result<Extracted, NoResult>, want: &Value) -> Result<(), String> {
    let want_obj = want.as_object().expect("expected result is an object");
    if let Some(exception) = want_obj.get("error").and_then(Value::as_str) {
        return match got {
            Err(NoResult::Raises(e)) if *e == exception => Ok(()),
            other => Err(format!("LF raises {exception}, got {other:?}")),
        };
    }
    if let Some(text) = want_obj.get("text").and_then(Value::as_str) {
        return match got {
            Ok(Extracted::Text(t)) if t == text => Ok(()),
            other => Err(format!("LF gives the text {text:?}, got {other:?}")),
        };
    }
    let calls = want_obj["calls"].as_array().expect("calls");
    if calls.iter().any(|c| !c["name"].is_string()) {
        return match got {
            Err(NoResult::NameNotString) => Ok(()),
            other => Err(format!("LF gives a non-string name {want}, got {other:?}")),
        };
    }
    let expected: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name"),
                c["arguments"].as_str().expect("arguments"),
            )
        })
        .collect();
    match got {
        Ok(Extracted::Calls(got_calls))
            if got_calls.len() == expected.len()
                && got_calls
                    .iter()
                    .zip(&expected)
                    .all(|(g, (n, a))| g.name == *n && g.arguments == *a) =>
        {
            Ok(())
        }
        other => Err(format!("LF gives the calls {expected:?}, got {other:?}")),
    }
}

#[test]
fn every_tool_format_extracts_like_llamafactory() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in cases {
        let format = case["format"].as_str().expect("format");
        let input = case["input"].as_str().expect("input");
        let tool_format = ToolFormat::from_name(format).expect("LF's tool format is known");
        let got = tool_format.try_extract(input);
        if let Err(e) = check(&got, &case["expected"]) {
            failures.push(format!("[{format}] {input:?}: {e}"));
        }
        // `extract` is `try_extract` with the text where LF gives no usable result.
        let plain = tool_format.extract(input);
        match (&got, &plain) {
            (Ok(a), b) if a == b => {}
            (Err(_), Extracted::Text(t)) if t == input => {}
            _ => failures.push(format!("[{format}] {input:?}: extract gave {plain:?}")),
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    // Every tool format of LF is covered.
    for format in fixture["formats"].as_array().expect("formats") {
        let format = format.as_str().expect("format name");
        assert!(
            cases.iter().any(|c| c["format"] == format),
            "no case for {format}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from LF:\n{}",
        failures.len(),
        checked,
        failures.join("\n")
    );
}

#[test]
fn every_template_extracts_like_llamafactory() {
    let fixture = fixture();
    let probes: Vec<&str> = fixture["template_probes"]
        .as_array()
        .expect("template_probes")
        .iter()
        .map(|p| p.as_str().expect("probe"))
        .collect();
    let templates = fixture["templates"].as_array().expect("templates");
    assert!(!templates.is_empty() && !probes.is_empty());
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in templates {
        let name = entry["template"].as_str().expect("template");
        let template = match get_template(name) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("[{name}] not registered: {e}"));
                continue;
            }
        };
        let expected = entry["expected"].as_array().expect("expected");
        assert_eq!(expected.len(), probes.len(), "{name}");
        for (probe, want) in probes.iter().zip(expected) {
            if let Err(e) = check(&template.try_extract_tool(probe), want) {
                failures.push(format!("[{name}] {probe:?}: {e}"));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, templates.len() * probes.len());
    assert!(
        failures.is_empty(),
        "{} of {} template cases differ from LF:\n{}",
        failures.len(),
        checked,
        failures.join("\n")
    );
}
