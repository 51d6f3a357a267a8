//! The sparse mixture-of-experts block of Qwen3-MoE and Mixtral: a linear router picks
//! `top_k` experts per token, the tokens are grouped by expert, each expert's gated MLP runs
//! as one grouped GEMM per projection over the whole layer, and each token sums its experts'
//! outputs weighted by the routing probabilities.
//!
//! Shapes: `N` tokens, hidden `H`, `E` experts of width `I`, `k` = top_k, `R = N·k` routed
//! rows.
//!
//! ```text
//! logits = x · Wrᵀ                       [N, E]
//! p      = softmax(logits)               [N, E]
//! (idx, w) = top-k of p per token        [N, k]   (w renormalised when configured)
//! xs     = x[token of each routed row]   [R, H]   rows sorted by expert
//! gu     = xs · W_gate_up[e]ᵀ            [R, 2I]  grouped GEMM
//! a      = act(gu[:, :I]) ⊙ gu[:, I:]    [R, I]
//! ys     = a · W_down[e]ᵀ                [R, H]   grouped GEMM
//! y[t]   = Σ_slots w[t, s] · ys[row(t, s)]        [N, H]
//! ```
//!
//! The selection is not differentiated (as in torch's `topk`); the weights `w` are, so the
//! router learns through them (and through the load-balancing loss).
//!
//! GPT-OSS's MXFP4 experts are dequantized on load, or, when asked
//! ([`crate::QuantSpec::Mxfp4Experts`]), kept 4-bit and frozen: the two grouped GEMMs are then
//! grouped dequant-matmuls ([`ExpertWeights::Mxfp4`]).

use super::linear::Linear;
use crate::config::{Arch, ModelConfig, MoeConfig, GPT_OSS_ALPHA, GPT_OSS_LIMIT};
use crate::weights::Weights;
use lmf_autograd::ops::fused::{glu, grouped_matmul, grouped_quant_matmul};
use lmf_autograd::{DType, Device, Error, Result, Tensor, Var};
use lmf_kernels::cpu::quant::Mxfp4Experts;
use std::sync::Arc;

/// `mlp.*` of a MoE layer.
#[derive(Clone)]
pub struct MoeBlock {
    /// `mlp.gate`: the router, `[E, H]`.
    pub router: Linear,
    /// The experts' gate/up and down projections.
    pub experts: ExpertWeights,
    /// GPT-OSS `gate_up_proj_bias`, `[E, 2I]` (gate entries first, as `gate_up`).
    pub gate_up_bias: Option<Var>,
    /// GPT-OSS `down_proj_bias`, `[E, H]`.
    pub down_bias: Option<Var>,
}

/// The experts' weights of a MoE layer: the gate and up projections stacked, `[E, 2I, H]`
/// (gate rows first), and the down projections, `[E, H, I]`.
#[derive(Clone)]
pub enum ExpertWeights {
    /// Dense parameters (`mlp.experts.gate_up_proj` / `down_proj`).
    Dense {
        /// `[E, 2I, H]`.
        gate_up: Var,
        /// `[E, H, I]`.
        down: Var,
    },
    /// GPT-OSS's MXFP4 stacks kept 4-bit: frozen, no parameters (like a QLoRA base), shared
    /// by copies of the model.
    Mxfp4 {
        /// `[E, 2I, H]`, rows permuted to gate-first at load.
        gate_up: Arc<Mxfp4Experts>,
        /// `[E, H, I]`.
        down: Arc<Mxfp4Experts>,
    },
}

impl ExpertWeights {
    /// The dense `(gate_up, down)` parameters, `None` for kept MXFP4 experts.
    pub fn dense(&self) -> Option<(&Var, &Var)> {
        match self {
            ExpertWeights::Dense { gate_up, down } => Some((gate_up, down)),
            ExpertWeights::Mxfp4 { .. } => None,
        }
    }

    /// Whether the experts are kept quantized (MXFP4).
    pub fn is_quantized(&self) -> bool {
        matches!(self, ExpertWeights::Mxfp4 { .. })
    }

