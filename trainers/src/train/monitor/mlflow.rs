//! `report_to: mlflow`: transformers' `MLflowCallback` through MLflow's REST API (no Python).
//!
//! The server is `MLFLOW_TRACKING_URI` (an `http(s)://` URL: `mlflow server`, Databricks or any
//! tracking server). As transformers does: the experiment `MLFLOW_EXPERIMENT_NAME` (created when
//! missing; unset: the Default experiment `0`), or the run `MLFLOW_RUN_ID` to reattach to; the
//! run named `run_name` (unset: the server names it); tags from `MLFLOW_TAGS` (a JSON object);
//! as params the model's config merged with the training arguments (the arguments win), each
//! value as Python's `str()`, values over 6000 characters dropped, nested dicts flattened with
//! `MLFLOW_FLATTEN_PARAMS`, cut to `MLFLOW_MAX_LOG_PARAMS`, 100 per request; at each log record
//! its numbers as metrics at the global step (keys with characters MLflow refuses replaced by
//! `_`); at the end the run's status (`FINISHED`; lmf also says `KILLED` for a run stopped by
//! Ctrl-C and `FAILED` for one that failed).
//! lmf also uploads the loss plot and `trainer_log.jsonl` as the run's artifacts (through the
//! server's artifact proxy, `mlflow-artifacts:` URIs, or by copying into a local artifact
//! folder).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{Monitor, RunEnd, RunInfo};
use crate::template::pyjson::PyJson;

/// MLflow's `MAX_PARAM_VAL_LENGTH`.
const MAX_PARAM_VAL_LENGTH: usize = 6000;
/// MLflow's `MAX_PARAMS_TAGS_PER_BATCH`.
const MAX_PARAMS_PER_BATCH: usize = 100;
/// MLflow's `MAX_METRICS_PER_BATCH`.
const MAX_METRICS_PER_BATCH: usize = 1000;

