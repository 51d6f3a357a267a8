//! One decoder layer of the Llama family, with the per-family switches from
//! [`ModelConfig`]: pre-norm attention (GQA, RoPE, optional q/k norm, sliding window,
//! soft-cap) and a gated MLP, each added back to the residual; Gemma 2 also norms each
//! branch output before the add ("sandwich" norms).

use super::kv_cache::KvCache;
use super::linear::Linear;
use super::moe::MoeBlock;
use crate::config::ModelConfig;
use lmf_autograd::grad_mode::is_grad_enabled;
use lmf_autograd::ops::fused::{
    attention, attention_with_sinks, rmsnorm, rope, rope_cos_sin, AttnParams,
};
use lmf_autograd::{DType, Device, Result, Tensor, Var};

/// The q, k, v projections of an attention block: separate, or Phi-3's fused `qkv_proj`
/// (`[q; k; v]` rows in one `nn.Linear`, which is what PEFT adapts).
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // a few per layer; boxing would only add indirection
pub enum QkvProj {
    /// `q_proj: [heads·head_dim, hidden]`, `k_proj`, `v_proj: [kv_heads·head_dim, hidden]`.
    Split {
        q_proj: Linear,
        k_proj: Linear,
        v_proj: Linear,
    },
    /// `qkv_proj: [(heads + 2·kv_heads)·head_dim, hidden]`.
    Fused { qkv_proj: Linear },
}

/// The gate and up projections of a gated MLP: separate, or Phi-3's fused `gate_up_proj`
/// (gate rows, then up rows).
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // see QkvProj
pub enum GateUpProj {
    /// `gate_proj`, `up_proj: [intermediate, hidden]`.
    Split { gate_proj: Linear, up_proj: Linear },
    /// `gate_up_proj: [2·intermediate, hidden]`.
    Fused { gate_up_proj: Linear },
}

/// `self_attn.*` of one layer.
#[derive(Clone)]
pub struct Attention {
    /// The q, k, v projections.
    pub qkv: QkvProj,
    /// `o_proj: [hidden, heads·head_dim]`.
    pub o_proj: Linear,
    /// Qwen3 `q_norm.weight: [head_dim]`.
    pub q_norm: Option<Var>,
    /// Qwen3 `k_norm.weight: [head_dim]`.
    pub k_norm: Option<Var>,
    /// GPT-OSS `sinks: [heads]`: a learned logit per head in the softmax denominator.
    pub sinks: Option<Var>,
}

/// `mlp.*` of one layer: `down(act(gate(x)) ⊙ up(x))`.
#[derive(Clone)]
pub struct Mlp {
    /// The gate and up projections.
    pub gate_up: GateUpProj,
    /// `down_proj: [hidden, intermediate]`.
    pub down_proj: Linear,
}

impl Attention {
    /// The block's linears by their path inside the layer, in module order.
    pub fn linears(&self) -> Vec<(&'static str, &Linear)> {
        let mut out = match &self.qkv {
            QkvProj::Split {
                q_proj,
                k_proj,
                v_proj,
            } => vec![
                ("self_attn.q_proj", q_proj),
                ("self_attn.k_proj", k_proj),
                ("self_attn.v_proj", v_proj),
            ],
            QkvProj::Fused { qkv_proj } => vec![("self_attn.qkv_proj", qkv_proj)],
        };
        out.push(("self_attn.o_proj", &self.o_proj));
        out
    }

    /// [`Attention::linears`], mutable.
    pub fn linears_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        let mut out = match &mut self.qkv {
            QkvProj::Split {
                q_proj,
                k_proj,
                v_proj,
            } => vec![
                ("self_attn.q_proj", q_proj),
                ("self_attn.k_proj", k_proj),
                ("self_attn.v_proj", v_proj),
            ],
            QkvProj::Fused { qkv_proj } => vec![("self_attn.qkv_proj", qkv_proj)],
        };
        out.push(("self_attn.o_proj", &mut self.o_proj));
        out
    }
}

impl Mlp {
    /// The block's linears by their path inside the layer, in module order.
    pub fn linears(&self) -> Vec<(&'static str, &Linear)> {
        let mut out = match &self.gate_up {
            GateUpProj::Split { gate_proj, up_proj } => {
                vec![("mlp.gate_proj", gate_proj), ("mlp.up_proj", up_proj)]
            }
            GateUpProj::Fused { gate_up_proj } => vec![("mlp.gate_up_proj", gate_up_proj)],
        };
        out.push(("mlp.down_proj", &self.down_proj));
        out
    }

