//! Loading one dataset's rows from local files (LLaMA-Factory's `_load_single_dataset` with
//! `load_from: file`, through HF `datasets`' json / csv / parquet / text builders).
//!
//! - `file_name` is a file or a folder under `dataset_dir`; a folder means all its files, which
//!   must share one type (`.json`/`.jsonl` → json, `.csv`, `.parquet`, `.txt` → text). Files of a
//!   folder are read in name order (LF takes `os.listdir` order, which the file system decides).
//! - json: a top-level array of objects, or JSON lines (one object per line), as HF accepts.
//! - csv: a header row, then one row per record; every field is a string and an empty field is
//!   null (HF reads csv with pandas, which may instead infer numbers for all-numeric columns).
//! - parquet: every column through the parquet record API.
//! - txt: one row `{"text": line}` per line.
//! - `split`: local files only have `train` (HF's rule for a list of data files).
//! - `num_samples`: LF's draws from numpy's global state (`np.random.permutation(n)[:k]`, then
//!   `np.random.choice(n, k - n)` beyond the size), which `transformers.set_seed(seed)` seeded:
//!   the same rows through [`LegacyRng`], shared by the datasets in LF's loading order.
//! - `max_samples`: the first N rows.
//!
//! Hub, ModelScope, Modelers, script and cloud datasets are not implemented.

use std::path::{Path, PathBuf};

use super::dataset_info::{DatasetAttr, LoadFrom};
use super::numpy_rng::LegacyRng;
use crate::template::pyjson::PyJson;
use crate::{Error, Result};

/// Where a row came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowOrigin {
    /// Index into [`LoadedDataset::files`].
    pub file: usize,
    /// Row index inside that file (0-based; for JSON lines, the line's row number).
    pub index: usize,
}

/// One dataset's rows as loaded.
#[derive(Clone, Debug, Default)]
pub struct LoadedDataset {
    /// The dataset's name in `dataset_info.json`.
    pub name: String,
    /// The files read.
    pub files: Vec<PathBuf>,
    /// Each row (a JSON object, keys in file order) with its origin.
    pub rows: Vec<(RowOrigin, PyJson)>,
}

impl LoadedDataset {
    /// `dataset `name`, file F, row N` — the prefix of every row error.
    pub fn locate(&self, origin: &RowOrigin) -> String {
        let file = self
            .files
            .get(origin.file)
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        format!("dataset `{}`, {file}, row {}", self.name, origin.index)
    }
}

/// File types HF's builders read, by extension (LF's `FILEEXT2TYPE`, without arrow).
pub fn file_type(path: &Path) -> Option<&'static str> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") | Some("jsonl") => Some("json"),
        Some("csv") => Some("csv"),
        Some("parquet") => Some("parquet"),
        Some("txt") => Some("text"),
        Some("arrow") => Some("arrow"),
        _ => None,
    }
}

/// Loads the rows of dataset `name` described by `attr`, then applies `num_samples` (drawing
/// from `rng`, numpy's global state) and `max_samples` as LF does.
pub fn load_dataset(
    name: &str,
    attr: &DatasetAttr,
    dataset_dir: &Path,
    max_samples: Option<usize>,
    rng: &mut LegacyRng,
) -> Result<LoadedDataset> {
    if attr.load_from != LoadFrom::File {
        return Err(Error::Msg(format!(
            "dataset `{name}`: loading from {} (`{}`) is not implemented; use a local file_name",
            attr.load_from.as_str(),
            attr.dataset_name
        )));
    }
    if attr.split != "train" {
        return Err(Error::Msg(format!(
            "dataset `{name}`: split `{}` not found: local files only have the `train` split",
            attr.split
        )));
    }
    let local = dataset_dir.join(&attr.dataset_name);
    let mut files = Vec::new();
    if local.is_dir() {
        let entries = std::fs::read_dir(&local)
            .map_err(|e| Error::Msg(format!("cannot list {}: {e}", local.display())))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::Msg(format!("cannot list {}: {e}", local.display())))?;
            files.push(entry.path());
        }
        files.sort();
    } else if local.is_file() {
        files.push(local.clone());
    } else {
        return Err(Error::Msg(format!(
            "dataset `{name}`: file {} not found",
            local.display()
        )));
    }
    let Some(first) = files.first() else {
        return Err(Error::Msg(format!(
            "dataset `{name}`: folder {} is empty",
            local.display()
        )));
    };
    let kind = file_type(first).ok_or_else(|| {
        Error::Msg(format!(
            "dataset `{name}`: {}: allowed file types: arrow, csv, json, jsonl, parquet, txt",
            first.display()
        ))
    })?;
    if kind == "arrow" {
        return Err(Error::Msg(format!(
            "dataset `{name}`: arrow files are not implemented; use json, jsonl, csv, parquet or txt"
        )));
    }
    if let Some(other) = files.iter().find(|f| file_type(f) != Some(kind)) {
        return Err(Error::Msg(format!(
            "dataset `{name}`: file types should be identical ({} is not {kind})",
            other.display()
        )));
    }
    let mut ds = LoadedDataset {
        name: name.to_string(),
        files: files.clone(),
        rows: Vec::new(),
    };
    for (fi, file) in files.iter().enumerate() {
        let rows = read_rows(kind, file)?;
        ds.rows.extend(
            rows.into_iter()
                .enumerate()
                .map(|(index, row)| (RowOrigin { file: fi, index }, row)),
        );
    }
    if let Some(target) = attr.num_samples {
        ds.rows = sample(std::mem::take(&mut ds.rows), target as usize, rng).ok_or_else(|| {
            Error::Msg(format!(
                "dataset `{name}`: cannot draw num_samples {target} from an empty dataset"
            ))
        })?;
    }
    if let Some(max) = max_samples {
        ds.rows.truncate(max);
    }
    Ok(ds)
}

