//! `report_to: tensorboard`: transformers' `TensorBoardCallback` written with lmf's own event
//! file writer ([`super::event_file`]).
//!
//! At the start of training: the training arguments as a text summary `args` and the model's
//! `config.json` as `model_config` (tags `args/text_summary`, `model_config/text_summary`, the
//! text plugin's form). At each log record: every number as a scalar at the global step, under
//! the tag `rewrite_logs` gives it (`eval_x` → `eval/x`, `test_x` → `test/x`, else `train/x`),
//! strings as text. (transformers 5 writes no hparams summaries; neither does lmf.)

use std::path::Path;

use prost::Message;

use super::event_file::EventFile;
use super::tb_proto::*;
use super::{Monitor, RunEnd, RunInfo};
use crate::template::pyjson::PyJson;

/// transformers' `rewrite_logs` for one key.
pub fn rewrite_key(k: &str) -> String {
    if let Some(rest) = k.strip_prefix("eval_") {
        format!("eval/{rest}")
    } else if let Some(rest) = k.strip_prefix("test_") {
        format!("test/{rest}")
    } else {
        format!("train/{k}")
    }
}

/// A scalar summary value.
fn scalar(tag: &str, v: f64) -> SummaryValue {
    SummaryValue {
        tag: tag.into(),
        metadata: None,
        value: Some(SummaryKind::SimpleValue(v as f32)),
    }
}

/// A text summary value (torch's `add_text`: tag `{tag}/text_summary`, a 1-element string
/// tensor, the text plugin's metadata).
fn text(tag: &str, s: &str) -> SummaryValue {
    SummaryValue {
        tag: format!("{tag}/text_summary"),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "text".into(),
                content: TextPluginData { version: 0 }.encode_to_vec(),
            }),
        }),
        value: Some(SummaryKind::Tensor(TensorProto {
            dtype: DT_STRING,
            tensor_shape: Some(TensorShapeProto {
                dim: vec![TensorShapeDim { size: 1 }],
            }),
            string_val: vec![s.as_bytes().to_vec()],
        })),
    }
}

/// The TensorBoard monitor: one event file under the logging folder, opened at the start of
/// training.
#[derive(Debug, Default)]
pub struct TensorBoard {
    file: Option<EventFile>,
}

impl TensorBoard {
    /// A monitor that opens its file at the start of training.
    pub fn new() -> TensorBoard {
        TensorBoard::default()
    }

    fn open(&mut self, dir: &Path) -> Result<&mut EventFile, String> {
        if self.file.is_none() {
            let f = EventFile::create(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    fn write(&mut self, dir: &Path, step: u64, value: Vec<SummaryValue>) -> Result<(), String> {
        let f = self.open(dir)?;
        f.write_summary(step as i64, Summary { value })
            .map_err(|e| format!("{}: {e}", f.path().display()))
    }
}

impl Monitor for TensorBoard {
    fn name(&self) -> &'static str {
        "tensorboard"
    }

    fn on_train_begin(&mut self, run: &RunInfo) -> Result<(), String> {
        let dir = run.logging_dir.clone();
        self.write(&dir, 0, vec![text("args", &run.args_json_text())])?;
        if let Some(cfg) = &run.model_config_json {
            self.write(&dir, 0, vec![text("model_config", cfg)])?;
        }
        Ok(())
    }

    fn on_log(
        &mut self,
        run: &RunInfo,
        step: u64,
        logs: &[(String, PyJson)],
    ) -> Result<(), String> {
        let mut values = vec![];
        for (k, v) in logs {
            let tag = rewrite_key(k);
            match v {
                PyJson::Bool(b) => values.push(scalar(&tag, f64::from(u8::from(*b)))),
                PyJson::Int(i) => values.push(scalar(&tag, *i as f64)),
                PyJson::Float(f) => values.push(scalar(&tag, *f)),
                PyJson::Str(s) => values.push(text(&tag, s)),
                _ => {}
            }
        }
        // One event per value, as torch's `add_scalar` writes them.
        for v in values {
            self.write(&run.logging_dir, step, vec![v])?;
        }
        Ok(())
    }

    fn on_train_end(&mut self, _run: &RunInfo, _end: RunEnd) -> Result<(), String> {
        self.file = None;
        Ok(())
    }
}
