//! `training_loss.png` (and `training_eval_loss.png`, ...): LLaMA-Factory's `plot_loss`, drawn
//! with plotters. Placeholder until the plot lands: writes nothing.

use std::path::Path;

use crate::template::pyjson::PyJson;
use crate::Result;

/// Draws one PNG per key found in the log history.
pub fn plot_loss(_dir: &Path, _history: &[PyJson], _keys: &[String]) -> Result<()> {
    Ok(())
}