/// `num_samples`: LF's permutation, then draws with replacement beyond the size.
fn sample<T: Clone>(rows: Vec<T>, target: usize, rng: &mut LegacyRng) -> Option<Vec<T>> {
    let mut order = rng.permutation(rows.len());
    order.truncate(target);
    if order.len() < target {
        if rows.is_empty() {
            return None;
        }
        order.extend(rng.choice(rows.len(), target - order.len()));
    }
    Some(order.into_iter().map(|i| rows[i].clone()).collect())
}

/// The rows of `file`, read as `kind` (a [`file_type`] other than arrow).
pub fn read_rows(kind: &str, file: &Path) -> Result<Vec<PyJson>> {
    match kind {
        "json" => read_json(file),
        "csv" => read_csv(file),
        "parquet" => read_parquet(file),
        _ => read_text(file),
    }
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file)
        .map_err(|e| Error::Msg(format!("cannot read {}: {e}", file.display())))
}

/// A json file: an array of rows, or JSON lines.
pub fn read_json(file: &Path) -> Result<Vec<PyJson>> {
    let text = read(file)?;
    if text.trim_start().starts_with('[') {
        return match PyJson::parse(&text) {
            Ok(PyJson::List(rows)) => Ok(rows),
            Ok(_) => Err(Error::Msg(format!(
                "{}: expected a list of rows",
                file.display()
            ))),
            Err(e) => Err(Error::Msg(format!("{}: invalid JSON: {e}", file.display()))),
        };
    }
    let mut rows = Vec::new();
    let stream = serde_json::Deserializer::from_str(&text).into_iter::<PyJson>();
    for (i, row) in stream.enumerate() {
        let row =
            row.map_err(|e| Error::Msg(format!("{}: row {i}: invalid JSON: {e}", file.display())))?;
        rows.push(row);
    }
    Ok(rows)
}

/// A csv file with a header: string fields, empty → null.
pub fn read_csv(file: &Path) -> Result<Vec<PyJson>> {
    let bad = |e: csv::Error| Error::Msg(format!("{}: invalid csv: {e}", file.display()));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(file)
        .map_err(bad)?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(bad)?;
        let fields = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| {
                let v = if v.is_empty() {
                    PyJson::Null
                } else {
                    PyJson::Str(v.to_string())
                };
                (h.clone(), v)
            })
            .collect();
        rows.push(PyJson::Dict(fields));
    }
    Ok(rows)
}

/// A text file: one `{"text": line}` row per line.
pub fn read_text(file: &Path) -> Result<Vec<PyJson>> {
    Ok(read(file)?
        .lines()
        .map(|l| PyJson::Dict(vec![("text".into(), PyJson::Str(l.to_string()))]))
        .collect())
}

/// A parquet file through the record API (each field as JSON).
pub fn read_parquet(file: &Path) -> Result<Vec<PyJson>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let bad = |e: parquet::errors::ParquetError| {
        Error::Msg(format!("{}: invalid parquet: {e}", file.display()))
    };
    let f = std::fs::File::open(file)
        .map_err(|e| Error::Msg(format!("cannot open {}: {e}", file.display())))?;
    let reader = SerializedFileReader::new(f).map_err(bad)?;
    let mut rows = Vec::new();
    for row in reader.get_row_iter(None).map_err(bad)? {
        let row = row.map_err(bad)?;
        let fields = row
            .get_column_iter()
            .map(|(name, field)| (name.clone(), parquet_value(field)))
            .collect();
        rows.push(PyJson::Dict(fields));
    }
    Ok(rows)
}

/// A parquet field as JSON: groups keep their column order; dates, times, decimals and bytes
/// become their display text.
fn parquet_value(field: &parquet::record::Field) -> PyJson {
    use parquet::record::Field as F;
    match field {
        F::Null => PyJson::Null,
        F::Bool(b) => PyJson::Bool(*b),
        F::Byte(v) => PyJson::Int(*v as i128),
        F::Short(v) => PyJson::Int(*v as i128),
        F::Int(v) => PyJson::Int(*v as i128),
        F::Long(v) => PyJson::Int(*v as i128),
        F::UByte(v) => PyJson::Int(*v as i128),
        F::UShort(v) => PyJson::Int(*v as i128),
        F::UInt(v) => PyJson::Int(*v as i128),
        F::ULong(v) => PyJson::Int(*v as i128),
        F::Float16(v) => PyJson::Float(f64::from(*v)),
        F::Float(v) => PyJson::Float(*v as f64),
        F::Double(v) => PyJson::Float(*v),
        F::Str(s) => PyJson::Str(s.clone()),
        F::Group(row) => PyJson::Dict(
            row.get_column_iter()
                .map(|(k, v)| (k.clone(), parquet_value(v)))
                .collect(),
        ),
        F::ListInternal(list) => PyJson::List(list.elements().iter().map(parquet_value).collect()),
        F::MapInternal(map) => PyJson::Dict(
            map.entries()
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        F::Str(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (key, parquet_value(v))
                })
                .collect(),
        ),
        other => PyJson::Str(other.to_string()),
    }
}
