//! Hub resolution against fake Hugging Face cache layouts built in a temp folder (no network:
//! every case either finds the model in the cache or runs offline).

use std::path::{Path, PathBuf};

use lmf_models::hub::{cached_snapshot, resolve_model_dir, HubId, HubOptions};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// A fresh folder for one test (tests run in parallel threads of one process).
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lmf-hub-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `models--org--name/refs/<rev>` → `commit` and a snapshot with `files`.
fn fake_repo(cache: &Path, repo_id: &str, rev: &str, commit: &str, files: &[&str]) -> PathBuf {
    let repo = cache.join(format!("models--{}", repo_id.replace('/', "--")));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join(rev), commit).unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    for file in files {
        std::fs::write(snapshot.join(file), "{}").unwrap();
    }
    snapshot
}

fn offline(cache: &Path) -> HubOptions {
    HubOptions {
        cache_dir: cache.to_path_buf(),
        token: None,
        offline: true,
        endpoint: "https://huggingface.co".into(),
    }
}

#[test]
fn an_existing_folder_is_returned_as_is() {
    let dir = tempdir("local");
    let cache = tempdir("local-cache");
    let got = resolve_model_dir(dir.to_str().unwrap(), Some(&cache), None).unwrap();
    assert_eq!(got, dir);
}

#[test]
fn a_cached_hub_id_resolves_to_its_snapshot() {
    let cache = tempdir("cached");
    let snapshot = fake_repo(
        &cache,
        "org/tiny",
        "main",
        COMMIT,
        &["config.json", "model.safetensors"],
    );
    // refs may end with a newline.
    std::fs::write(
        cache.join("models--org--tiny/refs/main"),
        format!("{COMMIT}\n"),
    )
    .unwrap();
    let got = resolve_model_dir("org/tiny", Some(&cache), None).unwrap();
    assert_eq!(got, snapshot);
    assert_eq!(offline(&cache).resolve("org/tiny").unwrap(), snapshot);
}

#[test]
fn revisions_pick_their_ref_or_commit() {
    let cache = tempdir("revisions");
    let files = ["config.json", "model.safetensors"];
    let main = fake_repo(&cache, "org/tiny", "main", COMMIT, &files);
    let v1 = fake_repo(&cache, "org/tiny", "v1", OTHER, &files);
    let opts = offline(&cache);
    assert_eq!(opts.resolve("org/tiny").unwrap(), main);
    assert_eq!(opts.resolve("org/tiny@v1").unwrap(), v1);
    assert_eq!(opts.resolve(&format!("org/tiny@{OTHER}")).unwrap(), v1);
    let err = opts.resolve("org/tiny@v2").unwrap_err().to_string();
    assert!(err.contains("revision v2"), "{err}");
}

#[test]
fn a_missing_model_offline_names_the_id_and_the_cache_folder() {
    let cache = tempdir("missing");
    let err = offline(&cache)
        .resolve("org/absent")
        .unwrap_err()
        .to_string();
    let folder = cache.join("models--org--absent");
    assert_eq!(
        err,
        format!(
            "`org/absent` (revision main) is not in the Hugging Face cache (looked in {}) and \
             HF_HUB_OFFLINE is set: download it first or pass a model folder",
            folder.display()
        )
    );
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn an_incomplete_snapshot_does_not_count_as_cached() {
    let cache = tempdir("incomplete");
    // No weights at all.
    let files = ["config.json", "tokenizer.json"];
    fake_repo(&cache, "org/noweights", "main", COMMIT, &files);
    assert!(offline(&cache).resolve("org/noweights").is_err());
    // An index naming a shard that is not there.
    let files = ["config.json", "model-00001-of-00002.safetensors"];
    let snapshot = fake_repo(&cache, "org/sharded", "main", COMMIT, &files);
    let index = r#"{"weight_map": {"a": "model-00001-of-00002.safetensors",
                                   "b": "model-00002-of-00002.safetensors"}}"#;
    std::fs::write(snapshot.join("model.safetensors.index.json"), index).unwrap();
    let id = HubId::parse("org/sharded").unwrap();
    assert_eq!(cached_snapshot(&cache, &id), None);
    std::fs::write(snapshot.join("model-00002-of-00002.safetensors"), "{}").unwrap();
    assert_eq!(cached_snapshot(&cache, &id), Some(snapshot));
}

#[test]
fn adapters_resolve_like_models() {
    let cache = tempdir("adapter");
    let files = ["adapter_config.json", "adapter_model.safetensors"];
    let snapshot = fake_repo(&cache, "org/lora", "main", COMMIT, &files);
    assert_eq!(offline(&cache).resolve("org/lora").unwrap(), snapshot);
}

#[test]
fn a_missing_path_that_is_no_hub_id_says_so() {
    let cache = tempdir("notid");
    let err = offline(&cache)
        .resolve("./models/a/b")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "model folder `./models/a/b` does not exist (and it is not a hub id org/name)"
    );
}

#[test]
fn hub_ids_follow_huggingface_hub_rules() {
    let id = HubId::parse("Qwen/Qwen3-0.6B").unwrap();
    assert_eq!(
        (id.repo_id.as_str(), id.revision.as_str()),
        ("Qwen/Qwen3-0.6B", "main")
    );
    assert_eq!(id.folder_name(), "models--Qwen--Qwen3-0.6B");
    let id = HubId::parse("gpt2@refs-pr-1").unwrap();
    assert_eq!(
        (id.repo_id.as_str(), id.revision.as_str()),
        ("gpt2", "refs-pr-1")
    );
    let bad = [
        "a/b/c",
        "/abs/path",
        "./rel",
        "a--b/c",
        "a/b..c",
        "org/",
        "org/name@",
        "-a/b",
        "a b/c",
    ];
    for text in bad {
        assert_eq!(HubId::parse(text), None, "{text}");
    }
}

#[test]
fn explicit_cache_dir_and_token_win_over_the_environment() {
    let cache = tempdir("explicit");
    let opts = HubOptions::from_env(Some(&cache), Some("hf_secret"));
    assert_eq!(opts.cache_dir, cache);
    assert_eq!(opts.token.as_deref(), Some("hf_secret"));
}
