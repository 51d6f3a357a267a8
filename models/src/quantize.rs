//! On-the-fly quantization of a model's linears as transformers + bitsandbytes do it when
//! LLaMA-Factory passes a `BitsAndBytesConfig` (`quantization_bit: 4 | 8`): every linear of the
//! decoder layers (attention and MLP projections) becomes bitsandbytes' `Linear4bit` or
//! `Linear8bitLt`; the embedding, the norms and the output head stay in the compute dtype
//! (transformers leaves the output embedding out of the conversion).
//!
//! Each weight is read as f32, quantized and dropped before the next is read, so the whole
//! model never exists in f32 at once.
//!
//! Checkpoints saved quantized by bitsandbytes (`quantization_config.quant_method:
//! bitsandbytes` in config.json) are read as they are: [`load_bnb_linear`].

use crate::weights::Weights;
use crate::{Error, Result};
use lmf_autograd::ops::fused::QuantBase;
use lmf_autograd::{DType, Device};
use lmf_kernels::cpu::quant::{
    quantize_4bit, quantize_int8_rows, Absmax, FourBit, Int8Rows, Quant4,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

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

/// A checkpoint's own quantization (`config.json`'s `quantization_config`, as transformers
/// reads it): `None` for a plain checkpoint, the bitsandbytes settings for a bnb-saved one,
/// and an error naming the method for the formats lmf does not load yet.
pub fn checkpoint_quantization(dir: &Path) -> Result<Option<QuantSpec>> {
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None); // ModelConfig::from_dir reports the missing file
    };
    let Ok(value) = serde_json::from_str::<Value>(&text) else {
        return Ok(None);
    };
    let Some(q) = value.get("quantization_config") else {
        return Ok(None);
    };
    let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
    if method != "bitsandbytes" {
        return Err(Error::file(
            &path,
            format!(
                "quantization_config.quant_method `{method}` is not supported yet (lmf loads \
                 bitsandbytes-quantized checkpoints; GPTQ and AWQ are planned)"
            ),
        ));
    }
    let flag = |k: &str| q.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("load_in_8bit") {
        let threshold = q
            .get("llm_int8_threshold")
            .and_then(Value::as_f64)
            .unwrap_or(LLM_INT8_THRESHOLD as f64) as f32;
        return Ok(Some(QuantSpec::Eight { threshold }));
    }
    if flag("load_in_4bit") {
        let kind = match q.get("bnb_4bit_quant_type").and_then(Value::as_str) {
            Some("fp4") => FourBit::Fp4,
            _ => FourBit::Nf4,
        };
        return Ok(Some(QuantSpec::Four {
            kind,
            double_quant: flag("bnb_4bit_use_double_quant"),
        }));
    }
    Err(Error::file(
        &path,
        "quantization_config: bitsandbytes without load_in_4bit or load_in_8bit",
    ))
}

/// The saved bitsandbytes weight of linear `name` (`{name}.weight` + its quant state), when
/// the checkpoint holds one: 4-bit (`weight` packed codes in any storage dtype,
/// `weight.absmax`, `weight.quant_map`, `weight.quant_state.bitsandbytes__{nf4|fp4}` — a JSON
/// blob with shape, blocksize and the nested offset — and with double quantization
/// `weight.nested_absmax`, `weight.nested_quant_map`), or 8-bit (`weight` int8, `SCB`).
pub fn load_bnb_linear(
    w: &Weights,
    name: &str,
    out_f: usize,
    in_f: usize,
    threshold: f32,
) -> Result<Option<QuantBase>> {
    let wname = format!("{name}.weight");
    let file = || {
        w.path_of(&wname)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("weights"))
    };
    let bad = |msg: String| Error::file(file(), msg);
    let scb = format!("{name}.SCB");
    if w.contains(&scb) {
        let (dtype, shape, bytes) = w.raw(&wname)?;
        if dtype != "I8" || shape != [out_f, in_f] {
            return Err(bad(format!(
                "`{wname}`: an 8-bit bitsandbytes weight must be I8 [{out_f}, {in_f}], got \
                 {dtype} {shape:?}"
            )));
        }
        let q = bytes.iter().map(|&b| b as i8).collect();
        let absmax = w
            .load(&scb, &[out_f], DType::F32, Device::Cpu)?
            .to_vec::<f32>()?;
        return Ok(Some(QuantBase::Int8 {
            rows: Int8Rows {
                q,
                absmax,
                rows: out_f,
                cols: in_f,
            },
            threshold,
        }));
    }
    let absmax_name = format!("{wname}.absmax");
    if !w.contains(&absmax_name) {
        return Ok(None);
    }
    let (kind, state_name) = [(FourBit::Nf4, "nf4"), (FourBit::Fp4, "fp4")]
        .into_iter()
        .map(|(k, s)| (k, format!("{wname}.quant_state.bitsandbytes__{s}")))
        .find(|(_, n)| w.contains(n))
        .ok_or_else(|| bad(format!("`{wname}`: 4-bit weight without its quant_state")))?;
    let (_, _, blob) = w.raw(&state_name)?;
    let state: Value = serde_json::from_slice(blob).map_err(|e| {
        bad(format!(
            "`{state_name}`: not the JSON bitsandbytes writes: {e}"
        ))
    })?;
    let shape: Vec<usize> = state["shape"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64().map(|x| x as usize))
                .collect()
        })
        .unwrap_or_default();
    if shape != [out_f, in_f] {
        return Err(bad(format!(
            "`{state_name}`: shape {shape:?}, but config.json implies [{out_f}, {in_f}]"
        )));
    }
    let blocksize = state["blocksize"].as_u64().unwrap_or(64) as usize;
    let numel = out_f * in_f;
    let (_, _, bytes) = w.raw(&wname)?;
    if bytes.len() < numel.div_ceil(2) {
        return Err(bad(format!(
            "`{wname}`: {} bytes cannot hold {numel} 4-bit codes",
            bytes.len()
        )));
    }
    let packed = bytes[..numel.div_ceil(2)].to_vec();
    let blocks = numel.div_ceil(blocksize);
    let absmax = if w.contains(&format!("{wname}.nested_absmax")) {
        let (dtype, _, codes) = w.raw(&absmax_name)?;
        if dtype != "U8" || codes.len() != blocks {
            return Err(bad(format!(
                "`{absmax_name}`: double-quantized absmax must be {blocks} U8 codes"
            )));
        }
        let nested_blocksize = state["nested_blocksize"].as_u64().unwrap_or(256) as usize;
        let nested_absmax = w
            .get(&format!("{wname}.nested_absmax"), DType::F32, Device::Cpu)?
            .to_vec::<f32>()?;
        let nested_code = w
            .get(
                &format!("{wname}.nested_quant_map"),
                DType::F32,
                Device::Cpu,
            )?
            .to_vec::<f32>()?;
        if nested_code.len() != 256 || nested_absmax.len() != blocks.div_ceil(nested_blocksize) {
            return Err(bad(format!(
                "`{wname}`: nested quant state has the wrong size"
            )));
        }
        let offset = state["nested_offset"]
            .as_f64()
            .ok_or_else(|| bad(format!("`{state_name}`: no nested_offset")))?
            as f32;
        Absmax::Double {
            q: codes.to_vec(),
            nested_absmax,
            nested_code,
            offset,
            nested_blocksize,
        }
    } else {
        let a = w.load(&absmax_name, &[blocks], DType::F32, Device::Cpu)?;
        Absmax::Plain(a.to_vec::<f32>()?)
    };
    Ok(Some(QuantBase::Four(Quant4 {
        kind,
        blocksize,
        packed,
        absmax,
        shape,
    })))
}
