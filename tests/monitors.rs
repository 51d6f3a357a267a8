//! `report_to` monitors, checked with the real tools from PyPI (the venv of
//! `ci/monitor-python-env.sh`: TensorBoard and MLflow):
//! - TensorBoard: TensorBoard's own `EventAccumulator` reads lmf's event files and finds every
//!   number of every log record (`trainer_state.json`'s `log_history`, the same records as
//!   `trainer_log.jsonl`) under transformers' tag, at its step, with its value;
//! - MLflow: a real `mlflow server`, and MLflow's Python client reading the run back (params,
//!   every metric at every step, the status, the artifacts);
//! - Weights & Biases and SwanLab, which lmf refuses naming the TensorBoard route: the route
//!   run offline by the real wandb and swanlab (`tests/monitors/route_check.py`) ingests every
//!   scalar of lmf's event files;
//! - a monitor that cannot be reached warns once and training goes on (no Python needed).

use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LMF: &str = env!("CARGO_BIN_EXE_lmf");
const TRAIN_FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf/train");
const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/monitors");
/// A LoRA sft run with evaluation every 2 steps (the case's YAML; 6 steps here).
const CASE: &str = "cases/plateau_llama/plateau_llama.yaml";

fn python() -> Option<String> {
    match std::env::var("LMF_MONITOR_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var("LMF_REQUIRE_MONITOR_PYTHON").as_deref() != Ok("1"),
                "LMF_REQUIRE_MONITOR_PYTHON=1 but LMF_MONITOR_PYTHON is not set (source ci/monitor-python-env.sh)"
            );
            eprintln!("skipped: LMF_MONITOR_PYTHON is not set (source ci/monitor-python-env.sh)");
            None
        }
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lmf-monitors-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `lmf train CASE output_dir=OUT max_steps=6 ...extra` with `envs`; returns stderr.
fn train(out: &Path, extra: &[String], envs: &[(&str, String)]) -> String {
    let res = Command::new(LMF)
        .current_dir(TRAIN_FIX)
        .arg("train")
        .arg(CASE)
        .arg(format!("output_dir={}", out.display()))
        .arg("max_steps=6")
        .args(extra)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("TENSORBOARD_LOGGING_DIR")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run lmf");
    let stderr = String::from_utf8_lossy(&res.stderr).to_string();
    assert!(res.status.success(), "lmf train failed:\n{stderr}");
    stderr
}

