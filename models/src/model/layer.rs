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
    attention, attention_with_sinks, glu, rmsnorm, rope, rope_cos_sin, AttnParams,
};
use lmf_autograd::{DType, Device, Result, Tensor, Var};

/// `self_attn.*` of one layer.
#[derive(Clone)]
pub struct Attention {
    /// `q_proj: [heads·head_dim, hidden]`.
    pub q_proj: Linear,
    /// `k_proj: [kv_heads·head_dim, hidden]`.
    pub k_proj: Linear,
    /// `v_proj: [kv_heads·head_dim, hidden]`.
    pub v_proj: Linear,
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
    /// `gate_proj: [intermediate, hidden]`.
    pub gate_proj: Linear,
    /// `up_proj: [intermediate, hidden]`.
    pub up_proj: Linear,
    /// `down_proj: [hidden, intermediate]`.
    pub down_proj: Linear,
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
        let mut q = at.q_proj.forward(x)?.reshape(&[n, h, d])?;
        let mut k = at.k_proj.forward(x)?.reshape(&[n, kvh, d])?;
        let v = at.v_proj.forward(x)?.reshape(&[n, kvh, d])?;
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
                let g = mlp.gate_proj.forward(x)?;
                let u = mlp.up_proj.forward(x)?;
                Ok((mlp.down_proj.forward(&glu(&g, &u, cfg.act)?)?, None))
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