    /// `xs: [R, H]` (grouped by `offsets`) times each row's expert gate/up: `[R, 2I]`.
    fn gate_up(&self, xs: &Var, offsets: &[usize]) -> Result<Var> {
        match self {
            ExpertWeights::Dense { gate_up, .. } => grouped_matmul(xs, gate_up, offsets),
            ExpertWeights::Mxfp4 { gate_up, .. } => grouped_quant_matmul(xs, gate_up, offsets),
        }
    }

    /// `a: [R, I]` (grouped by `offsets`) times each row's expert down: `[R, H]`.
    fn down(&self, a: &Var, offsets: &[usize]) -> Result<Var> {
        match self {
            ExpertWeights::Dense { down, .. } => grouped_matmul(a, down, offsets),
            ExpertWeights::Mxfp4 { down, .. } => grouped_quant_matmul(a, down, offsets),
        }
    }
}

/// The routing of one batch: which rows go to which expert, in grouped order.
pub struct Routing {
    /// `[N, E]` router logits (what the load-balancing loss reads).
    pub logits: Var,
    /// The chosen expert of each (token, slot), `[N·k]`, token-major.
    pub experts: Vec<usize>,
}

/// Indices of the `k` largest values of `row`, largest first; ties go to the lower index
/// (torch's CPU `topk` on distinct values; exact ties are measure-zero for float logits).
pub fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// The grouped order of routed rows: `order[j]` is the (token·k + slot) index of the j-th
/// row when rows are sorted by expert (stable, so tokens stay in order within an expert),
/// and `offsets[e]..offsets[e + 1]` are expert `e`'s rows.
pub fn group_by_expert(experts: &[usize], num_experts: usize) -> (Vec<usize>, Vec<usize>) {
    let mut counts = vec![0usize; num_experts + 1];
    for &e in experts {
        counts[e + 1] += 1;
    }
    for e in 0..num_experts {
        counts[e + 1] += counts[e];
    }
    let offsets = counts.clone();
    let mut next = counts;
    let mut order = vec![0usize; experts.len()];
    for (r, &e) in experts.iter().enumerate() {
        order[next[e]] = r;
        next[e] += 1;
    }
    (order, offsets)
}

/// Where a layer's experts live in a checkpoint, and under which leaf names.
struct Layout {
    /// `model.layers.{i}.mlp` or Mixtral's `model.layers.{i}.block_sparse_moe`.
    block: String,
    /// Leaf names of one expert's gate, up and down projections.
    leaves: [&'static str; 3],
}

impl Layout {
    /// Mixtral's Hub names: `block_sparse_moe.experts.{e}.{w1,w3,w2}`.
    fn mixtral(layer: &str) -> Layout {
        Layout {
            block: format!("{layer}.block_sparse_moe"),
            leaves: ["w1", "w3", "w2"],
        }
    }

    /// Qwen-MoE's Hub names: `mlp.experts.{e}.{gate,up,down}_proj`.
    fn mlp(layer: &str) -> Layout {
        Layout {
            block: format!("{layer}.mlp"),
            leaves: ["gate_proj", "up_proj", "down_proj"],
        }
    }

    /// The Hub layout of `cfg`'s family for layer prefix `layer` (`model.layers.{i}`):
    /// what transformers 5.6's `save_pretrained` writes.
    fn hub(cfg: &ModelConfig, layer: &str) -> Layout {
        match cfg.arch {
            Arch::Mixtral => Layout::mixtral(layer),
            _ => Layout::mlp(layer),
        }
    }

