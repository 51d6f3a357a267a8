//! HF `Trainer.save_metrics`: `{split}_results.json` and the merged `all_results.json`
//! (`json.dumps(..., indent=4, sort_keys=True)`).

use std::path::Path;

use crate::template::pyjson::PyJson;
use crate::train::io::{read_json, write_json};
use crate::Result;

/// Writes `{split}_results.json` and merges the metrics into `all_results.json`.
pub fn save_metrics(dir: &Path, split: &str, metrics: &[(String, PyJson)]) -> Result<()> {
    std::fs::create_dir_all(dir).ok();
    let mine = PyJson::Dict(metrics.to_vec());
    write_json(&dir.join(format!("{split}_results.json")), &mine, 4, true)?;
    let all_path = dir.join("all_results.json");
    let mut all: Vec<(String, PyJson)> = match read_json(&all_path) {
        Ok(PyJson::Dict(d)) => d,
        _ => vec![],
    };
    for (k, v) in metrics {
        match all.iter_mut().find(|(ak, _)| ak == k) {
            Some(slot) => slot.1 = v.clone(),
            None => all.push((k.clone(), v.clone())),
        }
    }
    write_json(&all_path, &PyJson::Dict(all), 4, true)
}