/// transformers' `ENV_VARS_TRUE_VALUES`.
fn env_true(name: &str) -> bool {
    std::env::var(name)
        .is_ok_and(|v| matches!(v.to_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A metric key with the characters MLflow refuses replaced by `_` (transformers'
/// `re.sub(r"[^0-9A-Za-z_\-\.\ :/]", "_", k)`).
pub fn sanitize_metric_key(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-. :/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// transformers' `flatten_dict` (keys joined with `.`).
fn flatten(prefix: &str, v: &PyJson, out: &mut Vec<(String, PyJson)>) {
    match v {
        PyJson::Dict(items) => {
            for (k, v) in items {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// The params transformers logs: `{**model.config.to_dict(), **args.to_dict()}` (flattened with
/// `flat`), each as `str(value)`, the over-long ones dropped, cut to `max`.
pub fn run_params(
    model_config: Option<&PyJson>,
    args: &PyJson,
    flat: bool,
    max: Option<usize>,
) -> Vec<(String, String)> {
    let mut merged: Vec<(String, PyJson)> = vec![];
    let mut put = |k: &str, v: &PyJson| match merged.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v.clone(),
        None => merged.push((k.to_string(), v.clone())),
    };
    for d in model_config.into_iter().chain(std::iter::once(args)) {
        if let PyJson::Dict(items) = d {
            for (k, v) in items {
                put(k, v);
            }
        }
    }
    let items = if flat {
        let mut out = vec![];
        flatten("", &PyJson::Dict(merged), &mut out);
        out
    } else {
        merged
    };
    let mut params: Vec<(String, String)> = items
        .into_iter()
        .map(|(k, v)| (k, v.py_str()))
        .filter(|(_, s)| s.chars().count() <= MAX_PARAM_VAL_LENGTH)
        .collect();
    if let Some(m) = max {
        params.truncate(m);
    }
    params
}

/// The numbers of a log record as MLflow metrics (booleans count as numbers, as in Python).
pub fn record_metrics(logs: &[(String, PyJson)]) -> Vec<(String, f64)> {
    logs.iter()
        .filter_map(|(k, v)| {
            let x = match v {
                PyJson::Bool(b) => f64::from(u8::from(*b)),
                PyJson::Int(i) => *i as f64,
                PyJson::Float(f) => *f,
                _ => return None,
            };
            Some((sanitize_metric_key(k), x))
        })
        .collect()
}

/// How long one request to the tracking server may take: a server that does not answer costs
/// training at most this once (the monitor is then switched off).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The MLflow monitor.
#[derive(Debug)]
pub struct MlFlow {
    agent: ureq::Agent,
    uri: Option<String>,
    experiment_name: Option<String>,
    reattach_run: Option<String>,
    run_id: Option<String>,
    artifact_uri: Option<String>,
}

impl MlFlow {
    /// Reads transformers' environment variables.
    pub fn from_env() -> MlFlow {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build();
        MlFlow {
            agent: ureq::Agent::new_with_config(config),
            uri: var("MLFLOW_TRACKING_URI").map(|u| u.trim_end_matches('/').to_string()),
            experiment_name: var("MLFLOW_EXPERIMENT_NAME"),
            reattach_run: var("MLFLOW_RUN_ID"),
            run_id: None,
            artifact_uri: None,
        }
    }

    fn base(&self) -> Result<&str, String> {
        match self.uri.as_deref() {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(u),
            Some(u) => Err(format!(
                "MLFLOW_TRACKING_URI={u}: lmf talks to an MLflow tracking server over HTTP; \
                 start one (`mlflow server --backend-store-uri {u}`) and set \
                 MLFLOW_TRACKING_URI to its http:// URL"
            )),
            None => Err(
                "MLFLOW_TRACKING_URI is not set: lmf talks to an MLflow tracking server \
                 over HTTP; start one (`mlflow server`) and set MLFLOW_TRACKING_URI to its \
                 http:// URL"
                    .into(),
            ),
        }
    }

    /// One REST call: `method` `path` with a JSON body (POST) or a query (GET).
    fn call(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base()?);
        let mut resp = match method {
            "GET" => {
                let mut req = self.agent.get(&url);
                if let Some(obj) = body.as_object() {
                    for (k, v) in obj {
                        req = req.query(k, v.as_str().unwrap_or_default());
                    }
                }
                req.call()
            }
            _ => self.agent.post(&url).send_json(body),
        }
        .map_err(|e| format!("{url}: {e}"))?;
        resp.body_mut()
            .read_json::<Value>()
            .map_err(|e| format!("{url}: the reply is not JSON: {e}"))
    }

    /// The experiment id of `MLFLOW_EXPERIMENT_NAME` (created when missing), else `0`.
    fn experiment_id(&self) -> Result<String, String> {
        let Some(name) = &self.experiment_name else {
            return Ok("0".into());
        };
        let found = self.call(
            "GET",
            "experiments/get-by-name",
            &json!({ "experiment_name": name }),
        );
        if let Ok(v) = &found {
            if let Some(id) = v
                .pointer("/experiment/experiment_id")
                .and_then(Value::as_str)
            {
                return Ok(id.to_string());
            }
        }
        let created = self.call("POST", "experiments/create", &json!({ "name": name }))?;
        created
            .get("experiment_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("experiments/create answered {created}"))
    }

    fn run_id(&self) -> Result<&str, String> {
        self.run_id
            .as_deref()
            .ok_or_else(|| "no run was started".to_string())
    }

    fn log_batch(
        &self,
        metrics: Vec<Value>,
        params: Vec<Value>,
        tags: Vec<Value>,
    ) -> Result<(), String> {
        let run_id = self.run_id()?;
        self.call(
            "POST",
            "runs/log-batch",
            &json!({ "run_id": run_id, "metrics": metrics, "params": params, "tags": tags }),
        )?;
        Ok(())
    }

    /// Starts (or reattaches to) the run; returns its id and artifact URI.
    fn start_run(&mut self, run: &RunInfo) -> Result<(), String> {
        let info = if let Some(id) = self.reattach_run.clone() {
            let v = self.call(
                "POST",
                "runs/update",
                &json!({ "run_id": id, "status": "RUNNING" }),
            )?;
            v.get("run_info").cloned().unwrap_or_default()
        } else {
            let mut body = json!({
                "experiment_id": self.experiment_id()?,
                "start_time": now_ms(),
            });
            if !run.run_name.is_empty() {
                body["run_name"] = json!(run.run_name);
            }
            let v = self.call("POST", "runs/create", &body)?;
            v.pointer("/run/info").cloned().unwrap_or_default()
        };
        let id = info
            .get("run_id")
            .and_then(Value::as_str)
            .or(self.reattach_run.as_deref())
            .ok_or_else(|| format!("the server's run has no id: {info}"))?;
        self.run_id = Some(id.to_string());
        self.artifact_uri = info
            .get("artifact_uri")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(())
    }

    /// Uploads one file as an artifact at the run's root.
    fn upload(&self, file: &Path) -> Result<(), String> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: not a file name", file.display()))?;
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let uri = self.artifact_uri.as_deref().unwrap_or_default();
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts:/<path>` or `mlflow-artifacts://host/<path>`: the proxy's path.
            let path = match rest.strip_prefix("//") {
                Some(hosted) => hosted.split_once('/').map(|(_, p)| p).unwrap_or(""),
                None => rest.trim_start_matches('/'),
            };
            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{path}/{name}",
                self.base()?
            );
            self.agent
                .put(&url)
                .send(&bytes[..])
                .map_err(|e| format!("{url}: {e}"))?;
            return Ok(());
        }
        let local = uri.strip_prefix("file://").unwrap_or(uri);
        if local.starts_with('/') {
            let dir = PathBuf::from(local);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let dst = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &dst).map_err(|e| format!("{}: {e}", dst.display()))?;
            return Ok(());
        }
        Err(format!(
            "the run's artifact store `{uri}` is not one lmf can write (it writes through the \
             server's artifact proxy, `mlflow server` without --no-serve-artifacts, or into a \
             local folder)"
        ))
    }
}

impl Monitor for MlFlow {
    fn name(&self) -> &'static str {
        "mlflow"
    }

    fn on_train_begin(&mut self, run: &RunInfo) -> Result<(), String> {
        self.base()?;
        self.start_run(run)?;
        let args = PyJson::parse(&run.args.to_string()).map_err(|e| e.to_string())?;
        let config = match &run.model_config_json {
            Some(text) => Some(PyJson::parse(text).map_err(|e| format!("config.json: {e}"))?),
            None => None,
        };
        let max = std::env::var("MLFLOW_MAX_LOG_PARAMS")
            .ok()
            .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
            .and_then(|v| v.parse().ok());
        let params = run_params(
            config.as_ref(),
            &args,
            env_true("MLFLOW_FLATTEN_PARAMS"),
            max,
        );
        for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
            let params = chunk
                .iter()
                .map(|(k, v)| json!({ "key": k, "value": v }))
                .collect();
            self.log_batch(vec![], params, vec![])?;
        }
        if let Ok(tags) = std::env::var("MLFLOW_TAGS") {
            let tags: serde_json::Map<String, Value> = serde_json::from_str(&tags)
                .map_err(|e| format!("MLFLOW_TAGS is not a JSON object: {e}"))?;
            let tags = tags
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    json!({ "key": k, "value": v })
                })
                .collect();
            self.log_batch(vec![], vec![], tags)?;
        }
        Ok(())
    }

    fn on_log(
        &mut self,
        _run: &RunInfo,
        step: u64,
        logs: &[(String, PyJson)],
    ) -> Result<(), String> {
        let ts = now_ms();
        let metrics: Vec<Value> = record_metrics(logs)
            .into_iter()
            .map(|(k, v)| json!({ "key": k, "value": v, "timestamp": ts, "step": step }))
            .collect();
        for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
            self.log_batch(chunk.to_vec(), vec![], vec![])?;
        }
        Ok(())
    }

    fn log_artifacts(&mut self, _run: &RunInfo, files: &[PathBuf]) -> Result<(), String> {
        for f in files {
            self.upload(f)?;
        }
        Ok(())
    }

    fn on_train_end(&mut self, _run: &RunInfo, end: RunEnd) -> Result<(), String> {
        let run_id = self.run_id()?.to_string();
        let status = match end {
            RunEnd::Finished => "FINISHED",
            RunEnd::Stopped => "KILLED",
            RunEnd::Failed => "FAILED",
        };
        self.call(
            "POST",
            "runs/update",
            &json!({ "run_id": run_id, "status": status, "end_time": now_ms() }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_keys_keep_only_what_mlflow_accepts() {
        assert_eq!(sanitize_metric_key("eval_loss"), "eval_loss");
        assert_eq!(
            sanitize_metric_key("rewards/accuracies"),
            "rewards/accuracies"
        );
        assert_eq!(sanitize_metric_key("predict_bleu-4"), "predict_bleu-4");
        assert_eq!(sanitize_metric_key("a(b)é"), "a_b__");
    }

    #[test]
    fn params_merge_config_under_args_and_drop_long_values() {
        let cfg = PyJson::parse(
            r#"{"hidden_size": 64, "learning_rate": 9, "rope_scaling": {"type": "x"}}"#,
        )
        .unwrap();
        let long = "y".repeat(MAX_PARAM_VAL_LENGTH + 1);
        let args = PyJson::parse(&format!(
            r#"{{"learning_rate": 5e-05, "bf16": true, "run_name": null, "long": "{long}", "report_to": ["mlflow"]}}"#
        ))
        .unwrap();
        let p = run_params(Some(&cfg), &args, false, None);
        let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("hidden_size"), Some("64"));
        assert_eq!(get("learning_rate"), Some("5e-05"));
        assert_eq!(get("bf16"), Some("True"));
        assert_eq!(get("run_name"), Some("None"));
        assert_eq!(get("report_to"), Some("['mlflow']"));
        assert_eq!(get("rope_scaling"), Some("{'type': 'x'}"));
        assert_eq!(get("long"), None);
        let flat = run_params(Some(&cfg), &args, true, Some(3));
        assert_eq!(flat.len(), 3);
        assert_eq!(flat[2], ("rope_scaling.type".to_string(), "x".to_string()));
    }

    #[test]
    fn metrics_are_the_numbers_of_a_record() {
        let logs = vec![
            ("loss".to_string(), PyJson::Float(1.5)),
            ("epoch".to_string(), PyJson::Int(2)),
            ("note".to_string(), PyJson::Str("x".into())),
        ];
        assert_eq!(
            record_metrics(&logs),
            vec![("loss".into(), 1.5), ("epoch".into(), 2.0)]
        );
    }
}