    /// The layout a checkpoint uses for layer `layer`: Mixtral's Hub names when its router
    /// is there, else `mlp.*`.
    fn found(w: &Weights, layer: &str) -> Layout {
        let mixtral = Layout::mixtral(layer);
        if w.contains(&format!("{}.gate.weight", mixtral.block)) {
            mixtral
        } else {
            Layout::mlp(layer)
        }
    }
}

/// One MoE layer's tensors in lmf's layout (see [`MoeBlock`]).
pub(crate) struct ExpertTensors {
    pub router: Tensor,
    pub router_bias: Option<Tensor>,
    pub experts: ExpertWeights,
    pub gate_up_bias: Option<Tensor>,
    pub down_bias: Option<Tensor>,
}

/// GPT-OSS's expert activation: `g = min(gate, 7)`, `u = clamp(up, −7, 7)`,
/// `(u + 1) · g · σ(1.702 · g)` (`[R, I]` each).
pub fn gpt_oss_glu(gate: &Var, up: &Var) -> Result<Var> {
    let lim = GPT_OSS_LIMIT;
    let g = gate.clamp(f64::NEG_INFINITY, lim)?;
    let u = up.clamp(-lim, lim)?;
    let glu = g.mul(&g.scale(GPT_OSS_ALPHA)?.sigmoid()?)?;
    u.affine(1.0, 1.0)?.mul(&glu)
}

/// The module path of a MoE layer's router: `mlp.router` (GPT-OSS) or `mlp.gate`.
pub fn router_path(cfg: &ModelConfig) -> &'static str {
    if cfg.arch == Arch::GptOss {
        "mlp.router"
    } else {
        "mlp.gate"
    }
}

/// Loads layer `layer`'s (`model.layers.{i}`) experts and router (see [`load_tensors`]).
pub(crate) fn load(
    w: &Weights,
    layer: &str,
    cfg: &ModelConfig,
    moe: &MoeConfig,
    dtype: DType,
    device: Device,
    keep_mxfp4: bool,
) -> crate::Result<MoeBlock> {
    let t = load_tensors(w, layer, cfg, moe, dtype, device, keep_mxfp4)?;
    Ok(MoeBlock {
        router: Linear::new(Var::param(t.router), t.router_bias.map(Var::param)),
        experts: t.experts,
        gate_up_bias: t.gate_up_bias.map(Var::param),
        down_bias: t.down_bias.map(Var::param),
    })
}

/// Why a model whose experts are kept MXFP4 cannot be saved whole.
pub(crate) const KEPT_MXFP4_SAVE: &str =
    "the MXFP4 experts are kept 4-bit (`quantization_bit: 4`, `quantization_method: mxfp4`): \
     saving the full model is not supported; load it without `quantization_bit` (experts \
     dequantized) to save or merge";

/// The permutation of GPT-OSS's interleaved gate/up outputs (`2j` gate `j`, `2j + 1` up `j`)
/// into lmf's gate-first order: `[0, 2, …, 2I−2, 1, 3, …, 2I−1]`.
fn deinterleave(i: usize) -> Vec<usize> {
    (0..i)
        .map(|j| 2 * j)
        .chain((0..i).map(|j| 2 * j + 1))
        .collect()
}

/// The inverse of [`deinterleave`].
fn interleave(i: usize) -> Vec<usize> {
    (0..2 * i)
        .map(|c| if c % 2 == 0 { c / 2 } else { i + c / 2 })
        .collect()
}