fn run_py(py: &str, args: &[&str]) -> Value {
    let res = Command::new(py).args(args).output().expect("run python");
    assert!(
        res.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    serde_json::from_slice(&res.stdout).expect("the script prints JSON")
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Every record the run logged: `trainer_state.json`'s `log_history` (saved after training),
/// then the final evaluation's (`eval_results.json`, logged at the last step).
fn log_history(out: &Path) -> Vec<Value> {
    let state = read(&out.join("trainer_state.json"));
    let mut recs = state["log_history"].as_array().unwrap().clone();
    let mut last = read(&out.join("eval_results.json"));
    last["step"] = state["global_step"].clone();
    recs.push(last);
    recs
}

/// transformers' `rewrite_logs` for one key.
fn tb_tag(k: &str) -> String {
    if let Some(r) = k.strip_prefix("eval_") {
        format!("eval/{r}")
    } else if let Some(r) = k.strip_prefix("test_") {
        format!("test/{r}")
    } else {
        format!("train/{k}")
    }
}

/// Every number of every record, by key, as `(step, value)`.
fn numbers_by_key(history: &[Value]) -> BTreeMap<String, Vec<(u64, f64)>> {
    let mut out: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for rec in history {
        let step = rec["step"].as_u64().unwrap();
        for (k, v) in rec.as_object().unwrap() {
            if k == "step" {
                continue;
            }
            let x = match v {
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::Number(n) => n.as_f64().unwrap(),
                _ => continue,
            };
            out.entry(k.clone()).or_default().push((step, x));
        }
    }
    out
}

/// A run with `report_to: tensorboard` into `<scratch>/tb`, and what TensorBoard's reader finds
/// there: (scratch, output_dir, logging_dir, reader JSON).
fn train_with_tensorboard(py: &str, tag: &str) -> (PathBuf, PathBuf, PathBuf, Value) {
    let dir = scratch(tag);
    let out = dir.join("out");
    let logdir = dir.join("tb");
    let log_arg = format!("logging_dir={}", logdir.display());
    train(&out, &["report_to=tensorboard".into(), log_arg], &[]);
    let reader = format!("{SCRIPTS}/read_tensorboard.py");
    let tb = run_py(py, &[&reader, logdir.to_str().unwrap()]);
    (dir, out, logdir, tb)
}

#[test]
fn tensorboard_reads_every_logged_number_at_its_step() {
    let Some(py) = python() else { return };
    let (dir, out, _logdir, tb) = train_with_tensorboard(&py, "tb");
    let files = tb["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "one event file: {files:?}");
    let history = log_history(&out);
    // The trainer log is the log history's training records, in order.
    let jsonl = std::fs::read_to_string(out.join("trainer_log.jsonl")).unwrap();
    let train_losses: Vec<f64> = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["loss"].as_f64())
        .collect();
    let expected = numbers_by_key(&history);
    assert_eq!(
        expected["loss"].iter().map(|p| p.1).collect::<Vec<_>>(),
        train_losses
    );
    let scalars = tb["scalars"].as_object().unwrap();
    let want_tags: Vec<String> = expected.keys().map(|k| tb_tag(k)).collect();
    let mut got_tags: Vec<String> = scalars.keys().cloned().collect();
    got_tags.sort();
    let mut want_sorted = want_tags.clone();
    want_sorted.sort();
    assert_eq!(got_tags, want_sorted, "the scalar tags");
    for (k, points) in &expected {
        let got = scalars[&tb_tag(k)].as_array().unwrap();
        assert_eq!(got.len(), points.len(), "{k}: {got:?} vs {points:?}");
        for ((step, v), g) in points.iter().zip(got) {
            assert_eq!(g[0].as_u64().unwrap(), *step, "{k} step");
            // TensorBoard scalars are float32 (compared as float32: serde_json's parse of
            // the reader's shortest double repr may be one double ulp off).
            assert_eq!(
                g[1].as_f64().unwrap() as f32,
                *v as f32,
                "{k} at step {step}"
            );
        }
    }
    for tag in [
        "train/loss",
        "train/learning_rate",
        "train/grad_norm",
        "eval/loss",
    ] {
        assert!(
            scalars.contains_key(tag),
            "{tag} is missing: {:?}",
            scalars.keys()
        );
    }
    // transformers' on_train_begin texts: the arguments and the model's config.
    let texts = tb["texts"].as_object().unwrap();
    let args: Value =
        serde_json::from_str(texts["args/text_summary"][0][1].as_str().unwrap()).unwrap();
    assert_eq!(args["learning_rate"], 0.005);
    assert_eq!(args["report_to"], "tensorboard");
    let config: Value =
        serde_json::from_str(texts["model_config/text_summary"][0][1].as_str().unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wandb_and_swanlab_ingest_lmf_event_files_through_their_tensorboard_routes() {
    let Some(py) = python() else { return };
    let (dir, _out, logdir, tb) = train_with_tensorboard(&py, "route");
    let work = dir.join("route");
    std::fs::create_dir_all(&work).unwrap();
    let routes = run_py(
        &py,
        &[
            &format!("{SCRIPTS}/route_check.py"),
            logdir.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    let ours = tb["scalars"].as_object().unwrap();
    assert!(ours.contains_key("train/loss"));
    for tool in ["wandb", "swanlab"] {
        let r = &routes[tool];
        assert_eq!(r["ok"], true, "{tool}: {r}");
        let theirs = r["scalars"].as_object().unwrap();
        let mut a: Vec<&String> = ours.keys().collect();
        let mut b: Vec<&String> = theirs.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{tool}: the tags");
        for (tag, points) in ours {
            // The values at each step, as float32. A tool keeps one value per step and tag
            // (wandb the last, swanlab the first): the final evaluation repeats the last
            // step, so there the tool's value is one of lmf's two.
            let by_step = |v: &Value| -> BTreeMap<u64, Vec<f32>> {
                let mut m: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
                for p in v.as_array().unwrap() {
                    let x = p[1].as_f64().unwrap() as f32;
                    m.entry(p[0].as_u64().unwrap()).or_default().push(x);
                }
                m
            };
            let (t, o) = (by_step(&theirs[tag]), by_step(points));
            assert_eq!(
                t.keys().collect::<Vec<_>>(),
                o.keys().collect::<Vec<_>>(),
                "{tool}: {tag}"
            );
            for (step, vals) in &t {
                let mine = &o[step];
                assert!(
                    vals.iter().all(|v| mine.contains(v)) && (mine.len() > 1 || vals == mine),
                    "{tool}: {tag} at step {step}: {vals:?} vs lmf's {mine:?}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tensorboard_defaults_to_transformers_folder_under_output_dir() {
    let dir = scratch("tbdefault");
    let out = dir.join("out");
    train(&out, &["report_to=[tensorboard]".into()], &[]);
    let runs: Vec<PathBuf> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let name = runs[0].file_name().unwrap().to_str().unwrap().to_string();
    // `%b%d_%H-%M-%S_{hostname}`, e.g. `Dec07_03-41-09_host`.
    let (stamp, host) = name.split_at(14);
    assert!(
        stamp.as_bytes()[5] == b'_' && stamp.as_bytes()[8] == b'-',
        "{name}"
    );
    assert!(host.starts_with('_') && host.len() > 1, "{name}");
    let events: Vec<_> = std::fs::read_dir(&runs[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(events.len(), 1);
    assert!(events[0].starts_with("events.out.tfevents."), "{events:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `mlflow server` child killed on drop.
/// A server started in a process group of its own (its pid is the group id), so that dropping
/// it also ends the workers it forked (`mlflow server` runs uvicorn and huey children).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_mlflow(py: &str, dir: &Path) -> (Server, String) {
    let port = free_port();
    let child = Command::new(py)
        .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .args(["--workers", "1"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("server.log")).unwrap(),
        ))
        .spawn()
        .expect("start mlflow server");
    let server = Server(child);
    let uri = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        if let Ok(mut r) = ureq_get(&format!("{uri}/health")) {
            if r.contains("OK") {
                break;
            }
            r.clear();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "mlflow server did not start: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    (server, uri)
}

/// A plain HTTP GET (the server's health check) over a TCP socket.
fn ureq_get(url: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn mlflow_server_gets_params_metrics_status_and_artifacts() {
    let Some(py) = python() else { return };
    let dir = scratch("mlflow");
    let (_server, uri) = start_mlflow(&py, &dir);
    let out = dir.join("out");
    let stderr = train(
        &out,
        &[
            "report_to=mlflow".into(),
            "run_name=lmf-run".into(),
            "plot_loss=true".into(),
        ],
        &[
            ("MLFLOW_TRACKING_URI", uri.clone()),
            ("MLFLOW_EXPERIMENT_NAME", "lmf-monitors".into()),
            ("MLFLOW_TAGS", r#"{"team": "lmf"}"#.into()),
        ],
    );
    assert!(!stderr.contains("warning: report_to"), "{stderr}");
    let dl = dir.join("download");
    std::fs::create_dir_all(&dl).unwrap();
    let got = run_py(
        &py,
        &[
            &format!("{SCRIPTS}/mlflow_read.py"),
            &uri,
            "lmf-monitors",
            dl.to_str().unwrap(),
        ],
    );
    let runs = got["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{got}");
    let run = &runs[0];
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["run_name"], "lmf-run");
    assert_eq!(run["tags"]["team"], "lmf");
    // Params: the training arguments over the model's config, as Python's str().
    let params = &run["params"];
    assert_eq!(params["learning_rate"], "0.005");
    assert_eq!(params["max_steps"], "6");
    assert_eq!(params["disable_tqdm"], "None");
    assert_eq!(params["model_type"], "llama");
    // Metrics: every number of every record, at its step, exactly.
    let expected = numbers_by_key(&log_history(&out));
    let metrics = run["metrics"].as_object().unwrap();
    let mut keys: Vec<&String> = metrics.keys().collect();
    keys.sort();
    assert_eq!(keys, expected.keys().collect::<Vec<_>>());
    for (k, points) in &expected {
        let got: Vec<(u64, f64)> = metrics[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        let mut want = points.clone();
        want.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(got, want, "{k}");
    }
    // Artifacts: the loss plots and the trainer log, byte for byte the size of lmf's files.
    let arts: Vec<&str> = run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for name in [
        "training_loss.png",
        "training_eval_loss.png",
        "trainer_log.jsonl",
    ] {
        assert!(arts.contains(&name), "{name} not in {arts:?}");
        let local = std::fs::metadata(out.join(name)).unwrap().len();
        assert_eq!(run["artifact_bytes"][name].as_u64(), Some(local), "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_monitor_warns_once_and_training_goes_on() {
    let dir = scratch("down");
    let out = dir.join("out");
    // A file where the log folder should be, and a tracking server that is not there.
    let blocked = dir.join("not-a-folder");
    std::fs::write(&blocked, "x").unwrap();
    let stderr = train(
        &out,
        &[
            "report_to=[tensorboard,mlflow]".into(),
            format!("logging_dir={}", blocked.join("tb").display()),
        ],
        &[(
            "MLFLOW_TRACKING_URI",
            format!("http://127.0.0.1:{}", free_port()),
        )],
    );
    for name in ["tensorboard", "mlflow"] {
        let n = stderr
            .matches(&format!("warning: report_to {name}:"))
            .count();
        assert_eq!(n, 1, "{name} warned {n} times:\n{stderr}");
    }
    assert_eq!(read(&out.join("trainer_state.json"))["global_step"], 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wandb_and_swanlab_are_refused_naming_the_tensorboard_route() {
    let dir = scratch("refuse");
    for (name, route) in [
        ("wandb", "wandb.init(sync_tensorboard=True)"),
        ("swanlab", "swanlab convert -t tensorboard --tb-log-dir"),
    ] {
        let res = Command::new(LMF)
            .current_dir(TRAIN_FIX)
            .arg("train")
            .arg(CASE)
            .arg(format!("output_dir={}", dir.join(name).display()))
            .arg(format!("report_to={name}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success());
        assert!(stderr.contains(route), "{name}: {stderr}");
        assert!(
            !dir.join(name).exists(),
            "nothing is written before the refusal"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
