//! bitsandbytes-compatible weight quantization on CPU: NF4/FP4 blockwise 4-bit (with
//! optional double quantization of the absmax), LLM.int8 row-wise int8, and the
//! dequant-matmul twin of the GPU kernels; plus GPT-OSS's MXFP4 expert stacks and their
//! grouped dequant-matmul ([`mxfp4`]).
//!
//! Layouts follow bitsandbytes exactly (packed nibbles, per-block absmax, the nested 8-bit
//! absmax with its own code, offset and absmax), so loading a bnb-quantized checkpoint is a
//! copy of its tensors.

pub mod blockwise8;
pub mod codes;
pub mod four_bit;
pub mod group;
pub mod int8;
pub mod llm_int8;
pub mod matmul;
pub mod mxfp4;
pub mod torch_mean;

pub use blockwise8::{dequantize_blockwise_8bit, quantize_blockwise_8bit};
pub use codes::{dynamic_map_signed, FP4_CODE, NF4_CODE};
pub use four_bit::{dequantize_4bit, quantize_4bit, Absmax, FourBit, Quant4};
pub use group::GroupQuant;
pub use int8::{dequantize_int8_rows, quantize_int8_rows, round_f16, Int8Rows};
pub use llm_int8::llm_int8_matmul;
pub use matmul::{dequant_matmul, dequant_matmul_t, QuantMatrix};
pub use mxfp4::{
    grouped_dequant_matmul, grouped_dequant_matmul_t, Mxfp4Experts, Mxfp4Matrix, FP4_VALUES,
};
