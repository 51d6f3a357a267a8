//! The `lmf` command line: LLaMA-Factory's commands (`train`, `chat`, `export`, `eval`,
//! `api`, `webui`, `env`, `version`) over the lmf crates, its `scripts/llama_pro.py` as
//! `lmf llama-pro`, plus lmf's own `init` and `templates`.

mod chat;
mod env;
mod init;

use clap::{Parser, Subcommand};

/// LLaMA-Factory rebuilt kernel-first in Rust.
#[derive(Parser)]
#[command(name = "lmf", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands, named as `llamafactory-cli` names them.
#[derive(Subcommand)]
enum Command {
    /// Train a model from a LLaMA-Factory YAML file (`lmf train config.yaml key=value ...`;
    /// `lmf train -h` lists every argument).
    #[command(disable_help_flag = true)]
    Train {
        /// YAML/JSON config file followed by `key=value` overrides (or `--key value` flags).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Chat with a model in the terminal (`lmf chat config.yaml` or `--key value` flags).
    Chat {
        /// YAML/JSON config file, `key=value` overrides and/or `--key value` flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Merge adapters and export a Hugging Face model folder.
    Export {
        /// YAML config file, `key=value` overrides and/or `--key value` flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Evaluate a model on an MMLU-style benchmark (`lmf eval config.yaml`: `task`, `task_dir`,
    /// `n_shot`, `lang`, `save_dir`, ...; LLaMA-Factory 0.9.3's protocol).
    Eval {
        /// YAML config file, `key=value` overrides and/or `--key value` flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Serve an OpenAI-compatible API with continuous batching (`lmf api config.yaml`; env
    /// API_HOST, API_PORT, API_KEY, API_MODEL_NAME, MAX_CONCURRENT).
    Api {
        /// YAML config file, `key=value` overrides and/or `--key value` flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Start the web UI.
    Webui,
    /// LLaMA Pro block expansion (LLaMA-Factory's `scripts/llama_pro.py`): insert `num_expand`
    /// zero-initialised copies of decoder blocks, then fine-tune with `use_llama_pro: true`.
    LlamaPro {
        /// The model folder to expand.
        #[arg(long = "model_name_or_path")]
        model_name_or_path: std::path::PathBuf,
        /// Where the expanded model goes.
        #[arg(long = "output_dir")]
        output_dir: std::path::PathBuf,
        /// Blocks to add (must divide the number of layers).
        #[arg(long = "num_expand")]
        num_expand: usize,
        /// Largest safetensors shard (transformers' size syntax).
        #[arg(long = "shard_size", default_value = "5GB")]
        shard_size: String,
    },
    /// Create a tiny random Llama model folder (offline quickstart; not in LLaMA-Factory).
    Init(init::InitArgs),
    /// List the chat template names that `template:` takes (LLaMA-Factory's registry); with
    /// names, print those templates as a template file (`template_file`) to start one from.
    Templates {
        /// Templates to print as a YAML template file (none: list every name).
        names: Vec<String>,
    },
    /// Print the environment: lmf version, platform, CPU features, devices.
    Env,
    /// Print the version.
    Version,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever RUST_BACKTRACE says: errors here are user-facing.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Makes this thread one of the global rayon pool's (`RAYON_NUM_THREADS` threads in all, this
/// one included), for the inference commands (`chat`, `eval`, `export`; `LMF_POOL_MAIN=0`
/// turns it off): a parallel op started here then runs partly on this thread while the other
/// workers steal the rest, instead of being handed to the pool and waited for. A decode step
/// starts ~100 small parallel products, and each hand-off cost two thread switches (about a
/// tenth of a batch-1 decode step on 2 cores).
///
/// Not for `train`: its thread-local kernel switches (`bf16_products`) must not reach the
/// tasks of a parallel op, and with this thread in the pool the tasks it runs itself would
/// see them (attention's tiles and the experts' products would turn bf16 on some tasks and
/// not others). Not for `api`/`webui` either: they compute on other threads, and the pool
/// would lose a worker.
fn compute_on_this_thread() {
    // Fails only if the pool already exists (nothing has used rayon yet here).
    let _ = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // A bad LMF_NOW fails every command up front instead of quietly using the system clock.
    lmf_trainers::clock::check_env().map_err(anyhow::Error::msg)?;
    // every command that computes: per-op buffers reuse freed heap memory (runtime::malloc)
    lmf_runtime::malloc::keep_freed_memory();
    if matches!(
        cli.command,
        Command::Chat { .. } | Command::Eval { .. } | Command::Export { .. }
    ) && std::env::var_os("LMF_POOL_MAIN").is_none_or(|v| v != "0")
    {
        compute_on_this_thread();
    }
    match cli.command {
        Command::Templates { names } if names.is_empty() => {
            for name in lmf_trainers::template::template_names() {
                println!("{name}");
            }
            Ok(())
        }
        Command::Templates { names } => {
            let templates = names
                .iter()
                .map(|n| lmf_trainers::template::get_template(n))
                .collect::<Result<Vec<_>, _>>()?;
            print!("{}", lmf_trainers::template::template_file_yaml(&templates));
            Ok(())
        }
        Command::Env => {
            print!("{}", env::report());
            Ok(())
        }
        Command::Version => {
            println!("lmf {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Init(a) => init::run(&a),
        Command::Train { args } => {
            if matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
                print!(
                    "usage: lmf train CONFIG.yaml [key=value ...] [--key value ...]\n\n\
                     Every LLaMA-Factory training argument, by group: flag, type, default, what \
                     lmf does with it, help.\n{}",
                    lmf_trainers::args::spec::help_text(&lmf_trainers::args::train::train_fields())
                );
                return Ok(());
            }
            lmf_trainers::train::run(&args)?;
            Ok(())
        }
        Command::Chat { args } => chat::run(&args),
        Command::Export { args } => {
            let parsed = lmf_trainers::args::parse_infer_args(&args)?;
            for note in &parsed.notes {
                eprintln!("note: {note}");
            }
            let dir = lmf_trainers::export::export_model(&parsed)?;
            eprintln!("exported the merged model to {}", dir.display());
            Ok(())
        }
        Command::Eval { args } => {
            let parsed = lmf_trainers::args::parse_eval_args(&args)?;
            for note in &parsed.notes {
                eprintln!("note: {note}");
            }
            lmf_trainers::eval::run_eval(&parsed)?;
            Ok(())
        }
        Command::Api { args } => lmf_serve::run(&args),
        Command::Webui => {
            anyhow::bail!("this command is not implemented yet")
        }
        Command::LlamaPro {
            model_name_or_path,
            output_dir,
            num_expand,
            shard_size,
        } => {
            let shard = lmf_trainers::llama_pro::parse_size(&shard_size)?;
            lmf_trainers::llama_pro::expand(&model_name_or_path, &output_dir, num_expand, shard)?;
            Ok(())
        }
    }
}
