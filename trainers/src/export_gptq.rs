//! `lmf export` with `export_quantization_bit`: LLaMA-Factory's GPTQ export (transformers'
//! `GPTQConfig(bits, dataset=...)` through optimum): calibration windows drawn from
//! `export_quantization_dataset`, every decoder linear GPTQ-quantized
//! ([`lmf_models::gptq`]), and a GPTQ checkpoint written as LF 0.9.5 (transformers 5) writes
//! it: packed linears in the `gptq_v2` layout with f16 scales, everything else in the
//! checkpoint's own dtype (LF's "quantized model adopts float16" sets `torch_dtype`, which
//! transformers 5 no longer reads), `quantization_config` in `config.json`.
//!
//! Calibration (LF's `_get_quantization_dataset`): `export_quantization_nsamples` times, pick
//! a random row of the dataset's `text` column whose tokenization (with special tokens) is
//! longer than `export_quantization_maxlen` (at most 100 tries), then a random window of
//! exactly `maxlen` tokens of it. LF draws from Python's unseeded `random`, so its picks change
//! from run to run; lmf draws from a fixed seed, so an export is reproducible.

use std::path::Path;

use lmf_autograd::DType;
use lmf_models::gptq::pack::pack_gptq;
use lmf_models::gptq::{quantize_model, GptqLinear, GptqParams};
use lmf_models::{CausalLM, Tokenizer};
use serde_json::{json, Value};

use crate::args::model::ModelArguments as ModelArgs;
use crate::data::load::{file_type, read_rows};
use crate::data::numpy_rng::LegacyRng;
use crate::train::export::{save_entries, tensor_bytes, Entry};
use crate::{Error, Result};

/// The seed of the calibration draws.
const CALIBRATION_SEED: u64 = 42;

/// Tokens forwarded at once during calibration.
const MAX_BATCH_TOKENS: usize = 8192;

/// Checks LF's conditions on `export_quantization_bit` before anything loads.
pub fn check_args(m: &ModelArgs, bits: i64) -> Result<()> {
    if !matches!(bits, 2 | 3 | 4 | 8) {
        return Err(Error::Msg(
            "AutoGPTQ only accepts 2/3/4/8-bit quantization.".into(),
        ));
    }
    if bits == 3 {
        return Err(Error::Msg(
            "export_quantization_bit: 3-bit GPTQ packing is not supported yet (2, 4 and 8 are)"
                .into(),
        ));
    }
    if !m.adapters().is_empty() {
        return Err(Error::Msg(
            "Please merge adapters before quantizing the model.".into(),
        ));
    }
    if m.export_quantization_nsamples <= 0 || m.export_quantization_maxlen <= 0 {
        return Err(Error::Msg(format!(
            "export_quantization_nsamples ({}) and export_quantization_maxlen ({}) must be positive",
            m.export_quantization_nsamples, m.export_quantization_maxlen
        )));
    }
    Ok(())
}

/// The `text` column of the calibration file.
fn calibration_texts(path: &str) -> Result<Vec<String>> {
    let file = Path::new(path);
    if !file.is_file() {
        return Err(Error::Msg(format!(
            "export_quantization_dataset: `{path}` is not a file (lmf reads local json, jsonl, \
             csv, parquet and txt files with a `text` column; hub datasets are not fetched)"
        )));
    }
    let rows = match file_type(file) {
        Some(kind) if kind != "arrow" => read_rows(kind, file)?,
        _ => {
            return Err(Error::Msg(format!(
                "export_quantization_dataset: `{path}`: unknown file type (json, jsonl, csv, \
                 parquet or txt)"
            )))
        }
    };
    if rows.is_empty() {
        return Err(Error::Msg(format!(
            "export_quantization_dataset: `{path}` has no rows"
        )));
    }
    rows.iter()
        .enumerate()
        .map(|(i, r)| match r.get("text").and_then(|v| v.as_str()) {
            Some(t) => Ok(t.to_string()),
            None => Err(Error::Msg(format!(
                "export_quantization_dataset: `{path}`, row {i}: no string `text` field"
            ))),
        })
        .collect()
}

/// Python's `random.randint(0, n - 1)` by rejection on the top bits of a 32-bit draw.
fn below(rng: &mut LegacyRng, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let k = usize::BITS - (n - 1).leading_zeros();
    loop {
        let r = (rng.next_u32() >> (32 - k)) as usize;
        if r < n {
            return r;
        }
    }
}

