//! `tokenized_path`: the encoded [`DatasetModule`] saved to a folder the first time and loaded
//! from it afterwards (LLaMA-Factory saves HF `save_to_disk` folders; lmf's own format is one
//! JSON-lines file per set plus `lmf_tokenized.json` naming them and the kind of rows). Like
//! LF, a folder that is there and not empty is loaded and every other data argument is ignored;
//! a folder written by LF (arrow files), or holding another stage's kind of rows, is refused
//! with a clear error.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use super::example::{DatasetModule, EncodedRow, Example};
use crate::{Error, Result};

/// The manifest file of an lmf tokenized folder.
pub const MANIFEST: &str = "lmf_tokenized.json";

/// LF's `has_tokenized_data`: the folder exists and is not empty.
pub fn has_tokenized_data(dir: &Path) -> bool {
    dir.is_dir()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Msg(format!("{}: {e}", path.display()))
}

fn write_rows<R: EncodedRow>(path: &Path, rows: &[R]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| io(path, e))?;
    let mut w = BufWriter::new(file);
    for row in rows {
        serde_json::to_writer(&mut w, row)
            .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
        w.write_all(b"\n").map_err(|e| io(path, e))?;
    }
    w.flush().map_err(|e| io(path, e))
}

fn read_rows<R: EncodedRow>(path: &Path) -> Result<Vec<R>> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: R = serde_json::from_str(&line)
            .map_err(|e| Error::Msg(format!("{}: line {}: {e}", path.display(), i + 1)))?;
        row.check()
            .map_err(|e| Error::Msg(format!("{}: line {}: {e}", path.display(), i + 1)))?;
        rows.push(row);
    }
    Ok(rows)
}

/// Saves `module` to `dir` (created if needed).
pub fn save<R: EncodedRow>(dir: &Path, module: &DatasetModule<R>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    write_rows(&dir.join("train.jsonl"), &module.train)?;
    let mut eval_files = Vec::new();
    for (i, (name, rows)) in module.eval.iter().enumerate() {
        let file = format!("eval_{i}.jsonl");
        write_rows(&dir.join(&file), rows)?;
        eval_files.push(serde_json::json!({ "name": name, "file": file }));
    }
    let manifest = serde_json::json!({
        "format": "lmf-tokenized-v1",
        "rows": R::KIND,
        "train": "train.jsonl",
        "eval": eval_files,
    });
    let path = dir.join(MANIFEST);
    std::fs::write(&path, format!("{manifest:#}\n")).map_err(|e| io(&path, e))
}

/// Loads a module saved by [`save`] with rows of kind `R` (a manifest without `rows` holds
/// [`Example`] rows).
pub fn load<R: EncodedRow>(dir: &Path) -> Result<DatasetModule<R>> {
    let path = dir.join(MANIFEST);
    if !path.is_file() {
        return Err(Error::Msg(format!(
            "tokenized_path {} is not empty but holds no {MANIFEST}: not an lmf tokenized dataset (LLaMA-Factory's arrow folders cannot be read); point tokenized_path to a new folder",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Msg(format!("{}: invalid JSON: {e}", path.display())))?;
    let bad = || {
        Error::Msg(format!(
            "{}: not an lmf-tokenized-v1 manifest",
            path.display()
        ))
    };
    if manifest["format"] != "lmf-tokenized-v1" {
        return Err(bad());
    }
    let kind = match &manifest["rows"] {
        serde_json::Value::Null => Example::KIND,
        v => v.as_str().ok_or_else(bad)?,
    };
    if kind != R::KIND {
        return Err(Error::Msg(format!(
            "tokenized_path {} holds {kind} rows, this stage needs {} rows; point tokenized_path to a new folder",
            dir.display(),
            R::KIND
        )));
    }
    let train_file = manifest["train"].as_str().ok_or_else(bad)?;
    let mut module = DatasetModule {
        train: read_rows(&dir.join(train_file))?,
        eval: Vec::new(),
        stream: None,
    };
    for entry in manifest["eval"].as_array().ok_or_else(bad)? {
        let name = entry["name"].as_str().ok_or_else(bad)?;
        let file = entry["file"].as_str().ok_or_else(bad)?;
        module
            .eval
            .push((name.to_string(), read_rows(&dir.join(file))?));
    }
    Ok(module)
}
