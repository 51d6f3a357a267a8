//! The GPTQ checkpoint layout (AutoGPTQ's "gptq" format and GPTQModel's "gptq_v2", which
//! transformers loads), for one quantized linear `[out, in]` with `per = 32 / bits` codes per
//! int32 word:
//!
//! - `qweight: [in / per, out]` int32: word `(p, o)` holds the codes of inputs
//!   `p·per .. p·per + per` of output `o`, lowest bits first;
//! - `qzeros: [groups, out / per]` int32: the zero points (v2), or the zero points minus one
//!   (v1), packed along the outputs the same way;
//! - `scales: [groups, out]` f16;
//! - `g_idx: [in]` int32, the group of each input column.
//!
//! [`crate::quantize`] reads the same layout back.

use lmf_kernels::cpu::quant::group::pack_words;

use super::GptqLinear;

/// The four tensors of one GPTQ linear.
#[derive(Clone, Debug, PartialEq)]
pub struct GptqTensors {
    /// `[in / per, out]`.
    pub qweight: Vec<u32>,
    /// `[groups, out / per]`.
    pub qzeros: Vec<u32>,
    /// `[groups, out]`.
    pub scales: Vec<half::f16>,
    /// `[in]`.
    pub g_idx: Vec<i32>,
}

/// Packs `g` in the GPTQ layout, v1 (`zeros_minus_one`) or v2. Needs 2, 4 or 8 bits (whole
/// codes per word) and both dimensions multiples of `32 / bits`.
pub fn pack_gptq(g: &GptqLinear, zeros_minus_one: bool) -> Result<GptqTensors, String> {
    if ![2, 4, 8].contains(&g.bits) {
        return Err(format!(
            "{}-bit GPTQ packing is not supported (lmf writes 2, 4 and 8 bits)",
            g.bits
        ));
    }
    let per = (32 / g.bits) as usize;
    let (rows, cols) = (g.rows, g.cols);
    if !rows.is_multiple_of(per) || !cols.is_multiple_of(per) {
        return Err(format!(
            "[{rows}, {cols}] does not pack into {}-bit int32 words (both sizes must be \
             multiples of {per})",
            g.bits
        ));
    }
    // codes regrouped as [in / per, out, per]: the `per` inputs of one word side by side
    let mut fields = vec![0u8; rows * cols];
    for p in 0..cols / per {
        for o in 0..rows {
            for j in 0..per {
                fields[(p * rows + o) * per + j] = g.codes[o * cols + p * per + j];
            }
        }
    }
    let zeros: Vec<u8> = if zeros_minus_one {
        g.zeros.iter().map(|z| z.wrapping_sub(1)).collect()
    } else {
        g.zeros.clone()
    };
    Ok(GptqTensors {
        qweight: pack_words(&fields, g.bits),
        qzeros: pack_words(&zeros, g.bits),
        scales: g.scales.iter().map(|&s| half::f16::from_f32(s)).collect(),
        g_idx: g.g_idx.iter().map(|&x| x as i32).collect(),
    })
}
