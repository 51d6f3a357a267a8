//! `dataset_info.json` → [`DatasetAttr`], exactly as LLaMA-Factory's `get_dataset_list`
//! reads it: where a dataset comes from (`file_name`, `hf_hub_url`, `ms_hub_url`,
//! `om_hub_url`, `script_url`, `cloud_file_name`), its formatting, columns and sharegpt tags.
//! Note LLaMA-Factory's rule, kept here: once an entry has `columns` (or `tags`), every
//! column (tag) it does not list is unset, not left at its default.

use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// The file name LLaMA-Factory looks for in `dataset_dir`.
pub const DATA_CONFIG: &str = "dataset_info.json";

/// Where a dataset is loaded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadFrom {
    /// Hugging Face hub (`hf_hub_url`).
    HfHub,
    /// ModelScope hub (`ms_hub_url`).
    MsHub,
    /// Modelers (OpenMind) hub (`om_hub_url`).
    OmHub,
    /// A loading script (`script_url`).
    Script,
    /// A cloud file (`cloud_file_name`).
    CloudFile,
    /// A local file or folder under `dataset_dir` (`file_name`).
    File,
}

impl LoadFrom {
    /// LLaMA-Factory's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadFrom::HfHub => "hf_hub",
            LoadFrom::MsHub => "ms_hub",
            LoadFrom::OmHub => "om_hub",
            LoadFrom::Script => "script",
            LoadFrom::CloudFile => "cloud_file",
            LoadFrom::File => "file",
        }
    }
}

/// How rows are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Formatting {
    /// instruction / input / output (+ history, system).
    Alpaca,
    /// a list of role-tagged turns.
    Sharegpt,
    /// OpenAI-style messages.
    Openai,
}

impl Formatting {
    /// LLaMA-Factory's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Formatting::Alpaca => "alpaca",
            Formatting::Sharegpt => "sharegpt",
            Formatting::Openai => "openai",
        }
    }
}

/// One dataset's attributes (LLaMA-Factory's `DatasetAttr`, same field names).
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetAttr {
    /// Where it is loaded from.
    pub load_from: LoadFrom,
    /// File name, hub id or script, depending on `load_from`.
    pub dataset_name: String,
    /// Row layout.
    pub formatting: Formatting,
    /// Pairwise (chosen / rejected) data.
    pub ranking: bool,
    /// Hub subset.
    pub subset: Option<String>,
    /// Split to read.
    pub split: String,
    /// Hub folder.
    pub folder: Option<String>,
    /// Rows to sample (with replacement beyond the size).
    pub num_samples: Option<u64>,
    /// Column of the system prompt.
    pub system: Option<String>,
    /// Column of the tool descriptions.
    pub tools: Option<String>,
    /// Column of the images.
    pub images: Option<String>,
    /// Column of the videos.
    pub videos: Option<String>,
    /// Column of the audios.
    pub audios: Option<String>,
    /// Column of the preferred response.
    pub chosen: Option<String>,
    /// Column of the rejected response.
    pub rejected: Option<String>,
    /// Column of the KTO label.
    pub kto_tag: Option<String>,
    /// Alpaca: column of the instruction.
    pub prompt: Option<String>,
    /// Alpaca: column of the input.
    pub query: Option<String>,
    /// Alpaca: column of the output.
    pub response: Option<String>,
    /// Alpaca: column of the history pairs.
    pub history: Option<String>,
    /// Sharegpt: column of the turns.
    pub messages: Option<String>,
    /// Sharegpt: key of a turn's role.
    pub role_tag: Option<String>,
    /// Sharegpt: key of a turn's text.
    pub content_tag: Option<String>,
    /// Sharegpt: role value of user turns.
    pub user_tag: Option<String>,
    /// Sharegpt: role value of assistant turns.
    pub assistant_tag: Option<String>,
    /// Sharegpt: role value of tool results.
    pub observation_tag: Option<String>,
    /// Sharegpt: role value of function calls.
    pub function_tag: Option<String>,
    /// Sharegpt: role value of system turns.
    pub system_tag: Option<String>,
}

impl DatasetAttr {
    /// A dataset with LLaMA-Factory's defaults.
    pub fn new(load_from: LoadFrom, dataset_name: impl Into<String>) -> DatasetAttr {
        let s = |x: &str| Some(x.to_string());
        DatasetAttr {
            load_from,
            dataset_name: dataset_name.into(),
            formatting: Formatting::Alpaca,
            ranking: false,
            subset: None,
            split: "train".into(),
            folder: None,
            num_samples: None,
            system: None,
            tools: None,
            images: None,
            videos: None,
            audios: None,
            chosen: None,
            rejected: None,
            kto_tag: None,
            prompt: s("instruction"),
            query: s("input"),
            response: s("output"),
            history: None,
            messages: s("conversations"),
            role_tag: s("from"),
            content_tag: s("value"),
            user_tag: s("human"),
            assistant_tag: s("gpt"),
            observation_tag: s("observation"),
            function_tag: s("function_call"),
            system_tag: s("system"),
        }
    }
}

/// Reads entry fields with errors naming the file, dataset and key.
struct Entry<'a> {
    file: &'a Path,
    name: &'a str,
}

impl Entry<'_> {
    fn bad(&self, key: &str, want: &str, got: &Value) -> Error {
        Error::Msg(format!(
            "{}: dataset `{}`: `{key}` must be {want}, got {got}",
            self.file.display(),
            self.name
        ))
    }

    /// A string or null (absent → None).
    fn opt_str(&self, obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.bad(key, "a string", v)),
        }
    }
}

