//! On-the-fly quantization of a model's linears as transformers + bitsandbytes do it when
//! LLaMA-Factory passes a `BitsAndBytesConfig` (`quantization_bit: 4 | 8`): every linear of the
//! decoder layers (attention and MLP projections) becomes bitsandbytes' `Linear4bit` or
//! `Linear8bitLt`; the embedding, the norms and the output head stay in the compute dtype
//! (transformers leaves the output embedding out of the conversion).
//!
//! Each weight is read as f32, quantized and dropped before the next is read, so the whole
//! model never exists in f32 at once.
//!
//! Checkpoints saved quantized (`quantization_config` in config.json: bitsandbytes, GPTQ,
//! AWQ) are read as they are: [`checkpoint_quantization`], [`load_saved_linear`]. GPT-OSS's
//! MXFP4 experts are dequantized on load, unless [`QuantSpec::Mxfp4Experts`] keeps them.

use crate::weights::Weights;
use crate::{Error, Result};
use lmf_autograd::ops::fused::QuantBase;
use lmf_autograd::{DType, Device};
use lmf_kernels::cpu::quant::group::{unpack_awq, unpack_words, WeightRound};
use lmf_kernels::cpu::quant::{
    quantize_4bit, quantize_int8_rows, Absmax, FourBit, GroupQuant, Int8Rows, Quant4,
};
use safetensors::Dtype;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// bitsandbytes' 4-bit blocksize (transformers' `Linear4bit` default).
pub const BLOCKSIZE_4BIT: usize = 64;
/// `BitsAndBytesConfig.llm_int8_threshold`'s default.
pub const LLM_INT8_THRESHOLD: f32 = 6.0;

/// How to quantize (LLaMA-Factory's quantization arguments: method bnb, or mxfp4).
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
    /// `quantization_bit: 4` with `quantization_method: mxfp4` on an MXFP4 GPT-OSS
    /// checkpoint: its MoE experts stay MXFP4 (frozen, grouped dequant-matmul) instead of
    /// being dequantized; every linear stays dense.
    Mxfp4Experts,
}

impl QuantSpec {
    /// The bits per weight (4 or 8).
    pub fn bits(&self) -> u32 {
        match self {
            QuantSpec::Four { .. } | QuantSpec::Mxfp4Experts => 4,
            QuantSpec::Eight { .. } => 8,
        }
    }

    /// Whether the decoder linears are quantized (bitsandbytes), not only MoE experts kept.
    pub fn quantizes_linears(&self) -> bool {
        !matches!(self, QuantSpec::Mxfp4Experts)
    }

    /// Quantizes one weight `w: [out, in]` (f32); `None` when this spec leaves linears dense
    /// ([`QuantSpec::Mxfp4Experts`]).
    pub fn quantize(&self, w: &[f32], out_f: usize, in_f: usize) -> Option<QuantBase> {
        Some(match *self {
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
            QuantSpec::Mxfp4Experts => return None,
        })
    }
}

/// How a model is quantized while it loads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadQuant {
    /// Quantize the dense checkpoint's linears here (LLaMA-Factory's `quantization_bit`).
    OnTheFly(QuantSpec),
    /// The checkpoint was saved quantized: read its codes as they are.
    Saved(SavedQuant),
}

/// The format of a checkpoint saved quantized (`config.json`'s `quantization_config`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SavedQuant {
    /// bitsandbytes (`quant_method: bitsandbytes`), 4- or 8-bit.
    Bnb(QuantSpec),
    /// GPTQ (`quant_method: gptq`): int32-packed `qweight [in/(32/bits), out]`, `qzeros
    /// [groups, out/(32/bits)]`, `scales [groups, out]`, `g_idx [in]`.
    Gptq {
        /// Bits per code (2, 4 or 8).
        bits: u32,
        /// Input columns per group (−1 in the config: one group).
        group_size: Option<usize>,
        /// `checkpoint_format: gptq` (v1) stores each zero point minus one.
        zeros_minus_one: bool,
    },
    /// AWQ with GEMM packing (`quant_method: awq`, `version: gemm`): `qweight [in, out/8]`,
    /// `qzeros [groups, out/8]`, `scales [groups, out]`.
    Awq {
        /// Input columns per group.
        group_size: usize,
    },
}

