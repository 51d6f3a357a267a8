//! GPTQ post-training quantization of a whole model, layer by layer, as optimum's
//! `GPTQQuantizer.quantize_model` drives it for transformers' `GPTQConfig` (LLaMA-Factory's
//! `export_quantization_bit`):
//!
//! - the calibration sequences are embedded once; each decoder layer then sees the output of
//!   the layers before it *after* they were quantized;
//! - inside a layer the linears are quantized in module order ("true sequential"), each from
//!   the inputs it receives with the linears before it already quantized. Linears that read
//!   the same input (q/k/v, gate/up) share one calibration pass: quantizing one cannot change
//!   another's input, so this equals one pass per linear;
//! - the embedding, norms and output head stay unquantized.
//!
//! After a linear is quantized its weight is replaced by what the exported checkpoint will
//! compute (`f16(scale) · (code − zero)`, rounded to f16), so later layers calibrate on the
//! model that is written. [`solver`] has the per-linear algorithm, [`pack`] the GPTQ file
//! layout.

pub mod pack;
pub mod solver;

use std::sync::{Arc, Mutex};

use lmf_autograd::grad_mode::no_grad;
use lmf_autograd::{Device, Tensor, Var};
use lmf_kernels::cpu::quant::group::{GroupQuant, WeightRound};

use crate::adapter::layer_linears_mut;
use crate::model::{DecoderLayer, Linear};
use crate::{CausalLM, Error, Result, SeqBatch};
pub use solver::{gptq_quantize, GptqLinear, GptqParams, Hessian};

/// The linears of one decoder layer in module order, grouped by the input they read.
pub const LINEAR_GROUPS: [&[&str]; 4] = [
    &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    &["self_attn.o_proj"],
    &["mlp.gate_proj", "mlp.up_proj"],
    &["mlp.down_proj"],
];

/// Linear `name` (`self_attn.q_proj`, `mlp.down_proj`, ...) of a decoder layer.
fn linear_mut<'a>(layer: &'a mut DecoderLayer, name: &str) -> &'a mut Linear {
    layer_linears_mut(layer)
        .into_iter()
        .find(|(path, _)| *path == name)
        .map(|(_, lin)| lin)
        .unwrap_or_else(|| unreachable!("no linear {name}"))
}

/// The weight the exported checkpoint computes for `g`: f16 scales, each weight rounded to
/// f16 (as GPTQ kernels compute it in the scales' dtype).
pub fn checkpoint_weight(g: &GptqLinear) -> GroupQuant {
    GroupQuant {
        rows: g.rows,
        cols: g.cols,
        bits: g.bits,
        q: g.codes.clone(),
        zeros: g.zeros.clone(),
        scales: g
            .scales
            .iter()
            .map(|&s| half::f16::from_f32(s).to_f32())
            .collect(),
        g_idx: g.g_idx.clone(),
        groups: g.groups,
        round: WeightRound::F16,
    }
}

/// Splits `seqs` into batches of at most `max_tokens` tokens (at least one sequence each).
fn batches(seqs: &[Vec<u32>], max_tokens: usize) -> Vec<SeqBatch> {
    let mut out = vec![];
    let mut cur: Vec<&[u32]> = vec![];
    let mut n = 0;
    for s in seqs {
        if !cur.is_empty() && n + s.len() > max_tokens {
            out.push(SeqBatch::from_seqs(&cur));
            cur.clear();
            n = 0;
        }
        cur.push(s);
        n += s.len();
    }
    if !cur.is_empty() {
        out.push(SeqBatch::from_seqs(&cur));
    }
    out
}

/// GPTQ-quantizes every decoder linear of `model` (f32, on the CPU) on the calibration
/// sequences `seqs`, forwarding at most `max_tokens` tokens at once. Returns the quantized
/// linears by name (`model.layers.{i}.self_attn.q_proj`, ...) in module order; the model's
/// linears now hold the dequantized weights. `progress` is told each linear as it is done.
pub fn quantize_model(
    model: &mut CausalLM,
    seqs: &[Vec<u32>],
    params: &GptqParams,
    max_tokens: usize,
    mut progress: impl FnMut(&str, &GptqLinear),
) -> Result<Vec<(String, GptqLinear)>> {
    if model.is_quantized() {
        return Err(Error::msg("GPTQ needs an unquantized model"));
    }
    if model.config.moe.is_some() || model.config.fused_proj {
        return Err(Error::msg(format!(
            "GPTQ export of `{}` models (mixture of experts or fused projections) is not supported yet",
            model.config.model_type
        )));
    }
    if seqs.is_empty() || seqs.iter().any(|s| s.is_empty()) {
        return Err(Error::msg(
            "GPTQ needs at least one non-empty calibration sequence",
        ));
    }
    no_grad(|| {
        let batches = batches(seqs, max_tokens.max(1));
        let mut hs = batches
            .iter()
            .map(|b| model.embed(b))
            .collect::<Result<Vec<Var>>>()?;
        let mut done = vec![];
        for l in 0..model.layers.len() {
            for group in LINEAR_GROUPS {
                let hessians = calibrate(model, l, group, &hs, &batches)?;
                for (name, h) in group.iter().zip(hessians) {
                    let full = format!("model.layers.{l}.{name}");
                    let lin = linear_mut(&mut model.layers[l], name);
                    let (rows, cols) = lin.dims();
                    let w = lin.weight.tensor().to_vec::<f32>()?;
                    let q = gptq_quantize(&w, rows, cols, h.finish(), h.rows, params)
                        .map_err(|e| Error::msg(format!("GPTQ of `{full}`: {e}")))?;
                    let dense = checkpoint_weight(&q).dequantize();
                    lin.weight =
                        Var::leaf(Tensor::from_vec(dense, &[rows, cols], Device::Cpu)?, false);
                    progress(&full, &q);
                    done.push((full, q));
                }
            }
            for (h, b) in hs.iter_mut().zip(&batches) {
                *h = model.forward_layer(l, h, b)?;
            }
        }
        Ok(done)
    })
}

/// Runs layer `l` on every batch with a tap on each linear of `group` and returns the
/// Hessian of each one's inputs.
fn calibrate(
    model: &mut CausalLM,
    l: usize,
    group: &[&str],
    hs: &[Var],
    batches: &[SeqBatch],
) -> Result<Vec<Hessian>> {
    let mut accs = vec![];
    for name in group {
        let lin = linear_mut(&mut model.layers[l], name);
        let acc = Arc::new(Mutex::new(Hessian::new(lin.dims().1)));
        let sink = acc.clone();
        lin.tap = Some(Arc::new(move |x: &Tensor| {
            let n = x.shape()[0];
            if let (Ok(v), Ok(mut h)) = (x.to_vec::<f32>(), sink.lock()) {
                h.add(&v, n);
            }
        }));
        accs.push(acc);
    }
    let run = hs
        .iter()
        .zip(batches)
        .try_for_each(|(h, b)| model.forward_layer(l, h, b).map(drop));
    for name in group {
        linear_mut(&mut model.layers[l], name).tap = None;
    }
    run?;
    Ok(accs
        .into_iter()
        .map(|a| {
            Arc::try_unwrap(a)
                .ok()
                .and_then(|m| m.into_inner().ok())
                .expect("taps removed")
        })
        .collect())
}