/// Layer `layer`'s router and experts from any of the layouts checkpoints use:
/// transformers 5's stacked `mlp.experts.gate_up_proj` `[E, 2I, H]` / `down_proj`
/// `[E, H, I]`, the Hub's per-expert `mlp.experts.{e}.{gate,up,down}_proj` (Qwen-MoE),
/// Mixtral's `block_sparse_moe.experts.{e}.{w1,w3,w2}` (gate, up, down), and GPT-OSS's
/// `mlp.router` + input-major `gate_up_proj` `[E, H, 2I]` (gate/up interleaved) /
/// `down_proj` `[E, I, H]` with biases, dense or as MXFP4 `_blocks` / `_scales`.
/// `keep_mxfp4` keeps GPT-OSS's MXFP4 experts 4-bit instead of dequantizing them (an error
/// when the layer has none).
pub(crate) fn load_tensors(
    w: &Weights,
    layer: &str,
    cfg: &ModelConfig,
    moe: &MoeConfig,
    dtype: DType,
    device: Device,
    keep_mxfp4: bool,
) -> crate::Result<ExpertTensors> {
    let (e, h, i) = (moe.num_experts, cfg.hidden_size, moe.intermediate_size);
    let packed = format!("{layer}.mlp.experts.gate_up_proj_blocks");
    if keep_mxfp4 && !(moe.gpt_oss && w.contains(&packed)) {
        return Err(crate::Error::msg(format!(
            "{}: `quantization_method: mxfp4` keeps MXFP4 experts 4-bit, but the checkpoint \
             has no `{packed}`",
            w.describe()
        )));
    }
    if moe.gpt_oss {
        return load_gpt_oss(w, layer, (e, h, i), dtype, device, keep_mxfp4);
    }
    let Layout { block, leaves } = Layout::found(w, layer);
    let router = w.load(&format!("{block}.gate.weight"), &[e, h], dtype, device)?;
    let stacked = format!("{block}.experts.gate_up_proj");
    let (gate_up, down) = if w.contains(&stacked) {
        (
            w.load(&stacked, &[e, 2 * i, h], dtype, device)?,
            w.load(
                &format!("{block}.experts.down_proj"),
                &[e, h, i],
                dtype,
                device,
            )?,
        )
    } else {
        let [g, u, d] = leaves;
        let one = |ex: usize, name: &str, shape: &[usize]| -> crate::Result<Var> {
            let t = w.load(
                &format!("{block}.experts.{ex}.{name}.weight"),
                shape,
                dtype,
                device,
            )?;
            Ok(Var::constant(t.reshape(&[1, shape[0], shape[1]])?))
        };
        let mut gu = Vec::with_capacity(e);
        let mut dn = Vec::with_capacity(e);
        for ex in 0..e {
            // one expert's [2I, H]: gate rows, then up rows
            gu.push(Var::cat(
                &[&one(ex, g, &[i, h])?, &one(ex, u, &[i, h])?],
                1,
            )?);
            dn.push(one(ex, d, &[h, i])?);
        }
        let cat = |v: &[Var]| -> crate::Result<Tensor> {
            let refs: Vec<&Var> = v.iter().collect();
            Ok(Var::cat(&refs, 0)?.into_tensor())
        };
        (cat(&gu)?, cat(&dn)?)
    };
    Ok(ExpertTensors {
        router,
        router_bias: None,
        experts: ExpertWeights::Dense {
            gate_up: Var::param(gate_up),
            down: Var::param(down),
        },
        gate_up_bias: None,
        down_bias: None,
    })
}

/// GPT-OSS's layer `layer` (see [`load_tensors`]).
fn load_gpt_oss(
    w: &Weights,
    layer: &str,
    (e, h, i): (usize, usize, usize),
    dtype: DType,
    device: Device,
    keep_mxfp4: bool,
) -> crate::Result<ExpertTensors> {
    let m = format!("{layer}.mlp");
    let ld = |name: &str, shape: &[usize]| w.load(&format!("{m}.{name}"), shape, dtype, device);
    let perm = ids(deinterleave(i), device)?;
    let experts = if w.contains(&format!("{m}.experts.gate_up_proj_blocks")) {
        // the rows of the blocks are permuted before dequantizing (exact either way)
        let (gu, dn) = gpt_oss_mxfp4(w, &m, (e, h, i))?;
        if keep_mxfp4 {
            ExpertWeights::Mxfp4 {
                gate_up: Arc::new(gu),
                down: Arc::new(dn),
            }
        } else {
            let dense = |x: &Mxfp4Experts| -> crate::Result<Var> {
                let t = Tensor::from_vec(x.dequantize(), &[x.experts, x.rows, x.cols], device)?;
                Ok(Var::param(t.to_dtype(dtype)?))
            };
            ExpertWeights::Dense {
                gate_up: dense(&gu)?,
                down: dense(&dn)?,
            }
        }
    } else {
        // input-major [E, in, out] → output-major [E, out, in]; gate_up rows gate-first
        let gu = ld("experts.gate_up_proj", &[e, h, 2 * i])?
            .transpose(1, 2)?
            .contiguous()?;
        let dn = ld("experts.down_proj", &[e, i, h])?
            .transpose(1, 2)?
            .contiguous()?;
        ExpertWeights::Dense {
            gate_up: Var::param(gu.index_select(&perm, 1)?),
            down: Var::param(dn),
        }
    };
    Ok(ExpertTensors {
        router: ld("router.weight", &[e, h])?,
        router_bias: Some(ld("router.bias", &[e])?),
        experts,
        gate_up_bias: Some(ld("experts.gate_up_proj_bias", &[e, 2 * i])?.index_select(&perm, 1)?),
        down_bias: Some(ld("experts.down_proj_bias", &[e, h])?),
    })
}