/// A checkpoint's own quantization (`config.json`'s `quantization_config`, as transformers
/// reads it): `None` for a plain checkpoint, its format for one saved quantized, and an error
/// naming the method for the formats lmf does not load.
pub fn checkpoint_quantization(dir: &Path) -> Result<Option<LoadQuant>> {
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
    let bad = |msg: String| Error::file(&path, format!("quantization_config: {msg}"));
    let flag = |k: &str| q.get(k).and_then(Value::as_bool).unwrap_or(false);
    let int = |k: &str| q.get(k).and_then(Value::as_i64);
    let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
    if method == "mxfp4" {
        // GPT-OSS's MXFP4 experts: the MoE loader dequantizes them (as transformers does
        // without its triton kernels); every other layer is stored dense.
        if value.get("model_type").and_then(Value::as_str) != Some("gpt_oss") {
            return Err(bad(
                "quant_method `mxfp4` is supported for gpt_oss models only".into(),
            ));
        }
        return Ok(None);
    }
    let saved = match method {
        "bitsandbytes" if flag("load_in_8bit") => SavedQuant::Bnb(QuantSpec::Eight {
            threshold: q
                .get("llm_int8_threshold")
                .and_then(Value::as_f64)
                .unwrap_or(LLM_INT8_THRESHOLD as f64) as f32,
        }),
        "bitsandbytes" if flag("load_in_4bit") => SavedQuant::Bnb(QuantSpec::Four {
            kind: match q.get("bnb_4bit_quant_type").and_then(Value::as_str) {
                Some("fp4") => FourBit::Fp4,
                _ => FourBit::Nf4,
            },
            double_quant: flag("bnb_4bit_use_double_quant"),
        }),
        "bitsandbytes" => {
            return Err(bad(
                "bitsandbytes without load_in_4bit or load_in_8bit".into()
            ))
        }
        "gptq" => {
            let bits = int("bits").unwrap_or(4);
            if ![2, 4, 8].contains(&bits) {
                return Err(bad(format!(
                    "GPTQ with {bits} bits is not supported (2, 4 or 8)"
                )));
            }
            let format = q
                .get("checkpoint_format")
                .and_then(Value::as_str)
                .unwrap_or("gptq");
            if format != "gptq" && format != "gptq_v2" {
                return Err(bad(format!(
                    "GPTQ checkpoint_format `{format}` is not supported"
                )));
            }
            SavedQuant::Gptq {
                bits: bits as u32,
                group_size: int("group_size").filter(|&g| g > 0).map(|g| g as usize),
                zeros_minus_one: format == "gptq",
            }
        }
        "awq" => {
            let version = q.get("version").and_then(Value::as_str).unwrap_or("gemm");
            if !version.eq_ignore_ascii_case("gemm") || int("bits").unwrap_or(4) != 4 {
                return Err(bad(format!(
                    "AWQ `{version}` packing with {} bits is not supported (4-bit GEMM is)",
                    int("bits").unwrap_or(4)
                )));
            }
            if q.get("zero_point").and_then(Value::as_bool) == Some(false) {
                return Err(bad("AWQ without zero points is not supported".into()));
            }
            SavedQuant::Awq {
                group_size: int("group_size").filter(|&g| g > 0).unwrap_or(128) as usize,
            }
        }
        other => {
            return Err(bad(format!(
                "quant_method `{other}` is not supported yet (lmf loads bitsandbytes, GPTQ and \
                 AWQ checkpoints, and GPT-OSS's MXFP4 experts)"
            )))
        }
    };
    Ok(Some(LoadQuant::Saved(saved)))
}

/// Checks that `dir` holds an MXFP4 checkpoint (config.json's `quantization_config.quant_method`
/// is `mxfp4`), which [`QuantSpec::Mxfp4Experts`] needs; the error names the quant_method found.
pub fn require_mxfp4_checkpoint(dir: &Path) -> Result<()> {
    let path = dir.join("config.json");
    let value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let Some(value) = value else {
        return Ok(()); // ModelConfig::from_dir reports a missing or broken config.json
    };
    let found = match value
        .get("quantization_config")
        .map(|q| q.get("quant_method").and_then(Value::as_str))
    {
        Some(Some("mxfp4")) => return Ok(()),
        Some(Some(m)) => format!("quantization_config.quant_method is `{m}`"),
        Some(None) => "quantization_config has no quant_method".to_string(),
        None => "there is no quantization_config (a dense checkpoint)".to_string(),
    };
    Err(Error::file(
        &path,
        format!(
            "`quantization_method: mxfp4` with `quantization_bit: 4` keeps the MXFP4 experts \
             of a GPT-OSS checkpoint 4-bit, but {found}; drop `quantization_bit`, or use \
             `quantization_method: bnb`"
        ),
    ))
}

/// The saved quantized weight of linear `name` in `format`, or `None` when the checkpoint
/// keeps this linear dense.
pub fn load_saved_linear(
    w: &Weights,
    name: &str,
    out_f: usize,
    in_f: usize,
    format: &SavedQuant,
) -> Result<Option<QuantBase>> {
    match *format {
        SavedQuant::Bnb(spec) => {
            let threshold = match spec {
                QuantSpec::Eight { threshold } => threshold,
                QuantSpec::Four { .. } | QuantSpec::Mxfp4Experts => LLM_INT8_THRESHOLD,
            };
            load_bnb_linear(w, name, out_f, in_f, threshold)
        }
        SavedQuant::Gptq { .. } | SavedQuant::Awq { .. } => {
            load_packed_linear(w, name, out_f, in_f, format)
        }
    }
}