/// `nsamples` windows of exactly `maxlen` tokens (see the module header).
pub fn calibration_windows(
    tokenizer: &Tokenizer,
    texts: &[String],
    nsamples: usize,
    maxlen: usize,
) -> Result<Vec<Vec<u32>>> {
    let mut rng = LegacyRng::new(CALIBRATION_SEED);
    let mut out = Vec::with_capacity(nsamples);
    for _ in 0..nsamples {
        let mut tries = 0;
        let ids = loop {
            if tries > 100 {
                return Err(Error::Msg(
                    "Cannot find satisfying example, considering decrease \
                     `export_quantization_maxlen`."
                        .into(),
                ));
            }
            let ids = tokenizer.encode(&texts[below(&mut rng, texts.len())], true)?;
            tries += 1;
            if ids.len() > maxlen {
                break ids;
            }
        };
        let start = below(&mut rng, ids.len() - maxlen);
        out.push(ids[start..start + maxlen].to_vec());
    }
    Ok(out)
}

/// transformers' `GPTQConfig` as LLaMA-Factory's export writes it into `config.json` (the keys
/// loaders read; LF also dumps the calibration token ids and the tokenizer there, which lmf
/// leaves out). `gptq_v2`: the zero points are stored as they are, not minus one.
fn quantization_config(p: &GptqParams) -> Value {
    json!({
        "bits": p.bits,
        "group_size": p.group_size.map(|g| g as i64).unwrap_or(-1),
        "damp_percent": p.damp_percent,
        "desc_act": p.desc_act,
        "act_group_aware": p.act_group_aware,
        "sym": p.sym,
        "true_sequential": true,
        "quant_method": "gptq",
        "checkpoint_format": "gptq_v2",
        "format": "gptq_v2",
        "meta": { "quantizer": [format!("lmf:{}", env!("CARGO_PKG_VERSION"))] },
    })
}

/// The tensors of a GPTQ checkpoint: each quantized linear as `qweight`/`qzeros`/`scales`/
/// `g_idx`, every other parameter in `dtype`.
fn checkpoint_entries(
    model: &CausalLM,
    linears: &[(String, GptqLinear)],
    dtype: DType,
) -> Result<Vec<Entry>> {
    let by_weight: std::collections::HashMap<String, &GptqLinear> = linears
        .iter()
        .map(|(n, g)| (format!("{n}.weight"), g))
        .collect();
    let mut entries = vec![];
    for (name, var) in model.named_parameters() {
        let Some(g) = by_weight.get(&name) else {
            let (dt, bytes) = tensor_bytes(&var.tensor().to_dtype(dtype)?)?;
            entries.push((name, var.shape().to_vec(), dt, bytes));
            continue;
        };
        let prefix = name.trim_end_matches(".weight");
        let t = pack_gptq(g, false).map_err(|e| Error::Msg(format!("`{prefix}`: {e}")))?;
        let per = (32 / g.bits) as usize;
        let words = |w: &[u32]| w.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        use safetensors::Dtype::{F16, I32};
        entries.push((
            format!("{prefix}.qweight"),
            vec![g.cols / per, g.rows],
            I32,
            words(&t.qweight),
        ));
        entries.push((
            format!("{prefix}.qzeros"),
            vec![g.groups, g.rows / per],
            I32,
            words(&t.qzeros),
        ));
        entries.push((
            format!("{prefix}.scales"),
            vec![g.groups, g.rows],
            F16,
            t.scales
                .iter()
                .flat_map(|v| v.to_bits().to_le_bytes())
                .collect(),
        ));
        entries.push((
            format!("{prefix}.g_idx"),
            vec![g.cols],
            I32,
            t.g_idx.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    Ok(entries)
}

/// Quantizes `model` (loaded f32 from `src`) and writes the GPTQ checkpoint's weights into
/// `out`, the unquantized tensors in `dtype`; returns the `quantization_config` for
/// `config.json`.
pub fn export_gptq(
    m: &ModelArgs,
    bits: i64,
    src: &Path,
    model: &mut CausalLM,
    out: &Path,
    dtype: DType,
) -> Result<Value> {
    let dataset = m.export_quantization_dataset.as_deref().ok_or_else(|| {
        Error::Msg(
            "`export_quantization_dataset` is necessary with `export_quantization_bit`".into(),
        )
    })?;
    let texts = calibration_texts(dataset)?;
    let tokenizer = Tokenizer::from_dir(src)?;
    let seqs = calibration_windows(
        &tokenizer,
        &texts,
        m.export_quantization_nsamples as usize,
        m.export_quantization_maxlen as usize,
    )?;
    let params = GptqParams {
        bits: bits as u32,
        ..GptqParams::default()
    };
    eprintln!(
        "Quantizing model to {bits} bit with GPTQ on {} samples of {} tokens.",
        seqs.len(),
        m.export_quantization_maxlen
    );
    let linears = quantize_model(model, &seqs, &params, MAX_BATCH_TOKENS, |name, g| {
        eprintln!("  {name}: damp {:.4}, loss {:.6e}", g.damp, g.avg_loss);
    })?;
    let entries = checkpoint_entries(model, &linears, dtype)?;
    save_entries(entries, out, m.export_size as usize * 1_000_000_000)?;
    Ok(quantization_config(&params))
}