/// GPT-OSS layer `m`'s (`model.layers.{i}.mlp`) MXFP4 experts in lmf's layout: `gate_up`
/// `[E, 2I, H]` with its rows permuted to gate-first ([`deinterleave`]), `down` `[E, H, I]`.
fn gpt_oss_mxfp4(
    w: &Weights,
    m: &str,
    (e, h, i): (usize, usize, usize),
) -> crate::Result<(Mxfp4Experts, Mxfp4Experts)> {
    let gate_up = mxfp4(w, &format!("{m}.experts.gate_up_proj"), (e, 2 * i, h))?;
    let down = mxfp4(w, &format!("{m}.experts.down_proj"), (e, h, i))?;
    Ok((gate_up.permute_rows(&deinterleave(i)), down))
}

/// Reads `{name}_blocks` (u8 `[E, rows, cols/32, 16]`) and `{name}_scales` (u8 `[E, rows,
/// cols/32]`) as they are: element `c` of a row is `FP4_VALUES[code] · 2^(scale[c/32] − 127)`,
/// its code the low nibble of byte `c/2` of the block for even `c`, the high nibble for odd
/// `c` (transformers' `convert_moe_packed_tensors`; see [`Mxfp4Experts`]).
fn mxfp4(
    w: &Weights,
    name: &str,
    (e, rows, cols): (usize, usize, usize),
) -> crate::Result<Mxfp4Experts> {
    if cols % 32 != 0 {
        return Err(crate::Error::msg(format!(
            "{name}: MXFP4 needs a multiple of 32 input features, got {cols}"
        )));
    }
    let nb = cols / 32;
    let blocks = w.load(
        &format!("{name}_blocks"),
        &[e, rows, nb, 16],
        DType::U8,
        Device::Cpu,
    )?;
    let scales = w.load(
        &format!("{name}_scales"),
        &[e, rows, nb],
        DType::U8,
        Device::Cpu,
    )?;
    Mxfp4Experts::new(
        e,
        rows,
        cols,
        blocks.to_vec::<u8>()?,
        scales.to_vec::<u8>()?,
    )
    .map_err(|m| crate::Error::msg(format!("{name}: {m}")))
}