    /// [`Mlp::linears`], mutable.
    pub fn linears_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        let mut out = match &mut self.gate_up {
            GateUpProj::Split { gate_proj, up_proj } => {
                vec![("mlp.gate_proj", gate_proj), ("mlp.up_proj", up_proj)]
            }
            GateUpProj::Fused { gate_up_proj } => vec![("mlp.gate_up_proj", gate_up_proj)],
        };
        out.push(("mlp.down_proj", &mut self.down_proj));
        out
    }
}

/// `model.layers.{i}`.
#[derive(Clone)]
pub struct DecoderLayer {
    /// Layer index.
    pub index: usize,
    /// `input_layernorm.weight: [hidden]`.
    pub input_layernorm: Var,
    /// Attention block.
    pub self_attn: Attention,
    /// `post_attention_layernorm.weight`: before the MLP (Llama) or on the attention
    /// output (Gemma 2).
    pub post_attention_layernorm: Var,
    /// Gemma 2 `pre_feedforward_layernorm.weight`.
    pub pre_feedforward_layernorm: Option<Var>,
    /// Gemma 2 `post_feedforward_layernorm.weight`.
    pub post_feedforward_layernorm: Option<Var>,
    /// Dense MLP block (`None` in a mixture-of-experts layer).
    pub mlp: Option<Mlp>,
    /// Mixture-of-experts block, in place of the dense MLP.
    pub moe: Option<MoeBlock>,
}

/// The RoPE tables of one batch: `cos`/`sin` `[tokens, rotary_dim / 2]`, and Gemma 3's
/// second pair for the sliding-window layers.
#[derive(Clone)]
pub(crate) struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
    pub local: Option<(Tensor, Tensor)>,
}

impl RopeTables {
    pub fn new(cfg: &ModelConfig, positions: &[i64], dtype: DType, device: Device) -> Result<Self> {
        let (cos, sin) = rope_cos_sin(&cfg.rope, positions, dtype, device)?;
        let local = match &cfg.rope_local {
            Some(r) => Some(rope_cos_sin(r, positions, dtype, device)?),
            None => None,
        };
        Ok(RopeTables { cos, sin, local })
    }

    /// The pair layer `index` rotates with.
    fn for_layer(&self, cfg: &ModelConfig, index: usize) -> (&Tensor, &Tensor) {
        match (&self.local, cfg.layer_windows[index]) {
            (Some((c, s)), Some(_)) => (c, s),
            _ => (&self.cos, &self.sin),
        }
    }
}

/// Per-forward inputs shared by all layers.
pub(crate) struct LayerCtx<'a> {
    pub cfg: &'a ModelConfig,
    pub cu_seqlens: &'a [usize],
    pub rope: &'a RopeTables,
}

impl DecoderLayer {
    /// `h: [tokens, hidden]` → `[tokens, hidden]`.
    pub(crate) fn forward(
        &self,
        h: &Var,
        ctx: &LayerCtx,
        cache: Option<&mut KvCache>,
    ) -> Result<Var> {
        Ok(self.forward_routed(h, ctx, cache)?.0)
    }

    /// [`DecoderLayer::forward`], also giving a MoE layer's router logits `[tokens, E]`.
    pub(crate) fn forward_routed(
        &self,
        h: &Var,
        ctx: &LayerCtx,
        cache: Option<&mut KvCache>,
    ) -> Result<(Var, Option<Var>)> {
        let cfg = ctx.cfg;
        let norm = |x: &Var, w: &Var| rmsnorm(x, w, cfg.rms_norm_eps, cfg.norm_offset);
        let a = self.attention(&norm(h, &self.input_layernorm)?, ctx, cache)?;
        if !cfg.sandwich_norms {
            let h = h.add(&a)?;
            let (m, router) = self.mlp(&norm(&h, &self.post_attention_layernorm)?, cfg)?;
            return Ok((h.add(&m)?, router));
        }
        // Gemma 2: each branch output is normed before it joins the residual.
        let h = h.add(&norm(&a, &self.post_attention_layernorm)?)?;
        let (pre, post) = match (
            &self.pre_feedforward_layernorm,
            &self.post_feedforward_layernorm,
        ) {
            (Some(pre), Some(post)) => (pre, post),
            _ => {
                return Err(lmf_autograd::Error::invalid(
                    "decoder",
                    "sandwich norms need the feedforward norms",
                ))
            }
        };
        let (m, router) = self.mlp(&norm(&h, pre)?, cfg)?;
        Ok((h.add(&norm(&m, post)?)?, router))
    }

