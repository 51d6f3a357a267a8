//! The storage types a float kernel is instantiated for, and the suffix of its entry point
//! (`rmsnorm_fwd_bf16`, ...). Math is fp32 inside every kernel.

use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use half::{bf16, f16};

/// A float storage type with a kernel instantiation (`f32`, `bf16`, `f16`).
pub trait GpuFloat: DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + 'static {
    /// The entry-point suffix.
    const SUFFIX: &'static str;
    /// From f32 (round to nearest even).
    fn of_f32(v: f32) -> Self;
    /// To f32 (exact).
    fn to_f32(self) -> f32;
}

impl GpuFloat for f32 {
    const SUFFIX: &'static str = "f32";
    fn of_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl GpuFloat for bf16 {
    const SUFFIX: &'static str = "bf16";
    fn of_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

impl GpuFloat for f16 {
    const SUFFIX: &'static str = "f16";
    fn of_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// `base_suffix`, the entry point of kernel `base` for storage type `T`.
pub fn entry<T: GpuFloat>(base: &str) -> String {
    format!("{base}_{}", T::SUFFIX)
}
