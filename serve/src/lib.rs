//! `lmf api`: LLaMA-Factory's OpenAI-compatible server (`llamafactory-cli api`) on lmf —
//! same inference YAML, same environment variables (`API_HOST`, `API_PORT`, `API_KEY`,
//! `API_MODEL_NAME`, `MAX_CONCURRENT`), same routes — with continuous batching: concurrent
//! requests decode together in one engine ([`engine`]) instead of one at a time, and each
//! still gets exactly the tokens it would get alone.

pub mod engine;
pub mod error;
pub mod protocol;
pub mod request;
pub mod routes;
pub mod state;
pub mod text;

use anyhow::{bail, Context};
use lmf_trainers::args::finetuning::Stage;
use lmf_trainers::args::{parse_infer_args, InferArgs};
use lmf_trainers::chat::{load_for_inference, ChatModel};
use lmf_trainers::train::ppo::reward::attach_value_head;
use state::{ChatServe, ScoreServe, Served, State};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Server settings from the environment (LLaMA-Factory's names and defaults; lmf's
/// `MAX_CONCURRENT` counts the sequences decoding together, default 16, where
/// LLaMA-Factory's counts requests and defaults to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiEnv {
    /// `API_HOST` (default `0.0.0.0`).
    pub host: String,
    /// `API_PORT` (default 8000; 0 picks a free port).
    pub port: u16,
    /// `API_KEY`.
    pub api_key: Option<String>,
    /// `API_MODEL_NAME` (default `gpt-3.5-turbo`).
    pub model_name: String,
    /// `MAX_CONCURRENT` (default 16).
    pub max_concurrent: usize,
}

impl ApiEnv {
    /// Reads the variables; a malformed number is an error naming the variable.
    pub fn from_env() -> anyhow::Result<ApiEnv> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let port = match var("API_PORT") {
            None => 8000,
            Some(p) => p
                .trim()
                .parse()
                .with_context(|| format!("API_PORT must be a port number (0-65535), got {p:?}"))?,
        };
        let max_concurrent = match var("MAX_CONCURRENT") {
            None => 16,
            Some(m) => match m.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => bail!("MAX_CONCURRENT must be a whole number >= 1, got {m:?}"),
            },
        };
        Ok(ApiEnv {
            host: var("API_HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port,
            api_key: var("API_KEY"),
            model_name: var("API_MODEL_NAME").unwrap_or_else(|| "gpt-3.5-turbo".into()),
            max_concurrent,
        })
    }
}

/// Loads what `args` names: a reward model (value head from the last adapter folder, else
/// the model folder) for `stage: rm`, else a generating model and its engine.
fn load(
    args: &InferArgs,
    env: &ApiEnv,
) -> anyhow::Result<(Served, Option<std::thread::JoinHandle<engine::EngineStats>>)> {
    if args.finetuning.stage == Stage::Rm {
        let (mut model, tokenizer, _) =
            load_for_inference(&args.model, &args.data, &args.finetuning)?;
        let name = args
            .model
            .model_name_or_path
            .as_deref()
            .context("`model_name_or_path` is required")?;
        let model_dir = args.model.resolve_dir(name)?;
        let head_dir = match args.model.adapters().last() {
            Some(a) => args.model.resolve_dir(a)?,
            None => model_dir.clone(),
        };
        attach_value_head(&mut model, &head_dir, &model_dir)?;
        let max_context = model.config.rope.max_position_embeddings;
        let served = Served::Score(Arc::new(ScoreServe {
            model: Mutex::new(model),
            tokenizer,
            max_context,
        }));
        return Ok((served, None));
    }
    if args.finetuning.stage != Stage::Sft {
        bail!(
            "lmf api serves `stage: sft` (chat completions) or `stage: rm` (score evaluation) models, got stage {:?}",
            args.finetuning.stage
        );
    }
    let chat = ChatModel::from_args(args)?;
    let max_context = chat.model.config.rope.max_position_embeddings;
    let (engine, thread) = engine::Engine::start(chat.model.clone(), env.max_concurrent);
    Ok((
        Served::Chat(Box::new(ChatServe {
            chat,
            engine,
            max_context,
        })),
        Some(thread),
    ))
}

/// `lmf api config.yaml [key=value ...]`: serves until Ctrl-C or SIGTERM, then stops taking
/// connections, lets the requests in flight finish, and exits.
pub fn run(argv: &[String]) -> anyhow::Result<()> {
    // every decode step's per-layer buffers reuse freed heap memory instead of faulting in
    // fresh mmaps (+16% output tokens/s on the 16-client api bench)
    lmf_runtime::malloc::keep_freed_memory();
    let args = parse_infer_args(argv)?;
    for note in &args.notes {
        eprintln!("note: {note}");
    }
    let env = ApiEnv::from_env()?;
    let (served, engine_thread) = load(&args, &env)?;
    let state = Arc::new(State {
        model_name: env.model_name.clone(),
        api_key: env.api_key.clone(),
        max_concurrent: env.max_concurrent,
        served,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async {
        let addr = format!("{}:{}", env.host, env.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (API_HOST / API_PORT)"))?;
        let local = listener.local_addr()?;
        // a closed stdout (the launcher stopped reading) must not take the server down
        let mut out = std::io::stdout();
        let _ = writeln!(out, "lmf api: listening on http://{local}");
        let _ = writeln!(out, "lmf api: serving `{}`", env.model_name);
        let _ = out.flush();
        axum::serve(listener, routes::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("the server failed")?;
        anyhow::Ok(())
    })?;
    // the router (and with it the engine handle) is gone: the engine drains and stops
    if let Some(t) = engine_thread {
        if let Ok(s) = t.join() {
            let _ = writeln!(
                std::io::stderr(),
                "lmf api: generated {} tokens for {} sequences; at most {} decoded together",
                s.tokens,
                s.sequences,
                s.peak_batch
            );
        }
    }
    let _ = writeln!(std::io::stderr(), "lmf api: stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    let _ = writeln!(
        std::io::stderr(),
        "lmf api: shutting down (finishing the requests in flight)"
    );
}
