//! Crash-safe file writing for the training outputs: every file is written under a temporary
//! name, fsynced and renamed into place, so a reader (or a resumed run) never sees half a file;
//! folders (checkpoints, the final model) are built under a temporary name and renamed whole.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::template::pyjson::PyJson;
use crate::{Error, Result};

/// `path: error` as a crate error.
pub fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename, fsync of
/// the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(dir);
    Ok(())
}

/// Appends one line to `path` (logs that grow line by line, as LLaMA-Factory appends them).
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    writeln!(f, "{line}").map_err(|e| io_err(path, e))
}

/// fsyncs a folder so a rename inside it is durable (best effort: not every filesystem allows
/// opening a folder).
pub fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// fsyncs every file directly inside `dir`.
pub fn sync_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let p = entry.map_err(|e| io_err(dir, e))?.path();
        if p.is_file() {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_err(&p, e))?;
        }
    }
    Ok(())
}

/// A fresh temporary folder next to `final_dir` (removing a stale one of a killed run).
pub fn temp_dir_for(final_dir: &Path) -> Result<PathBuf> {
    let parent = final_dir.parent().unwrap_or(Path::new("."));
    let name = final_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".tmp-{name}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    Ok(tmp)
}

/// Moves a completed temporary folder to `final_dir` (replacing an old one): files fsynced,
/// then one rename, then the parent fsynced.
pub fn commit_dir(tmp: &Path, final_dir: &Path) -> Result<()> {
    sync_files(tmp)?;
    sync_dir(tmp);
    if final_dir.exists() {
        // Out of the way in one rename first: a kill during the slow delete then leaves a
        // hidden folder, never a half-deleted `checkpoint-N`.
        remove_dir_safely(final_dir)?;
    }
    fs::rename(tmp, final_dir).map_err(|e| io_err(final_dir, e))?;
    sync_dir(final_dir.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Deletes a folder so that no reader ever sees it half-deleted: renamed to a hidden
/// `.deleting-<name>` first (atomic), then removed.
pub fn remove_dir_safely(dir: &Path) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = parent.join(format!(".deleting-{name}"));
    if doomed.exists() {
        fs::remove_dir_all(&doomed).map_err(|e| io_err(&doomed, e))?;
    }
    fs::rename(dir, &doomed).map_err(|e| io_err(dir, e))?;
    sync_dir(parent);
    fs::remove_dir_all(&doomed).map_err(|e| io_err(&doomed, e))
}

/// `json.dumps(value, indent=indent, sort_keys=sort_keys)` + `"\n"` written atomically.
pub fn write_json(path: &Path, value: &PyJson, indent: usize, sort_keys: bool) -> Result<()> {
    let mut text = value.dumps_with(Some(indent), None, sort_keys);
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> Result<PyJson> {
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    PyJson::parse(&text).map_err(|e| io_err(path, e))
}

/// Python's `round(x, digits)` for the metric values HF rounds (half-even is irrelevant at
/// these magnitudes).
pub fn py_round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Python's `f"{x:.4g}"`, as transformers prints the floats of a log line.
pub fn py_g4(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Four significant digits; the exponent is the one after rounding.
    let sci = format!("{x:.3e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let strip = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..4).contains(&exp) {
        strip(&format!("{x:.*}", (3 - exp) as usize))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa), exp.abs())
    }
}

/// An ordered dict from pairs.
pub fn dict(pairs: Vec<(&str, PyJson)>) -> PyJson {
    PyJson::Dict(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Python's `str(timedelta(seconds=s))`: `H:MM:SS`, with `N day(s), ` in front past a day.
pub fn timedelta_str(secs: u64) -> String {
    let (d, r) = (secs / 86400, secs % 86400);
    let hms = format!("{}:{:02}:{:02}", r / 3600, (r % 3600) / 60, r % 60);
    match d {
        0 => hms,
        1 => format!("1 day, {hms}"),
        _ => format!("{d} days, {hms}"),
    }
}

/// Local-time-free `YYYY-MM-DD HH:MM:SS` (UTC, from [`crate::clock`]) for log lines.
pub fn now_utc() -> String {
    crate::clock::now("%Y-%m-%d %H:%M:%S")
}

/// Copies each of `names` that exists in `src` into `dir` (atomically): the config and
/// tokenizer files saved next to weights or adapters.
pub fn copy_side_files(src: &Path, dir: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let from = src.join(name);
        if from.is_file() {
            let bytes = std::fs::read(&from).map_err(|e| io_err(&from, e))?;
            write_atomic(&dir.join(name), &bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedelta_matches_python() {
        assert_eq!(timedelta_str(5), "0:00:05");
        assert_eq!(timedelta_str(3725), "1:02:05");
        assert_eq!(timedelta_str(86400 + 61), "1 day, 0:01:01");
    }

    #[test]
    fn g4_matches_python() {
        // Expected strings: Python's f"{v:.4g}".
        for (v, want) in [
            (2.34567, "2.346"),
            (5e-05, "5e-05"),
            (1234.5, "1234"),
            (12345.6, "1.235e+04"),
            (0.0001, "0.0001"),
            (0.00012345, "0.0001234"),
            (9.9995, "9.999"),
            (1.0, "1"),
            (100.0, "100"),
            (-0.5, "-0.5"),
            (3e-4, "0.0003"),
            (1e16, "1e+16"),
            (1.0 / 3.0, "0.3333"),
            (0.0, "0"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(py_g4(v), want, "{v}");
        }
    }

    #[test]
    fn atomic_write_and_dir_commit() {
        let root = std::env::temp_dir().join(format!("lmf-io-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        let f = root.join("a.json");
        write_json(
            &f,
            &dict(vec![("b", PyJson::Int(1)), ("a", PyJson::Float(0.5))]),
            2,
            true,
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(&f).unwrap(),
            "{\n  \"a\": 0.5,\n  \"b\": 1\n}\n"
        );
        let fin = root.join("checkpoint-3");
        let tmp = temp_dir_for(&fin).unwrap();
        fs::write(tmp.join("x"), "1").unwrap();
        assert!(!fin.exists());
        commit_dir(&tmp, &fin).unwrap();
        assert!(fin.join("x").exists() && !tmp.exists());
        fs::remove_dir_all(&root).ok();
    }
}