    /// Attention block on normed `x: [tokens, hidden]`.
    fn attention(&self, x: &Var, ctx: &LayerCtx, cache: Option<&mut KvCache>) -> Result<Var> {
        let cfg = ctx.cfg;
        let at = &self.self_attn;
        let n = x.shape()[0];
        let (h, kvh, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        // q: [n, H, D], k, v: [n, KVH, D]
        let (mut q, mut k, v) = match &at.qkv {
            QkvProj::Split {
                q_proj,
                k_proj,
                v_proj,
            } => (q_proj.forward(x)?, k_proj.forward(x)?, v_proj.forward(x)?),
            QkvProj::Fused { qkv_proj } => {
                // [n, (H + 2·KVH)·D] → q | k | v columns
                let y = qkv_proj.forward(x)?;
                let part = |at: usize, len: usize| y.narrow(1, at, len)?.contiguous();
                (
                    part(0, h * d)?,
                    part(h * d, kvh * d)?,
                    part((h + kvh) * d, kvh * d)?,
                )
            }
        };
        q = q.reshape(&[n, h, d])?;
        k = k.reshape(&[n, kvh, d])?;
        let v = v.reshape(&[n, kvh, d])?;
        if let (Some(qn), Some(kn)) = (&at.q_norm, &at.k_norm) {
            q = rmsnorm(&q, qn, cfg.rms_norm_eps, cfg.norm_offset)?;
            k = rmsnorm(&k, kn, cfg.rms_norm_eps, cfg.norm_offset)?;
        }
        let r = cfg.rope.rotary_dim;
        let (cos, sin) = ctx.rope.for_layer(cfg, self.index);
        let q = rope(&q, cos, sin, r)?;
        let k = rope(&k, cos, sin, r)?;
        let params = AttnParams {
            num_heads: h,
            num_kv_heads: kvh,
            head_dim: d,
            causal: true,
            window: cfg.layer_windows[self.index],
            scale: cfg.attn_scale,
            softcap: cfg.attn_softcap,
        };
        let attend = |k: &Var, v: &Var, cu_k: &[usize]| match &at.sinks {
            Some(sinks) => attention_with_sinks(&q, k, v, sinks, ctx.cu_seqlens, cu_k, &params),
            None => attention(&q, k, v, ctx.cu_seqlens, cu_k, &params),
        };
        let o = match cache {
            None => attend(&k, &v, ctx.cu_seqlens)?,
            Some(cache) if cache.is_host() && !is_grad_enabled() && at.sinks.is_none() => {
                Var::constant(cache.attend_in_place(
                    self.index,
                    ctx.cu_seqlens,
                    q.tensor(),
                    k.tensor(),
                    v.tensor(),
                    &params,
                )?)
            }
            Some(cache) => {
                let (k_all, v_all, cu_k) =
                    cache.append(self.index, ctx.cu_seqlens, k.tensor(), v.tensor())?;
                let (k_all, v_all) = (Var::constant(k_all), Var::constant(v_all));
                attend(&k_all, &v_all, &cu_k)?
            }
        };
        at.o_proj.forward(&o.reshape(&[n, h * d])?)
    }

    /// Gated MLP (dense or mixture of experts) on normed `x: [tokens, hidden]`, with the
    /// router logits of a MoE layer.
    fn mlp(&self, x: &Var, cfg: &ModelConfig) -> Result<(Var, Option<Var>)> {
        match (&self.mlp, &self.moe, &cfg.moe) {
            (Some(mlp), _, _) => {
                let (g, u) = match &mlp.gate_up {
                    GateUpProj::Split { gate_proj, up_proj } => {
                        (gate_proj.forward(x)?, up_proj.forward(x)?)
                    }
                    GateUpProj::Fused { gate_up_proj } => {
                        // [n, 2I] → gate | up columns
                        let y = gate_up_proj.forward(x)?;
                        let i = y.shape()[1] / 2;
                        (
                            y.narrow(1, 0, i)?.contiguous()?,
                            y.narrow(1, i, i)?.contiguous()?,
                        )
                    }
                };
                Ok((mlp.down_proj.forward_glu(&g, &u, cfg.act)?, None))
            }
            (None, Some(moe), Some(mc)) => {
                let (y, routing) = moe.forward(x, cfg, mc)?;
                Ok((y, Some(routing.logits)))
            }
            _ => Err(lmf_autograd::Error::invalid(
                "decoder",
                "a layer needs a dense MLP or experts",
            )),
        }
    }
}