/// Reads the int32 words of tensor `name` (any 4-byte dtype: they are bit fields).
fn words(w: &Weights, name: &str, shape: &[usize]) -> Result<Vec<u32>> {
    let (dtype, got, bytes) = w.raw(name)?;
    if got != shape || !matches!(dtype, Dtype::I32 | Dtype::U32 | Dtype::F32) {
        return Err(Error::file(
            w.path_of(name).map(Path::to_path_buf).unwrap_or_default(),
            format!("`{name}` must be int32 {shape:?}, got {dtype} {got:?}"),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// A GPTQ or AWQ linear: `qweight`, `qzeros`, `scales` (and GPTQ's `g_idx`), unpacked.
fn load_packed_linear(
    w: &Weights,
    name: &str,
    out_f: usize,
    in_f: usize,
    packing: &SavedQuant,
) -> Result<Option<QuantBase>> {
    let qweight = format!("{name}.qweight");
    if !w.contains(&qweight) {
        return Ok(None);
    }
    let file = w
        .path_of(&qweight)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let bad = |msg: String| Error::file(&file, format!("`{name}`: {msg}"));
    let (bits, group_size) = match *packing {
        SavedQuant::Gptq {
            bits, group_size, ..
        } => (bits, group_size.unwrap_or(in_f)),
        SavedQuant::Awq { group_size } => (4, group_size),
        SavedQuant::Bnb(_) => return Ok(None),
    };
    let per = (32 / bits) as usize;
    if !in_f.is_multiple_of(per) || !out_f.is_multiple_of(per) {
        return Err(bad(format!(
            "[{out_f}, {in_f}] does not pack into {bits}-bit int32 words"
        )));
    }
    let groups = in_f.div_ceil(group_size);
    let scales_name = format!("{name}.scales");
    let round = match w.raw(&scales_name)?.0 {
        Dtype::F16 => WeightRound::F16,
        Dtype::BF16 => WeightRound::Bf16,
        _ => WeightRound::F32,
    };
    let scales_t = w.get(&scales_name, DType::F32, Device::Cpu)?;
    if scales_t.shape() != [groups, out_f] {
        return Err(bad(format!(
            "scales {:?}, expected [{groups}, {out_f}] (group_size {group_size})",
            scales_t.shape()
        )));
    }
    let scales = scales_t.to_vec::<f32>()?;
    let zwords = words(w, &format!("{name}.qzeros"), &[groups, out_f / per])?;
    // codes [rows = out, cols = in]
    let (q, zeros, g_idx) = match *packing {
        SavedQuant::Gptq {
            zeros_minus_one, ..
        } => {
            // qweight [in / per, out]: word (p, o) holds inputs p·per .. p·per + per of output o
            let qw = words(w, &qweight, &[in_f / per, out_f])?;
            let mut q = vec![0u8; out_f * in_f];
            for (k, &word) in qw.iter().enumerate() {
                let (p, o) = (k / out_f, k % out_f);
                for (j, v) in unpack_words(&[word], bits).into_iter().enumerate() {
                    q[o * in_f + p * per + j] = v;
                }
            }
            // v1 stores each zero point minus one; GPTQModel adds the one back as one int32
            // add per word (0x11111111 for 4 bits), so a stored field of all ones carries
            // into the next field, as here.
            let ones = unpack_words(&[u32::MAX], bits)
                .iter()
                .enumerate()
                .fold(0u32, |acc, (j, _)| acc | (1 << (bits as usize * j)));
            let zwords: Vec<u32> = if zeros_minus_one {
                zwords.iter().map(|w| w.wrapping_add(ones)).collect()
            } else {
                zwords
            };
            let zeros = unpack_words(&zwords, bits);
            let g_name = format!("{name}.g_idx");
            let g_idx: Vec<u32> = if w.contains(&g_name) {
                w.get(&g_name, DType::I64, Device::Cpu)?
                    .to_vec::<i64>()?
                    .into_iter()
                    .map(|g| g as u32)
                    .collect()
            } else {
                (0..in_f).map(|i| (i / group_size) as u32).collect()
            };
            (q, zeros, g_idx)
        }
        _ => {
            // AWQ: qweight [in, out / 8], codes of output columns in AWQ's order
            let qw = words(w, &qweight, &[in_f, out_f / 8])?;
            let codes = unpack_awq(&qw, in_f, out_f); // [in, out]
            let mut q = vec![0u8; out_f * in_f];
            for i in 0..in_f {
                for o in 0..out_f {
                    q[o * in_f + i] = codes[i * out_f + o];
                }
            }
            let zeros = unpack_awq(&zwords, groups, out_f);
            let g_idx = (0..in_f).map(|i| (i / group_size) as u32).collect();
            (q, zeros, g_idx)
        }
    };
    let g = GroupQuant {
        rows: out_f,
        cols: in_f,
        bits,
        q,
        zeros,
        scales,
        g_idx,
        groups,
        round,
    };
    g.validate().map_err(bad)?;
    Ok(Some(QuantBase::Group(g)))
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
        if dtype != Dtype::I8 || shape != [out_f, in_f] {
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
        if dtype != Dtype::U8 || codes.len() != blocks {
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