/// The checkpoint tensors of one MoE layer under the Hub's names (what transformers 5.6's
/// `save_pretrained` writes): the router, then each expert's gate, up and down weights; for
/// GPT-OSS its fused input-major tensors (dense, never MXFP4) with their biases. Experts
/// kept MXFP4 are refused.
pub(crate) fn hub_tensors(
    block: &MoeBlock,
    layer: &str,
    cfg: &ModelConfig,
) -> crate::Result<Vec<(String, Tensor)>> {
    let Some((gu, dn)) = block.experts.dense() else {
        return Err(crate::Error::msg(format!("{layer}: {KEPT_MXFP4_SAVE}")));
    };
    let (gu, dn) = (gu.tensor(), dn.tensor());
    let (e, i2) = (gu.shape()[0], gu.shape()[1]);
    let i = i2 / 2;
    if cfg.arch == Arch::GptOss {
        let m = format!("{layer}.mlp");
        let perm = ids(interleave(i), gu.device())?;
        let mut out = vec![(
            format!("{m}.router.weight"),
            block.router.weight.tensor().clone(),
        )];
        if let Some(b) = &block.router.bias {
            out.push((format!("{m}.router.bias"), b.tensor().clone()));
        }
        let gu_in = gu.index_select(&perm, 1)?.transpose(1, 2)?.contiguous()?;
        out.push((format!("{m}.experts.gate_up_proj"), gu_in));
        if let Some(b) = &block.gate_up_bias {
            out.push((
                format!("{m}.experts.gate_up_proj_bias"),
                b.tensor().index_select(&perm, 1)?,
            ));
        }
        out.push((
            format!("{m}.experts.down_proj"),
            dn.transpose(1, 2)?.contiguous()?,
        ));
        if let Some(b) = &block.down_bias {
            out.push((format!("{m}.experts.down_proj_bias"), b.tensor().clone()));
        }
        return Ok(out);
    }
    let Layout {
        block: prefix,
        leaves,
    } = Layout::hub(cfg, layer);
    let mut out = vec![(
        format!("{prefix}.gate.weight"),
        block.router.weight.tensor().clone(),
    )];
    for ex in 0..e {
        let g = gu.narrow(0, ex, 1)?.squeeze(0)?;
        let d = dn.narrow(0, ex, 1)?.squeeze(0)?.contiguous()?;
        let x = format!("{prefix}.experts.{ex}");
        out.push((
            format!("{x}.{}.weight", leaves[0]),
            g.narrow(0, 0, i)?.contiguous()?,
        ));
        out.push((
            format!("{x}.{}.weight", leaves[1]),
            g.narrow(0, i, i)?.contiguous()?,
        ));
        out.push((format!("{x}.{}.weight", leaves[2]), d));
    }
    Ok(out)
}

/// The load-balancing loss of transformers' `load_balancing_loss_func` (Switch
/// Transformer), over the router logits of every MoE layer (`[tokens, E]` each, real tokens
/// only, so HF's attention-mask weighting is the plain mean here):
///
/// ```text
/// p = softmax(logits)                          [L·N, E]
/// f_e = #(token, slot) routed to e / (L·N)     (top-k of p, not differentiated)
/// P_e = mean over rows of p[:, e]
/// aux = E · Σ_e f_e · P_e
/// ```
///
/// `None` when there are no MoE layers or no tokens.
pub fn load_balancing_loss(logits: &[Var], moe: &MoeConfig) -> Result<Option<Var>> {
    let refs: Vec<&Var> = logits.iter().filter(|l| l.shape()[0] > 0).collect();
    if refs.is_empty() {
        return Ok(None);
    }
    let all = if refs.len() == 1 {
        refs[0].clone()
    } else {
        Var::cat(&refs, 0)?
    };
    let (rows, e) = (all.shape()[0], moe.num_experts);
    let p = all.softmax(1)?;
    let pv = p.tensor().to_dtype(DType::F32)?.to_vec::<f32>()?;
    let mut share = vec![0f32; e];
    for r in 0..rows {
        for x in top_k(&pv[r * e..(r + 1) * e], moe.top_k) {
            share[x] += 1.0;
        }
    }
    for s in &mut share {
        *s /= rows as f32;
    }
    let share = Tensor::from_vec(share, &[e], all.device())?.to_dtype(all.dtype())?;
    let mean_p = p.mean(&[0], false)?;
    Ok(Some(
        mean_p
            .mul(&Var::constant(share))?
            .sum_all()?
            .scale(e as f64)?,
    ))
}

fn ids(v: impl IntoIterator<Item = usize>, device: Device) -> Result<Tensor> {
    let v: Vec<i64> = v.into_iter().map(|x| x as i64).collect();
    let n = v.len();
    Tensor::from_vec(v, &[n], device)
}

