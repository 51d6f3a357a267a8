//! Devices: where a tensor's storage lives.

use crate::error::{Error, Result};

/// Where a tensor lives: host memory or a CUDA device by ordinal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory; the reference backend.
    Cpu,
    /// The CUDA device with this ordinal (not built yet: every use returns `CudaNotBuilt`).
    Cuda(usize),
}

impl Device {
    /// Whether this is the CPU.
    pub fn is_cpu(self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// Ok for devices this build can allocate on; `Err(CudaNotBuilt)` for CUDA.
    pub fn check_available(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(_) => Err(Error::CudaNotBuilt),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}
