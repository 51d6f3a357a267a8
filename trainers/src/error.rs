//! The crate-level error: what the CLI prints as one line.

/// Result with the trainers [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a `lmf` command built on this crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad or unsupported arguments.
    #[error(transparent)]
    Args(#[from] crate::args::ArgsError),
    /// A template problem.
    #[error(transparent)]
    Template(#[from] crate::template::Error),
    /// A model, tokenizer or generation problem.
    #[error(transparent)]
    Model(#[from] lmf_models::Error),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Msg(String),
}

impl From<lmf_runtime::Error> for Error {
    fn from(e: lmf_runtime::Error) -> Self {
        Error::Model(e.into())
    }
}