impl MoeBlock {
    /// `x: [N, H]` (normed) → `([N, H], routing)`.
    pub fn forward(&self, x: &Var, cfg: &ModelConfig, moe: &MoeConfig) -> Result<(Var, Routing)> {
        let (n, h) = (x.shape()[0], x.shape()[1]);
        let (e, k, i) = (moe.num_experts, moe.top_k, moe.intermediate_size);
        let dev = x.device();
        let logits = self.router.forward(x)?;
        if logits.shape() != [n, e] {
            return Err(Error::invalid(
                "moe",
                format!("router gives {:?}, expected [{n}, {e}]", logits.shape()),
            ));
        }
        // the scores the top-k is taken on: GPT-OSS the logits themselves, the others the
        // softmax over all experts (in f32, as torch's float softmax)
        let scores = if moe.gpt_oss {
            logits.clone()
        } else {
            logits.softmax(1)?
        };
        // selection on the values (no gradient)
        let sv = scores.tensor().to_dtype(DType::F32)?.to_vec::<f32>()?;
        let experts: Vec<usize> = (0..n)
            .flat_map(|t| top_k(&sv[t * e..(t + 1) * e], k))
            .collect();
        // w: [N, k] routing weights, differentiable through the scores
        let flat = ids((0..n * k).map(|r| (r / k) * e + experts[r]), dev)?;
        let mut w = scores
            .reshape(&[n * e])?
            .index_select(&flat, 0)?
            .reshape(&[n, k])?;
        if moe.gpt_oss {
            w = w.softmax(1)?; // softmax over the chosen k logits
        } else if moe.norm_topk_prob {
            w = w.div(&w.sum(&[1], true)?)?;
        }
        let routing = Routing { logits, experts };
        if n == 0 {
            return Ok((x.scale(0.0)?, routing));
        }
        let (order, offsets) = group_by_expert(&routing.experts, e);
        // xs: [R, H], the token of each routed row in grouped order
        let xs = x.index_select(&ids(order.iter().map(|&r| r / k), dev)?, 0)?;
        // the expert of each grouped row, for the biases
        let row_expert = || ids(order.iter().map(|&r| routing.experts[r]), dev);
        let mut gu = self.experts.gate_up(&xs, &offsets)?;
        if let Some(b) = &self.gate_up_bias {
            gu = gu.add(&b.index_select(&row_expert()?, 0)?)?;
        }
        let (gate, up) = (
            gu.narrow(1, 0, i)?.contiguous()?,
            gu.narrow(1, i, i)?.contiguous()?,
        );
        let a = if moe.gpt_oss {
            gpt_oss_glu(&gate, &up)?
        } else {
            glu(&gate, &up, cfg.act)?
        };
        let mut ys = self.experts.down(&a, &offsets)?;
        if let Some(b) = &self.down_bias {
            ys = ys.add(&b.index_select(&row_expert()?, 0)?)?;
        }
        // back to (token, slot) order, weighted, summed over the slots
        let mut inverse = vec![0usize; order.len()];
        for (j, &r) in order.iter().enumerate() {
            inverse[r] = j;
        }
        let y = ys.index_select(&ids(inverse, dev)?, 0)?;
        let w = w.reshape(&[n * k, 1])?;
        let y = y.mul(&w)?.reshape(&[n, k, h])?.sum(&[1], false)?;
        Ok((y, routing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_picks_largest_first_and_lower_index_on_ties() {
        assert_eq!(top_k(&[0.1, 0.5, 0.2, 0.5], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[3.0, 1.0], 1), vec![0]);
    }

    #[test]
    fn grouping_is_stable_by_expert() {
        // tokens × 2 slots: experts per routed row
        let experts = [2, 0, 1, 2, 0, 1];
        let (order, offsets) = group_by_expert(&experts, 4);
        assert_eq!(offsets, vec![0, 2, 4, 6, 6]);
        assert_eq!(order, vec![1, 4, 2, 5, 0, 3]);
    }
}
