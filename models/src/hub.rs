//! Resolving `model_name_or_path` (or an adapter path) to a local folder: an existing folder as
//! is; otherwise a Hugging Face hub id `org/name[@revision]`, found in the hub cache the way
//! `huggingface_hub` lays it out (`models--org--name/refs/<rev>` → commit →
//! `snapshots/<commit>/`), or downloaded into that layout (config, tokenizer, generation config,
//! safetensors weights) with the `hf-hub` crate's blocking client.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The files a model (or adapter) folder needs, by exact name; `*.safetensors` come on top.
const WANTED_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "model.safetensors.index.json",
    "adapter_config.json",
];

/// A hub repository id and the revision asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `org/name` (or a bare legacy `name`).
    pub repo_id: String,
    /// Branch, tag or commit hash; `main` unless `@revision` was given.
    pub revision: String,
}

impl HubId {
    /// Reads `org/name` or `org/name@revision`; `None` when `text` cannot be a hub id (as
    /// `huggingface_hub`'s `validate_repo_id` decides: at most one `/`, parts of letters,
    /// digits, `-`, `_`, `.`, no `--` or `..`, at most 96 characters).
    pub fn parse(text: &str) -> Option<Self> {
        let (repo_id, revision) = match text.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, rev),
            Some(_) => return None,
            None => (text, "main"),
        };
        let parts: Vec<&str> = repo_id.split('/').collect();
        let part_ok = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !p.starts_with(['-', '.'])
                && !p.ends_with(['-', '.'])
        };
        let ok = parts.len() <= 2
            && parts.iter().all(part_ok)
            && !repo_id.contains("--")
            && !repo_id.contains("..")
            && repo_id.len() <= 96;
        ok.then(|| HubId {
            repo_id: repo_id.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The repository's folder in the hub cache: `models--org--name`.
    pub fn folder_name(&self) -> String {
        format!("models--{}", self.repo_id.replace('/', "--"))
    }
}

/// Where to look for hub models, and whether to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache folder (the one holding `models--org--name`).
    pub cache_dir: PathBuf,
    /// Access token for gated or private repositories.
    pub token: Option<String>,
    /// Never download (`HF_HUB_OFFLINE`): a model missing from the cache is an error.
    pub offline: bool,
    /// Hub address (`HF_ENDPOINT`, else huggingface.co).
    pub endpoint: String,
}

