//! On-the-fly quantization of a model's linears as transformers + bitsandbytes do it when
//! LLaMA-Factory passes a `BitsAndBytesConfig` (`quantization_bit: 4 | 8`): every linear of the
//! decoder layers (attention and MLP projections) becomes bitsandbytes' `Linear4bit` or
//! `Linear8bitLt`; the embedding, the norms and the output head stay in the compute dtype
//! (transformers leaves the output embedding out of the conversion).
//!
//! Each weight is read as f32, quantized and dropped before the next is read, so the whole
//! model never exists in f32 at once.

use lmf_autograd::ops::fused::QuantBase;
use lmf_kernels::cpu::quant::{quantize_4bit, quantize_int8_rows, FourBit};

/// bitsandbytes' 4-bit blocksize (transformers' `Linear4bit` default).
pub const BLOCKSIZE_4BIT: usize = 64;
/// `BitsAndBytesConfig.llm_int8_threshold`'s default.
pub const LLM_INT8_THRESHOLD: f32 = 6.0;

/// How to quantize (LLaMA-Factory's quantization arguments, method bnb).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QuantSpec {
    /// `quantization_bit: 4`: `quantization_type` nf4/fp4, `double_quantization`.
    Four {
        /// NF4 or FP4.
        kind: FourBit,
        /// Quantize the absmax again (bnb `compress_statistics`).
        double_quant: bool,
    },
    /// `quantization_bit: 8`: LLM.int8 with its outlier threshold.
    Eight {
        /// `llm_int8_threshold`.
        threshold: f32,
    },
}

impl QuantSpec {
    /// The bits per weight (4 or 8).
    pub fn bits(&self) -> u32 {
        match self {
            QuantSpec::Four { .. } => 4,
            QuantSpec::Eight { .. } => 8,
        }
    }

    /// Quantizes one weight `w: [out, in]` (f32).
    pub fn quantize(&self, w: &[f32], out_f: usize, in_f: usize) -> QuantBase {
        match *self {
            QuantSpec::Four { kind, double_quant } => QuantBase::Four(quantize_4bit(
                w,
                &[out_f, in_f],
                kind,
                BLOCKSIZE_4BIT,
                double_quant,
            )),
            QuantSpec::Eight { threshold } => QuantBase::Int8 {
                rows: quantize_int8_rows(w, out_f, in_f),
                threshold,
            },
        }
    }
}
