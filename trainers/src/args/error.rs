//! Errors of argument parsing. Each one is a single line that names the key, where it came
//! from (a config file or the command line) and what to change.

use std::fmt;
use std::path::PathBuf;

/// Result with the args [`ArgsError`].
pub type Result<T, E = ArgsError> = std::result::Result<T, E>;

/// Where an argument was given: which config file, or the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `.yaml`/`.yml`/`.json` config file.
    File(PathBuf),
    /// `key=value` or `--key value` on the command line.
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::CommandLine => f.write_str("command line"),
        }
    }
}

/// What can go wrong reading LLaMA-Factory-style arguments.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// The config file could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The config file.
        path: PathBuf,
        /// The OS error (in the message, not chained: the CLI prints chains).
        error: std::io::Error,
    },
    /// The config file is not valid YAML/JSON, or not a mapping of keys to values.
    #[error("{}: {msg}", path.display())]
    File {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A command-line word that is neither `key=value` nor `--key [value]`.
    #[error("bad command-line argument `{arg}`: {msg}")]
    Syntax {
        /// The word as given.
        arg: String,
        /// What was expected.
        msg: String,
    },
    /// A key that no LLaMA-Factory argument group knows.
    #[error("unknown argument `{key}` (in {origin}){}", suggest(.closest))]
    UnknownKey {
        /// The key as given.
        key: String,
        /// Where it was given.
        origin: Origin,
        /// The known key closest to it, if any is close.
        closest: Option<String>,
    },
    /// A known LLaMA-Factory argument set to a value lmf does not support yet.
    #[error(
        "argument `{key}` (in {origin}) = {value} is not implemented yet in lmf; \
         leave it at LLaMA-Factory's default {default}"
    )]
    NotImplemented {
        /// The key.
        key: String,
        /// Where it was given.
        origin: Origin,
        /// The value given, as JSON.
        value: String,
        /// LLaMA-Factory's default, as JSON.
        default: String,
    },
    /// A value of the wrong type or outside the allowed choices.
    #[error("bad value for `{key}` (in {origin}): {value} is not {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// Where it was given.
        origin: Origin,
        /// The value given, as text.
        value: String,
        /// What the key takes.
        expected: String,
    },
    /// A field LLaMA-Factory derives itself (`init=False`): it cannot be given.
    #[error("argument `{key}` (in {origin}) is derived from other arguments; do not set it")]
    Derived {
        /// The key.
        key: String,
        /// Where it was given.
        origin: Origin,
    },
    /// Arguments that are each fine but break one of LLaMA-Factory's rules together.
    #[error("{0}")]
    Invalid(String),
}

fn suggest(closest: &Option<String>) -> String {
    match closest {
        Some(key) => format!("; did you mean `{key}`?"),
        None => String::new(),
    }
}