impl HubOptions {
    /// Options as `huggingface_hub` takes them from the environment, with an explicit
    /// `cache_dir` / `token` (LLaMA-Factory's `cache_dir`, `hf_hub_token`) winning.
    pub fn from_env(cache_dir: Option<&Path>, token: Option<&str>) -> Self {
        let token = token
            .map(str::to_string)
            .or_else(|| env_nonempty("HF_TOKEN"))
            .or_else(|| {
                std::fs::read_to_string(hf_home().join("token"))
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        Self {
            cache_dir: cache_dir.map_or_else(default_cache_dir, Path::to_path_buf),
            token,
            offline: env_true("HF_HUB_OFFLINE") || env_true("TRANSFORMERS_OFFLINE"),
            endpoint: env_nonempty("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".to_string()),
        }
    }

    /// The local folder of `name_or_path`: an existing folder as is, else the cached (or newly
    /// downloaded) snapshot of the hub id.
    pub fn resolve(&self, name_or_path: &str) -> Result<PathBuf> {
        let path = Path::new(name_or_path);
        if path.is_dir() {
            return Ok(path.to_path_buf());
        }
        let Some(id) = HubId::parse(name_or_path) else {
            return Err(Error::msg(format!(
                "model folder `{name_or_path}` does not exist (and it is not a hub id org/name)"
            )));
        };
        if let Some(snapshot) = cached_snapshot(&self.cache_dir, &id) {
            return Ok(snapshot);
        }
        let repo_dir = self.cache_dir.join(id.folder_name());
        if self.offline {
            return Err(Error::msg(format!(
                "`{}` (revision {}) is not in the Hugging Face cache (looked in {}) and \
                 HF_HUB_OFFLINE is set: download it first or pass a model folder",
                id.repo_id,
                id.revision,
                repo_dir.display()
            )));
        }
        self.download(&id).map_err(|e| {
            Error::msg(format!(
                "`{}` (revision {}) is not in the Hugging Face cache (looked in {}) and could \
                 not be downloaded: {e}",
                id.repo_id,
                id.revision,
                repo_dir.display()
            ))
        })
    }

    /// Downloads the files a model needs into the cache layout; returns the snapshot folder.
    fn download(&self, id: &HubId) -> std::result::Result<PathBuf, String> {
        use hf_hub::api::sync::ApiBuilder;
        use hf_hub::{Cache, Repo, RepoType};

        let api = ApiBuilder::from_cache(Cache::new(self.cache_dir.clone()))
            .with_token(self.token.clone())
            .with_endpoint(self.endpoint.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let repo = api.repo(Repo::with_revision(
            id.repo_id.clone(),
            RepoType::Model,
            id.revision.clone(),
        ));
        let info = repo.info().map_err(|e| e.to_string())?;
        let files: Vec<&str> = info
            .siblings
            .iter()
            .map(|s| s.rfilename.as_str())
            .filter(|f| is_wanted(f))
            .collect();
        if !files.contains(&"config.json") && !files.contains(&"adapter_config.json") {
            return Err("the repository has no config.json".into());
        }
        if !files.iter().any(|f| f.ends_with(".safetensors")) {
            return Err("the repository has no .safetensors weights (lmf reads no .bin)".into());
        }
        let mut snapshot = None;
        for file in files {
            let local = repo.get(file).map_err(|e| format!("{file}: {e}"))?;
            snapshot = local.parent().map(Path::to_path_buf);
        }
        snapshot.ok_or_else(|| "nothing was downloaded".to_string())
    }
}

/// Resolves `model_name_or_path` to a local folder: an existing folder as is; otherwise a hub
/// id `org/name[@revision]`, taken from the Hugging Face cache (`cache_dir`, else
/// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`) or downloaded into it
/// unless `HF_HUB_OFFLINE` is set.
pub fn resolve_model_dir(
    name_or_path: &str,
    cache_dir: Option<&Path>,
    token: Option<&str>,
) -> Result<PathBuf> {
    HubOptions::from_env(cache_dir, token).resolve(name_or_path)
}

/// The snapshot folder of `id` in the hub cache `cache_dir`, when it holds a complete model or
/// adapter (a config, safetensors weights, and every shard its index names).
pub fn cached_snapshot(cache_dir: &Path, id: &HubId) -> Option<PathBuf> {
    let repo_dir = cache_dir.join(id.folder_name());
    let is_commit = id.revision.len() == 40 && id.revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit && repo_dir.join("snapshots").join(&id.revision).is_dir() {
        id.revision.clone()
    } else {
        let text = std::fs::read_to_string(repo_dir.join("refs").join(&id.revision)).ok()?;
        text.trim().to_string()
    };
    if commit.is_empty() {
        return None;
    }
    let snapshot = repo_dir.join("snapshots").join(commit);
    is_complete(&snapshot).then_some(snapshot)
}

/// True when `dir` has a config, safetensors weights, and every shard its index lists.
fn is_complete(dir: &Path) -> bool {
    let has_config = dir.join("config.json").is_file() || dir.join("adapter_config.json").is_file();
    let has_weights = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
    });
    has_config && has_weights && index_shards_present(dir)
}

/// True unless `model.safetensors.index.json` names a shard that is missing (or is unreadable).
fn index_shards_present(dir: &Path) -> bool {
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(&index) else {
        return false;
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    match json.get("weight_map").and_then(|m| m.as_object()) {
        Some(map) => map
            .values()
            .filter_map(|v| v.as_str())
            .all(|shard| dir.join(shard).is_file()),
        None => false,
    }
}

/// Whether a repository file is one lmf downloads (top-level only).
fn is_wanted(file: &str) -> bool {
    !file.contains('/') && (WANTED_FILES.contains(&file) || file.ends_with(".safetensors"))
}

/// The hub cache folder from the environment: `HF_HUB_CACHE` (or the older
/// `HUGGINGFACE_HUB_CACHE`), else `<HF home>/hub`.
pub fn default_cache_dir() -> PathBuf {
    env_nonempty("HF_HUB_CACHE")
        .or_else(|| env_nonempty("HUGGINGFACE_HUB_CACHE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_home().join("hub"))
}

/// The Hugging Face home: `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else
/// `~/.cache/huggingface`.
pub fn hf_home() -> PathBuf {
    if let Some(home) = env_nonempty("HF_HOME") {
        return PathBuf::from(home);
    }
    let cache = env_nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env_nonempty("HOME").unwrap_or_else(|| ".".into())).join(".cache")
        });
    cache.join("huggingface")
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `huggingface_hub`'s `_is_true`: 1, ON, YES, TRUE in any case.
fn env_true(name: &str) -> bool {
    env_nonempty(name)
        .is_some_and(|v| matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}