/// The attributes of each dataset in `names`, from `dataset_dir/dataset_info.json`
/// (LLaMA-Factory's `get_dataset_list`; `USE_MODELSCOPE_HUB` / `USE_OPENMIND_HUB` choose
/// between hub urls as there).
pub fn get_dataset_list(names: &[String], dataset_dir: &Path) -> Result<Vec<DatasetAttr>> {
    if names.is_empty() {
        return Ok(vec![]);
    }
    let file = dataset_dir.join(DATA_CONFIG);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Error::Msg(format!("cannot open {}: {e}", file.display())))?;
    let info: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Msg(format!("{}: invalid JSON: {e}", file.display())))?;
    let info = info.as_object().ok_or_else(|| {
        Error::Msg(format!(
            "{}: expected an object of datasets",
            file.display()
        ))
    })?;
    let on = |var: &str| {
        std::env::var(var)
            .is_ok_and(|v| matches!(v.to_lowercase().as_str(), "1" | "true" | "y" | "yes"))
    };
    let (modelscope, openmind) = (on("USE_MODELSCOPE_HUB"), on("USE_OPENMIND_HUB"));
    names
        .iter()
        .map(|name| {
            let entry = info.get(name).ok_or_else(|| {
                let known: Vec<&str> = info.keys().map(|k| k.as_str()).collect();
                let hint = crate::args::closest::closest(name, known)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                Error::Msg(format!(
                    "undefined dataset `{name}` in {}{hint}",
                    file.display()
                ))
            })?;
            let obj = entry.as_object().ok_or_else(|| {
                Error::Msg(format!(
                    "{}: dataset `{name}` must be an object",
                    file.display()
                ))
            })?;
            parse_entry(&Entry { file: &file, name }, obj, modelscope, openmind)
        })
        .collect()
}

/// One entry of `dataset_info.json`.
fn parse_entry(
    e: &Entry,
    obj: &Map<String, Value>,
    modelscope: bool,
    openmind: bool,
) -> Result<DatasetAttr> {
    let url = |k: &str| e.opt_str(obj, k);
    let (hf, ms, om) = (url("hf_hub_url")?, url("ms_hub_url")?, url("om_hub_url")?);
    let (load_from, source) = if hf.is_some() || ms.is_some() || om.is_some() {
        match (hf, ms, om) {
            (hf, Some(ms), _) if modelscope || hf.is_none() => (LoadFrom::MsHub, ms),
            (hf, _, Some(om)) if openmind || hf.is_none() => (LoadFrom::OmHub, om),
            (Some(hf), _, _) => (LoadFrom::HfHub, hf),
            _ => unreachable!("one of the urls is set"),
        }
    } else if let Some(s) = url("script_url")? {
        (LoadFrom::Script, s)
    } else if let Some(s) = url("cloud_file_name")? {
        (LoadFrom::CloudFile, s)
    } else if let Some(s) = url("file_name")? {
        (LoadFrom::File, s)
    } else {
        return Err(Error::Msg(format!(
            "{}: dataset `{}` needs one of file_name, hf_hub_url, ms_hub_url, om_hub_url, script_url, cloud_file_name",
            e.file.display(),
            e.name
        )));
    };
    let mut a = DatasetAttr::new(load_from, source);
    a.formatting = match e.opt_str(obj, "formatting")?.as_deref() {
        None | Some("alpaca") => Formatting::Alpaca,
        Some("sharegpt") => Formatting::Sharegpt,
        Some("openai") => Formatting::Openai,
        Some(other) => {
            return Err(e.bad(
                "formatting",
                "alpaca, sharegpt or openai",
                &Value::from(other),
            ))
        }
    };
    a.ranking = match obj.get("ranking") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(e.bad("ranking", "true or false", v)),
    };
    a.subset = e.opt_str(obj, "subset")?;
    a.split = e.opt_str(obj, "split")?.unwrap_or_else(|| "train".into());
    a.folder = e.opt_str(obj, "folder")?;
    a.num_samples = match obj.get("num_samples") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| e.bad("num_samples", "a non-negative integer", v))?,
        ),
    };
    if let Some(cols) = obj.get("columns") {
        let cols = cols
            .as_object()
            .ok_or_else(|| e.bad("columns", "an object", cols))?;
        let get = |k: &str| e.opt_str(cols, k);
        a.prompt = get("prompt")?;
        a.query = get("query")?;
        a.response = get("response")?;
        a.history = get("history")?;
        a.messages = get("messages")?;
        a.system = get("system")?;
        a.tools = get("tools")?;
        a.images = get("images")?;
        a.videos = get("videos")?;
        a.audios = get("audios")?;
        a.chosen = get("chosen")?;
        a.rejected = get("rejected")?;
        a.kto_tag = get("kto_tag")?;
    }
    if let Some(tags) = obj.get("tags") {
        let tags = tags
            .as_object()
            .ok_or_else(|| e.bad("tags", "an object", tags))?;
        let get = |k: &str| e.opt_str(tags, k);
        a.role_tag = get("role_tag")?;
        a.content_tag = get("content_tag")?;
        a.user_tag = get("user_tag")?;
        a.assistant_tag = get("assistant_tag")?;
        a.observation_tag = get("observation_tag")?;
        a.function_tag = get("function_tag")?;
        a.system_tag = get("system_tag")?;
    }
    Ok(a)
}
