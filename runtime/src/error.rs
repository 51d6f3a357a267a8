//! The runtime's error type: every user-facing failure is one clear line naming the op.

/// A runtime error; the message names the op and the offending shapes/dtypes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Shapes that do not fit the op (mismatch, bad dim, bad element count).
    #[error("{op}: shape error: {msg}")]
    Shape {
        /// The op that failed.
        op: &'static str,
        /// What was expected and what was given.
        msg: String,
    },
    /// A dtype the op does not accept, or operands of different dtypes.
    #[error("{op}: dtype error: {msg}")]
    DType {
        /// The op that failed.
        op: &'static str,
        /// What was expected and what was given.
        msg: String,
    },
    /// Operands on different devices, or a device the op cannot use.
    #[error("{op}: device error: {msg}")]
    Device {
        /// The op that failed.
        op: &'static str,
        /// What was expected and what was given.
        msg: String,
    },
    /// The CUDA backend failed: no driver or device, a kernel that did not compile or launch,
    /// or an op not (yet) available on CUDA. The message says which.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// An index (token id, row id) out of range.
    #[error("{op}: index error: {msg}")]
    Index {
        /// The op that failed.
        op: &'static str,
        /// The bad index and the valid range.
        msg: String,
    },
    /// Any other bad argument (probability outside [0, 1], empty list, ..).
    #[error("{op}: invalid argument: {msg}")]
    Invalid {
        /// The op that failed.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
}

impl Error {
    /// A shape error for `op`.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Error {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    /// A dtype error for `op`.
    pub fn dtype(op: &'static str, msg: impl Into<String>) -> Error {
        Error::DType {
            op,
            msg: msg.into(),
        }
    }
    /// A device error for `op`.
    pub fn device(op: &'static str, msg: impl Into<String>) -> Error {
        Error::Device {
            op,
            msg: msg.into(),
        }
    }
    /// An index error for `op`.
    pub fn index(op: &'static str, msg: impl Into<String>) -> Error {
        Error::Index {
            op,
            msg: msg.into(),
        }
    }
    /// An op (or dtype) the CUDA backend does not run yet.
    pub fn cuda_unsupported(op: &str, what: impl std::fmt::Display) -> Error {
        Error::Cuda(format!("not implemented on CUDA yet: {op} ({what})"))
    }
    /// An invalid-argument error for `op`.
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Error {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
}

/// The runtime's result type.
pub type Result<T> = std::result::Result<T, Error>;
