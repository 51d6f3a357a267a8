//! The CUDA kernel sources, embedded in the binary: NVRTC compiles them at first use for the
//! device's arch. `ALL` lists every one, for the CI compile check.

/// One `.cu` file of `kernels/cuda/`.
#[derive(Debug)]
pub struct KernelSource {
    /// The file stem (also the module's cache key).
    pub name: &'static str,
    /// The source text.
    pub code: &'static str,
}

macro_rules! kernel_source {
    ($id:ident, $name:literal) => {
        #[doc = concat!("`kernels/cuda/", $name, ".cu`.")]
        pub static $id: KernelSource = KernelSource {
            name: $name,
            code: include_str!(concat!("../../cuda/", $name, ".cu")),
        };
    };
}

/// Shared headers, handed to NVRTC in memory under these include names.
pub static HEADERS: &[(&str, &str)] = &[
    ("lmf_common.cuh", include_str!("../../cuda/lmf_common.cuh")),
    ("lmf_philox.cuh", include_str!("../../cuda/lmf_philox.cuh")),
    (
        "lmf_strided.cuh",
        include_str!("../../cuda/lmf_strided.cuh"),
    ),
];

kernel_source!(CAST, "cast");
kernel_source!(ELEMENTWISE, "elementwise");
kernel_source!(INDEX, "index");
kernel_source!(RANDOM, "random");
kernel_source!(REDUCE, "reduce");
kernel_source!(RMSNORM, "rmsnorm");
kernel_source!(SOFTMAX, "softmax");

/// Every kernel source (the CI compile check walks this list).
pub static ALL: &[&KernelSource] = &[
    &CAST,
    &ELEMENTWISE,
    &INDEX,
    &RANDOM,
    &REDUCE,
    &RMSNORM,
    &SOFTMAX,
];
