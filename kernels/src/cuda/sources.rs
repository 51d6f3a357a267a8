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
        "lmf_attention.cuh",
        include_str!("../../cuda/lmf_attention.cuh"),
    ),
    (
        "lmf_strided.cuh",
        include_str!("../../cuda/lmf_strided.cuh"),
    ),
];

kernel_source!(ADAMW, "adamw");
kernel_source!(ATTN_SINKS, "attn_sinks");
kernel_source!(CAST, "cast");
kernel_source!(DEQUANT, "dequant");
kernel_source!(ELEMENTWISE, "elementwise");
kernel_source!(EMBEDDING, "embedding");
kernel_source!(FLASH_ATTN_BWD, "flash_attn_bwd");
kernel_source!(FLASH_ATTN_FWD, "flash_attn_fwd");
kernel_source!(GLU, "glu");
kernel_source!(GROUPED_GEMM, "grouped_gemm");
kernel_source!(INDEX, "index");
kernel_source!(LINEAR_CE, "linear_ce");
kernel_source!(LORA, "lora");
kernel_source!(MXFP4, "mxfp4");
kernel_source!(RANDOM, "random");
kernel_source!(REDUCE, "reduce");
kernel_source!(RMSNORM, "rmsnorm");
kernel_source!(ROPE, "rope");
kernel_source!(SOFTMAX, "softmax");

/// Every kernel source (the CI compile check walks this list).
pub static ALL: &[&KernelSource] = &[
    &ADAMW,
    &ATTN_SINKS,
    &CAST,
    &DEQUANT,
    &ELEMENTWISE,
    &EMBEDDING,
    &FLASH_ATTN_BWD,
    &FLASH_ATTN_FWD,
    &GLU,
    &GROUPED_GEMM,
    &INDEX,
    &LINEAR_CE,
    &LORA,
    &MXFP4,
    &RANDOM,
    &REDUCE,
    &RMSNORM,
    &ROPE,
    &SOFTMAX,
];
