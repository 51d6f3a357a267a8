//! Errors of the CUDA backend: a missing driver or device is an ordinary `Err`, never a panic.

/// What can go wrong finding, compiling for or running on a CUDA device.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// No CUDA driver library (libcuda) on this machine.
    #[error("no CUDA driver found (libcuda is not installed or not on the library path)")]
    NoDriver,
    /// The driver is there but the ordinal names no visible device.
    #[error("no CUDA device {ordinal} ({count} visible; CUDA_VISIBLE_DEVICES is honoured)")]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many devices the driver sees.
        count: usize,
    },
    /// NVRTC (libnvrtc) is missing.
    #[error("NVRTC not found: put the CUDA toolkit's lib folder (or the nvidia-cuda-nvrtc wheel's nvidia/cu13/lib) on LD_LIBRARY_PATH")]
    NoNvrtc,
    /// A kernel source did not compile; `log` is NVRTC's full log.
    #[error("NVRTC could not compile {name}.cu for {arch}:\n{log}")]
    Compile {
        /// The kernel source name.
        name: String,
        /// The target, e.g. `sm_90a`.
        arch: String,
        /// NVRTC's log.
        log: String,
    },
    /// A driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// A cuBLAS/cuBLASLt call failed.
    #[error("cuBLAS: {0}")]
    Blas(String),
    /// Arguments of a launcher disagree (names the kernel and the sizes).
    #[error("{op}: {msg}")]
    Shape {
        /// The kernel.
        op: &'static str,
        /// What disagreed.
        msg: String,
    },
    /// Reading or writing the kernel cache.
    #[error("kernel cache {path}: {err}")]
    Cache {
        /// The file.
        path: String,
        /// The I/O error.
        err: std::io::Error,
    },
}

impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        CudaError::Driver(e.to_string())
    }
}

impl From<cudarc::cublaslt::result::CublasError> for CudaError {
    fn from(e: cudarc::cublaslt::result::CublasError) -> Self {
        CudaError::Blas(format!("{e:?}"))
    }
}

impl CudaError {
    /// A shape error for `op`.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        CudaError::Shape {
            op,
            msg: msg.into(),
        }
    }
}

/// Results of the CUDA backend.
pub type CudaResult<T> = std::result::Result<T, CudaError>;

/// Fails with a shape error naming `op` unless `cond`.
pub fn ensure(cond: bool, op: &'static str, msg: impl FnOnce() -> String) -> CudaResult<()> {
    if cond {
        Ok(())
    } else {
        Err(CudaError::shape(op, msg()))
    }
}
