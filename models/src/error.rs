//! Errors of the models crate. Every variant that comes from a file names the file, so the
//! CLI can print one line that tells the user what to fix.

use std::path::PathBuf;

/// Result with the models [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file was read but its content is wrong (bad JSON, bad safetensors, bad values).
    #[error("{}: {msg}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A required file is missing from a model folder.
    #[error("{}: not found ({what})", path.display())]
    Missing {
        /// The path that was looked for.
        path: PathBuf,
        /// What it was needed for.
        what: String,
    },
    /// A problem that is not tied to one file (bad argument, unsupported feature).
    #[error("{0}")]
    Msg(String),
    /// An error from the tensor runtime.
    #[error(transparent)]
    Runtime(#[from] lmf_runtime::Error),
}

impl Error {
    /// A content error in `path`.
    pub fn file(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            msg: msg.to_string(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A missing file.
    pub fn missing(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Missing {
            path: path.into(),
            what: what.into(),
        }
    }

    /// A plain message.
    pub fn msg(msg: impl std::fmt::Display) -> Self {
        Error::Msg(msg.to_string())
    }
}
