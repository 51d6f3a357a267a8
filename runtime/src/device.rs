//! Devices: where a tensor's storage lives.

use crate::error::Result;

/// Where a tensor lives: host memory or a CUDA device by ordinal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory; the reference backend.
    Cpu,
    /// The CUDA device with this ordinal (`CUDA_VISIBLE_DEVICES` applies).
    Cuda(usize),
}

impl Device {
    /// Whether this is the CPU.
    pub fn is_cpu(self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// Whether this is a CUDA device.
    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// Ok for the CPU and for a visible CUDA device; for CUDA otherwise `Err(Error::Cuda)`
    /// with the reason (`no CUDA device 0 (0 visible; ..)`, no driver, ..).
    pub fn check_available(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(n) => crate::cuda_storage::gpu(n).map(|_| ()),
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
