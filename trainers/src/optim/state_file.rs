//! An optimizer's checkpoint files: `optimizer.safetensors` (flat f32 vectors by name: moments,
//! masters, projections) beside `optimizer.json` (everything else, serde). Shared by AdamW and
//! BAdam's ratio mode.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use super::adamw::{OPTIMIZER_JSON, OPTIMIZER_TENSORS};
use crate::{Error, Result};

/// `x` as little-endian bytes (a safetensors F32 payload).
pub fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{}: {e}", path.display()))
}

/// Writes `tensors` (each as a 1-D f32 tensor) and `meta` into `dir`.
pub fn write_state(
    dir: &Path,
    tensors: &BTreeMap<String, &[f32]>,
    meta: &impl Serialize,
) -> Result<()> {
    let bytes: Vec<(&String, Vec<u8>)> = tensors.iter().map(|(k, v)| (k, f32_bytes(v))).collect();
    let views = bytes
        .iter()
        .map(|(k, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![b.len() / 4], b)
                .map(|v| ((*k).clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Msg(format!("optimizer state: {e}")))?;
    let path = dir.join(OPTIMIZER_TENSORS);
    safetensors::tensor::serialize_to_file(views, None, &path).map_err(|e| io(&path, e))?;
    let text = serde_json::to_string_pretty(meta)
        .map_err(|e| Error::Msg(format!("optimizer state: {e}")))?;
    let path = dir.join(OPTIMIZER_JSON);
    std::fs::write(&path, text).map_err(|e| io(&path, e))
}

/// Reads `optimizer.json` of `dir` as `T`; `what` names the expected kind in the error.
pub fn read_meta<T: DeserializeOwned>(dir: &Path, what: &str) -> Result<T> {
    let path = dir.join(OPTIMIZER_JSON);
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| io(&path, format!("not {what} ({e})")))
}

/// The vectors of `optimizer.safetensors`.
pub struct StateTensors {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl StateTensors {
    /// Reads `optimizer.safetensors` of `dir`.
    pub fn read(dir: &Path) -> Result<StateTensors> {
        let path = dir.join(OPTIMIZER_TENSORS);
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| io(&path, e))?;
        Ok(StateTensors { path, bytes })
    }

    /// The f32 vector `key`, or `None` when absent (an error when not f32).
    pub fn get(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let st =
            safetensors::SafeTensors::deserialize(&self.bytes).map_err(|e| io(&self.path, e))?;
        match st.tensor(key) {
            Ok(t) if t.dtype() == safetensors::Dtype::F32 => Ok(Some(
                t.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )),
            Ok(_) => Err(io(&self.path, format!("`{key}` is not F32"))),
            Err(_) => Ok(None),
        }
    }

    /// [`StateTensors::get`] for a vector that must be there.
    pub fn need(&self, key: &str) -> Result<Vec<f32>> {
        self.get(key)?
            .ok_or_else(|| io(&self.path, format!("no `{key}`")))
    }
}
