//! `dataset_info.json` read like LLaMA-Factory's `get_dataset_list` (fixture:
//! `tests/fixtures/hf/data/make_dataset_info.py`), and bad entries named in errors.

use lmf_trainers::data::{get_dataset_list, DatasetAttr};
use serde_json::Value;
use std::path::Path;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf/data");

/// Our attributes in the shape of LF's `vars(DatasetAttr)`.
fn as_json(a: &DatasetAttr) -> Value {
    serde_json::json!({
        "load_from": a.load_from.as_str(), "dataset_name": a.dataset_name,
        "formatting": a.formatting.as_str(), "ranking": a.ranking, "subset": a.subset,
        "split": a.split, "folder": a.folder, "num_samples": a.num_samples,
        "system": a.system, "tools": a.tools, "images": a.images, "videos": a.videos,
        "audios": a.audios, "chosen": a.chosen, "rejected": a.rejected, "kto_tag": a.kto_tag,
        "prompt": a.prompt, "query": a.query, "response": a.response, "history": a.history,
        "messages": a.messages, "role_tag": a.role_tag, "content_tag": a.content_tag,
        "user_tag": a.user_tag, "assistant_tag": a.assistant_tag,
        "observation_tag": a.observation_tag, "function_tag": a.function_tag,
        "system_tag": a.system_tag,
    })
}

#[test]
fn every_entry_matches_llamafactory() {
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/dataset_list.json")).unwrap())
            .unwrap();
    let names: Vec<String> = fixture["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let ours = get_dataset_list(&names, Path::new(DIR)).unwrap();
    let want = fixture["attrs"].as_array().unwrap();
    assert_eq!(ours.len(), want.len());
    for ((name, a), w) in names.iter().zip(&ours).zip(want) {
        assert_eq!(&as_json(a), w, "dataset {name}");
    }
}

#[test]
fn errors_name_the_file_and_dataset() {
    let err = get_dataset_list(&["alpaca_plian".into()], Path::new(DIR))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("undefined dataset `alpaca_plian`") && err.contains("dataset_info.json"),
        "{err}"
    );
    assert!(err.contains("alpaca_plain"), "{err}");
    let dir = std::env::temp_dir().join(format!("lmf-dsinfo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("dataset_info.json"),
        r#"{"d": {"file_name": "x.json", "num_samples": "ten"}}"#,
    )
    .unwrap();
    let err = get_dataset_list(&["d".into()], &dir)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dataset `d`") && err.contains("num_samples"),
        "{err}"
    );
    std::fs::write(
        dir.join("dataset_info.json"),
        r#"{"d": {"formatting": "sharegpt"}}"#,
    )
    .unwrap();
    let err = get_dataset_list(&["d".into()], &dir)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dataset `d`") && err.contains("file_name"),
        "{err}"
    );
    let err = get_dataset_list(&["d".into()], &dir.join("missing"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot open") && err.contains("dataset_info.json"),
        "{err}"
    );
    assert!(get_dataset_list(&[], &dir.join("missing"))
        .unwrap()
        .is_empty());
}
