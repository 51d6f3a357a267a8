//! Checkpoint folders: finding them (`get_last_checkpoint`), rotating them
//! (`save_total_limit`), and LLaMA-Factory's choice of what to resume from.

use std::fs;
use std::path::{Path, PathBuf};

use crate::train::io::{io_err, remove_dir_safely};
use crate::train::state::TRAINER_STATE_NAME;
use crate::{Error, Result};

/// HF `PREFIX_CHECKPOINT_DIR`.
pub const CHECKPOINT_PREFIX: &str = "checkpoint";

/// Files whose presence marks an output folder as holding a model (LF `CHECKPOINT_NAMES`).
pub const CHECKPOINT_NAMES: [&str; 6] = [
    "adapter_model.bin",
    "adapter_model.safetensors",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

/// `checkpoint-N` folders of `dir` with their step, sorted by step. Only complete checkpoints
/// count: folders are renamed into place whole, and one without `trainer_state.json` is not
/// ours to trust.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(out);
    };
    for entry in entries {
        let p = entry.map_err(|e| io_err(dir, e))?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(num) = name.strip_prefix(&format!("{CHECKPOINT_PREFIX}-")) else {
            continue;
        };
        if let Ok(step) = num.parse::<u64>() {
            if p.is_dir() && num.bytes().all(|b| b.is_ascii_digit()) {
                out.push((step, p));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// HF `get_last_checkpoint`: the complete checkpoint with the largest step.
pub fn get_last_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(dir)?
        .into_iter()
        .rfind(|(_, p)| p.join(TRAINER_STATE_NAME).is_file())
        .map(|(_, p)| p))
}

/// HF `rotate_checkpoints`: deletes the oldest checkpoints beyond `limit`, always keeping the
/// most recent (ordered by step, HF's fallback when mtimes are too close to tell apart).
pub fn rotate_checkpoints(dir: &Path, limit: Option<i64>, best: Option<&Path>) -> Result<()> {
    let Some(limit) = limit.filter(|&l| l > 0) else {
        return Ok(());
    };
    let ckpts = list_checkpoints(dir)?;
    let keep = (limit as usize).max(1);
    if ckpts.len() <= keep {
        return Ok(());
    }
    // transformers: the most recent and the best checkpoint are never deleted
    let is_best = |p: &Path| best.is_some_and(|b| same_dir(b, p));
    let protected = 1 + ckpts[..ckpts.len() - 1]
        .iter()
        .filter(|(_, p)| is_best(p))
        .count();
    let keep = keep.max(protected);
    let mut remaining = ckpts.len();
    for (_, p) in &ckpts[..ckpts.len() - 1] {
        if remaining <= keep {
            break;
        }
        if !is_best(p) {
            remove_dir_safely(p)?;
            remaining -= 1;
        }
    }
    Ok(())
}

/// Whether two paths name the same folder (as `os.path.samefile`, falling back to the names).
pub fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// LLaMA-Factory `get_train_args`' resume rule: with `do_train`, no explicit checkpoint, an
/// existing `output_dir` and no `overwrite_output_dir`, resume from its last checkpoint; refuse
/// a folder that holds a model but no checkpoint.
pub fn auto_resume(
    output_dir: &Path,
    explicit: Option<&Path>,
    do_train: bool,
    overwrite_output_dir: bool,
) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        if !p.join(TRAINER_STATE_NAME).is_file() {
            return Err(Error::Msg(format!(
                "resume_from_checkpoint: {} is not a complete checkpoint (no {TRAINER_STATE_NAME})",
                p.display()
            )));
        }
        return Ok(Some(p.to_path_buf()));
    }
    if !do_train || !output_dir.is_dir() || overwrite_output_dir {
        return Ok(None);
    }
    let last = get_last_checkpoint(output_dir)?;
    if last.is_none()
        && CHECKPOINT_NAMES
            .iter()
            .any(|n| output_dir.join(n).is_file())
    {
        return Err(Error::Msg(
            "Output directory already exists and is not empty. Please set `overwrite_output_dir`."
                .into(),
        ));
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_checkpoint_rotation_and_auto_resume() {
        let d = std::env::temp_dir().join(format!("lmf-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        for s in [2, 10, 4] {
            let c = d.join(format!("checkpoint-{s}"));
            fs::create_dir_all(&c).unwrap();
            fs::write(c.join(TRAINER_STATE_NAME), "{}").unwrap();
        }
        // A half-written checkpoint (no state) and a temp folder are never picked.
        fs::create_dir_all(d.join("checkpoint-12")).unwrap();
        fs::create_dir_all(d.join(".tmp-checkpoint-14")).unwrap();
        assert_eq!(
            get_last_checkpoint(&d).unwrap(),
            Some(d.join("checkpoint-10"))
        );
        assert_eq!(
            auto_resume(&d, None, true, false).unwrap(),
            Some(d.join("checkpoint-10"))
        );
        assert_eq!(auto_resume(&d, None, true, true).unwrap(), None);
        assert!(auto_resume(&d, Some(&d.join("checkpoint-12")), true, false).is_err());
        rotate_checkpoints(&d, Some(2), None).unwrap();
        let left: Vec<u64> = list_checkpoints(&d)
            .unwrap()
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(left, vec![10, 12]);
        let e = tempfile_like(&d.join("out"));
        fs::write(e.join("model.safetensors"), "x").unwrap();
        assert!(auto_resume(&e, None, true, false)
            .unwrap_err()
            .to_string()
            .contains("overwrite_output_dir"));
        fs::remove_dir_all(&d).ok();
    }

    fn tempfile_like(p: &Path) -> PathBuf {
        fs::create_dir_all(p).unwrap();
        p.to_path_buf()
    }
}
