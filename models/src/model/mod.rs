//! The decoder-only causal LM of the Llama family (Llama, Mistral, Qwen2/3, Gemma 1/2) on
//! autograd variables named exactly as in Hugging Face checkpoints:
//! `model.embed_tokens` → N × `model.layers.{i}` → `model.norm` → `lm_head` (or the tied
//! embedding). Every forward works on packed sequences ([`SeqBatch`]); padded batches are
//! unpadded first, so a padded row and the same row alone give the same logits.

pub mod embed_lora;
pub mod kv_cache;
pub mod layer;
pub mod linear;
pub mod moe;
pub mod neftune;

pub use embed_lora::EmbedLora;
pub use kv_cache::KvCache;
pub use layer::{Attention, DecoderLayer, GateUpProj, Mlp, QkvProj};
pub use linear::{batch_invariant, InputTap, Linear, Lora};
pub use moe::{ExpertWeights, MoeBlock};

use crate::batch::SeqBatch;
use crate::config::{Arch, ModelConfig};
use crate::quantize::{LoadQuant, QuantSpec};
use crate::value_head::ValueHead;
use crate::weights::Weights;
use crate::{Error, Result};
use layer::{LayerCtx, RopeTables};
use lmf_autograd::checkpoint::checkpoint;
use lmf_autograd::grad_mode::is_grad_enabled;
use lmf_autograd::ops::fused::{embedding, quant_linear, rmsnorm, QuantBase};
use lmf_autograd::{DType, Device, Tensor, Var};
use lmf_kernels::cpu::bf16_weight::Bf16Weight;
use std::path::Path;
use std::sync::Arc;

/// Walks the parameters of a [`CausalLM`] in HF checkpoint order, pushing `(name, $r param)`
/// into `$out` (`$push` is `Linear::push_params` or its `_mut` twin).
macro_rules! visit_params {
    ($m:expr, $out:ident, $push:ident, $($r:tt)+) => {{
        $out.push(("model.embed_tokens.weight".to_string(), $($r)+ $m.embed_tokens));
        if let Some(l) = $($r)+ $m.embed_lora {
            $out.push(("model.embed_tokens.lora_embedding_A".to_string(), $($r)+ l.a));
            $out.push(("model.embed_tokens.lora_embedding_B".to_string(), $($r)+ l.b));
        }
        for l in $($r)+ $m.layers {
            let p = format!("model.layers.{}", l.index);
            let a = $($r)+ l.self_attn;
            match $($r)+ a.qkv {
                QkvProj::Split { q_proj, k_proj, v_proj } => {
                    q_proj.$push(&format!("{p}.self_attn.q_proj"), &mut $out);
                    k_proj.$push(&format!("{p}.self_attn.k_proj"), &mut $out);
                    v_proj.$push(&format!("{p}.self_attn.v_proj"), &mut $out);
                }
                QkvProj::Fused { qkv_proj } => {
                    qkv_proj.$push(&format!("{p}.self_attn.qkv_proj"), &mut $out);
                }
            }
            a.o_proj.$push(&format!("{p}.self_attn.o_proj"), &mut $out);
            if let Some(v) = $($r)+ a.q_norm {
                $out.push((format!("{p}.self_attn.q_norm.weight"), v));
            }
            if let Some(v) = $($r)+ a.k_norm {
                $out.push((format!("{p}.self_attn.k_norm.weight"), v));
            }
            if let Some(v) = $($r)+ a.sinks {
                $out.push((format!("{p}.self_attn.sinks"), v));
            }
            if let Some(mlp) = $($r)+ l.mlp {
                match $($r)+ mlp.gate_up {
                    GateUpProj::Split { gate_proj, up_proj } => {
                        gate_proj.$push(&format!("{p}.mlp.gate_proj"), &mut $out);
                        up_proj.$push(&format!("{p}.mlp.up_proj"), &mut $out);
                    }
                    GateUpProj::Fused { gate_up_proj } => {
                        gate_up_proj.$push(&format!("{p}.mlp.gate_up_proj"), &mut $out);
                    }
                }
                mlp.down_proj.$push(&format!("{p}.mlp.down_proj"), &mut $out);
            }
            if let Some(moe) = $($r)+ l.moe {
                moe.router.$push(&format!("{p}.{}", moe::router_path(&$m.config)), &mut $out);
                // experts kept MXFP4 are no parameters (frozen, like a QLoRA base)
                let (gate_up, down) = match $($r)+ moe.experts {
                    ExpertWeights::Dense { gate_up, down } => (Some(gate_up), Some(down)),
                    ExpertWeights::Mxfp4 { .. } => (None, None),
                };
                if let Some(v) = gate_up {
                    $out.push((format!("{p}.mlp.experts.gate_up_proj"), v));
                }
                if let Some(b) = $($r)+ moe.gate_up_bias {
                    $out.push((format!("{p}.mlp.experts.gate_up_proj_bias"), b));
                }
                if let Some(v) = down {
                    $out.push((format!("{p}.mlp.experts.down_proj"), v));
                }
                if let Some(b) = $($r)+ moe.down_bias {
                    $out.push((format!("{p}.mlp.experts.down_proj_bias"), b));
                }
            }
            $out.push((format!("{p}.input_layernorm.weight"), $($r)+ l.input_layernorm));
            $out.push((format!("{p}.post_attention_layernorm.weight"), $($r)+ l.post_attention_layernorm));
            if let Some(v) = $($r)+ l.pre_feedforward_layernorm {
                $out.push((format!("{p}.pre_feedforward_layernorm.weight"), v));
            }
            if let Some(v) = $($r)+ l.post_feedforward_layernorm {
                $out.push((format!("{p}.post_feedforward_layernorm.weight"), v));
            }
        }
        $out.push(("model.norm.weight".to_string(), $($r)+ $m.norm));
        if let Some(h) = $($r)+ $m.lm_head {
            $out.push(("lm_head.weight".to_string(), h));
        }
        if let Some(l) = $($r)+ $m.head_lora {
            $out.push(("lm_head.lora_A.weight".to_string(), $($r)+ l.a));
            $out.push(("lm_head.lora_B.weight".to_string(), $($r)+ l.b));
        }
        if let Some(v) = $($r)+ $m.value_head {
            $out.push((crate::value_head::WEIGHT.to_string(), $($r)+ v.weight));
            $out.push((crate::value_head::BIAS.to_string(), $($r)+ v.bias));
        }
    }};
}

/// A loaded causal LM.
#[derive(Clone)]
pub struct CausalLM {
    /// Parsed `config.json`.
    pub config: ModelConfig,
    /// `model.embed_tokens.weight: [vocab, hidden]`.
    pub embed_tokens: Var,
    /// `model.layers`.
    pub layers: Vec<DecoderLayer>,
    /// `model.norm.weight: [hidden]`.
    pub norm: Var,
    /// `lm_head.weight: [vocab, hidden]`; `None` when tied to the embedding.
    pub lm_head: Option<Var>,
    /// LoRA on the token embedding (`lora_target` naming `embed_tokens`).
    pub embed_lora: Option<EmbedLora>,
    /// LoRA on the output head (`lora_target` naming `lm_head`); its base is
    /// [`CausalLM::head_weight`], also when that is the tied embedding.
    pub head_lora: Option<Lora>,
    /// Compute dtype of the weights.
    pub dtype: DType,
    /// Device the weights live on.
    pub device: Device,
    /// The value head of stages rm and ppo (`v_head.summary.*`, listed last by
    /// [`CausalLM::named_parameters`]); `None` for a plain causal LM.
    pub value_head: Option<ValueHead>,
    /// The output head kept in bf16 by [`CausalLM::keep_weights_bf16`]; when set, [`CausalLM::logits`]
    /// uses it (and an untied `lm_head` holds an empty `[0, hidden]` placeholder).
    pub head_bf16: Option<Arc<QuantBase>>,
    /// Recompute each decoder layer in backward instead of keeping its activations
    /// (HF `gradient_checkpointing_enable`); only affects forwards that record a tape.
    pub gradient_checkpointing: bool,
    /// Under gradient checkpointing, the bytes of activations the forward may keep for
    /// layers it runs without a checkpoint: the last `budget / layer_activation_bytes`
    /// layers are not checkpointed (their backward recomputes nothing). 0, the default,
    /// checkpoints every layer. See [`CausalLM::unchecked_layers`].
    pub checkpoint_keep_bytes: usize,
    /// LLaMA-Factory's `moe_aux_loss_coef` of a training run: the MoE load-balancing loss
    /// joins the loss with this weight (see [`CausalLM::aux_loss_weight`]).
    pub moe_aux_loss_coef: Option<f64>,
}

impl CausalLM {
    /// Loads `dir` (config.json + safetensors), casting weights to `dtype` on `device`.
    pub fn load(dir: &Path, dtype: DType, device: Device) -> Result<CausalLM> {
        Self::load_quantized(dir, dtype, device, None)
    }

    /// [`CausalLM::load`], quantizing the decoder layers' linears on the fly per `quant`
    /// (bitsandbytes 4/8-bit, see [`crate::quantize`]), or with
    /// [`QuantSpec::Mxfp4Experts`] keeping an MXFP4 GPT-OSS checkpoint's experts 4-bit;
    /// quantized layers live on the CPU.
    pub fn load_quantized(
        dir: &Path,
        dtype: DType,
        device: Device,
        quant: Option<&QuantSpec>,
    ) -> Result<CausalLM> {
        if quant == Some(&QuantSpec::Mxfp4Experts) {
            crate::quantize::require_mxfp4_checkpoint(dir)?;
        }
        let config = ModelConfig::from_dir(dir)?;
        // A checkpoint saved quantized keeps its own quantization (LLaMA-Factory: "`quantization_bit`
        // will not affect on the PTQ-quantized models").
        let saved = crate::quantize::checkpoint_quantization(dir)?;
        if saved.is_some() && quant.is_some() {
            eprintln!("note: `quantization_bit` has no effect on an already quantized checkpoint");
        }
        let quant = saved.or_else(|| quant.map(|q| LoadQuant::OnTheFly(*q)));
        let weights = Weights::from_dir(dir)?;
        Self::from_weights(config, &weights, dtype, device, quant.as_ref())
    }

    /// Builds the model from already opened weights (see [`CausalLM::load_quantized`]).
    pub fn from_weights(
        config: ModelConfig,
        w: &Weights,
        dtype: DType,
        device: Device,
        quant: Option<&LoadQuant>,
    ) -> Result<CausalLM> {
        let c = &config;
        if quant.is_some() && device != Device::Cpu {
            return Err(Error::msg(
                "quantized (QLoRA) models run on the CPU only for now: set `use_cpu: true` \
                 or drop `quantization_bit`",
            ));
        }
        // MXFP4: only the experts stay quantized; every linear loads dense
        let keep_mxfp4 = quant == Some(&LoadQuant::OnTheFly(QuantSpec::Mxfp4Experts));
        if keep_mxfp4 && c.arch != Arch::GptOss {
            return Err(Error::msg(format!(
                "`quantization_method: mxfp4` keeps the MXFP4 experts of GPT-OSS checkpoints \
                 4-bit; `{}` has none",
                c.model_type
            )));
        }
        let load = |name: &str, shape: &[usize]| -> Result<Var> {
            Ok(Var::param(w.load(name, shape, dtype, device)?))
        };
        let linear = |name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let bias = if bias {
                Some(load(&format!("{name}.bias"), &[out])?)
            } else {
                None
            };
            let wname = format!("{name}.weight");
            match quant {
                Some(LoadQuant::Saved(saved)) => {
                    match crate::quantize::load_saved_linear(w, name, out, inp, saved)? {
                        Some(base) => Ok(Linear::quantized(base, bias)?),
                        // a linear the quantizer skipped stays dense
                        None => Ok(Linear::new(load(&wname, &[out, inp])?, bias)),
                    }
                }
                Some(LoadQuant::OnTheFly(q)) if q.quantizes_linears() => {
                    let w32 = w.load(&wname, &[out, inp], DType::F32, Device::Cpu)?;
                    match q.quantize(&w32.to_vec::<f32>()?, out, inp) {
                        Some(base) => Ok(Linear::quantized(base, bias)?),
                        None => Ok(Linear::new(load(&wname, &[out, inp])?, bias)),
                    }
                }
                _ => Ok(Linear::new(load(&wname, &[out, inp])?, bias)),
            }
        };
        let (hd, q, kv) = (
            c.hidden_size,
            c.num_heads * c.head_dim,
            c.num_kv_heads * c.head_dim,
        );
        let layers = (0..c.num_layers)
            .map(|i| -> Result<DecoderLayer> {
                let p = format!("model.layers.{i}");
                let a = format!("{p}.self_attn");
                let m = format!("{p}.mlp");
                let norm = |n: &str, d: usize| load(&format!("{n}.weight"), &[d]);
                let sparse = c.moe.as_ref().is_some_and(|m| m.sparse_layers[i]);
                Ok(DecoderLayer {
                    index: i,
                    input_layernorm: norm(&format!("{p}.input_layernorm"), hd)?,
                    self_attn: Attention {
                        qkv: if c.fused_proj {
                            QkvProj::Fused {
                                qkv_proj: linear(
                                    &format!("{a}.qkv_proj"),
                                    q + 2 * kv,
                                    hd,
                                    c.qkv_bias,
                                )?,
                            }
                        } else {
                            QkvProj::Split {
                                q_proj: linear(&format!("{a}.q_proj"), q, hd, c.qkv_bias)?,
                                k_proj: linear(&format!("{a}.k_proj"), kv, hd, c.qkv_bias)?,
                                v_proj: linear(&format!("{a}.v_proj"), kv, hd, c.qkv_bias)?,
                            }
                        },
                        o_proj: linear(&format!("{a}.o_proj"), hd, q, c.o_bias)?,
                        q_norm: c
                            .qk_norm
                            .then(|| norm(&format!("{a}.q_norm"), c.head_dim))
                            .transpose()?,
                        k_norm: c
                            .qk_norm
                            .then(|| norm(&format!("{a}.k_norm"), c.head_dim))
                            .transpose()?,
                        sinks: (c.arch == Arch::GptOss)
                            .then(|| load(&format!("{a}.sinks"), &[c.num_heads]))
                            .transpose()?,
                    },
                    post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm"), hd)?,
                    pre_feedforward_layernorm: c
                        .sandwich_norms
                        .then(|| norm(&format!("{p}.pre_feedforward_layernorm"), hd))
                        .transpose()?,
                    post_feedforward_layernorm: c
                        .sandwich_norms
                        .then(|| norm(&format!("{p}.post_feedforward_layernorm"), hd))
                        .transpose()?,
                    mlp: if sparse {
                        None
                    } else {
                        let inter = c.intermediate_size;
                        Some(Mlp {
                            gate_up: if c.fused_proj {
                                GateUpProj::Fused {
                                    gate_up_proj: linear(
                                        &format!("{m}.gate_up_proj"),
                                        2 * inter,
                                        hd,
                                        c.mlp_bias,
                                    )?,
                                }
                            } else {
                                GateUpProj::Split {
                                    gate_proj: linear(
                                        &format!("{m}.gate_proj"),
                                        inter,
                                        hd,
                                        c.mlp_bias,
                                    )?,
                                    up_proj: linear(
                                        &format!("{m}.up_proj"),
                                        inter,
                                        hd,
                                        c.mlp_bias,
                                    )?,
                                }
                            },
                            down_proj: linear(
                                &format!("{m}.down_proj"),
                                hd,
                                c.intermediate_size,
                                c.mlp_bias,
                            )?,
                        })
                    },
                    moe: match (&c.moe, sparse) {
                        (Some(mc), true) => {
                            Some(moe::load(w, &p, c, mc, dtype, device, keep_mxfp4)?)
                        }
                        _ => None,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // A tied checkpoint may still carry `lm_head.weight` (a copy); the tie wins, as in HF.
        let lm_head = if c.tie_word_embeddings {
            None
        } else if w.contains("lm_head.weight") {
            Some(load("lm_head.weight", &[c.vocab_size, hd])?)
        } else {
            return Err(Error::msg(format!(
                "{}: missing tensor `lm_head.weight` (config.json has tie_word_embeddings: false)",
                w.describe()
            )));
        };
        Ok(CausalLM {
            embed_tokens: load("model.embed_tokens.weight", &[c.vocab_size, hd])?,
            norm: load("model.norm.weight", &[hd])?,
            layers,
            lm_head,
            embed_lora: None,
            head_lora: None,
            value_head: None,
            head_bf16: None,
            dtype,
            device,
            config,
            gradient_checkpointing: false,
            checkpoint_keep_bytes: 0,
            moe_aux_loss_coef: None,
        })
    }

    /// Every parameter with its HF name (adapter parameters under PEFT's names), in
    /// checkpoint order.
    pub fn named_parameters(&self) -> Vec<(String, &Var)> {
        let mut out = Vec::new();
        visit_params!(self, out, push_params, &);
        out
    }

    /// [`CausalLM::named_parameters`] with mutable access: optimizer steps, freezing.
    pub fn named_parameters_mut(&mut self) -> Vec<(String, &mut Var)> {
        let mut out = Vec::new();
        visit_params!(self, out, push_params_mut, &mut);
        out
    }

    /// Sets `requires_grad` of every parameter to `trainable(name)` (keeping the data): the
    /// full / freeze / adapter selection of what trains.
    /// The value head, when attached, always trains: TRL adds it after the adapter / freeze
    /// set-up, outside what those select.
    pub fn set_trainable(&mut self, trainable: impl Fn(&str) -> bool) {
        for (name, v) in self.named_parameters_mut() {
            let want = trainable(&name) || crate::value_head::is_value_head_param(&name);
            if v.requires_grad() != want {
                *v = Var::leaf(v.tensor().clone(), want);
            }
        }
    }

    /// The trainable parameters (`requires_grad`) with their names, in checkpoint order.
    pub fn trainable_parameters(&self) -> Vec<(String, &Var)> {
        self.named_parameters()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .collect()
    }

    /// Every parameter under the name a Hugging Face checkpoint stores it by (value head
    /// and adapters included, as [`CausalLM::named_parameters`]): the same list, except that
    /// each MoE layer's stacked experts are split into the Hub's per-expert tensors, as
    /// transformers 5.6's `save_pretrained` writes them.
    /// A model whose experts are kept MXFP4 ([`QuantSpec::Mxfp4Experts`]) is refused.
    pub fn hub_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        if self.has_mxfp4_experts() {
            return Err(Error::msg(format!(
                "cannot write the full model: {}",
                moe::KEPT_MXFP4_SAVE
            )));
        }
        let mut out = vec![];
        for (name, v) in self.named_parameters() {
            match self.moe_param(&name) {
                // the layer's whole block is written in place of its stacked gate_up
                Some((layer, block)) if name.ends_with(".mlp.experts.gate_up_proj") => {
                    out.extend(moe::hub_tensors(block, layer, &self.config)?);
                }
                Some(_) => {}
                None => out.push((name, v.tensor().clone())),
            }
        }
        Ok(out)
    }

    /// The MoE layer (`model.layers.{i}`, block) that parameter `name` belongs to: its router
    /// or its stacked experts.
    fn moe_param<'n>(&self, name: &'n str) -> Option<(&'n str, &MoeBlock)> {
        let router = format!(".{}.", moe::router_path(&self.config));
        let at = name.find(".mlp.experts.").or_else(|| name.find(&router))?;
        let layer = &name[..at];
        let block = self
            .layers
            .iter()
            .find(|l| format!("model.layers.{}", l.index) == layer)?
            .moe
            .as_ref()?;
        Some((layer, block))
    }

    /// Replaces every parameter (except the value head, which `keep` may skip) with the
    /// tensor of checkpoint `w`, reading MoE experts in any layout [`CausalLM::load`] reads
    /// (the inverse of [`CausalLM::hub_tensors`]). `keep(name)` true leaves a parameter as is.
    pub fn load_hub_tensors(&mut self, w: &Weights, keep: impl Fn(&str) -> bool) -> Result<()> {
        let cfg = self.config.clone();
        let mut experts = std::collections::HashMap::new();
        if let Some(mc) = &cfg.moe {
            for l in self.layers.iter().filter(|l| l.moe.is_some()) {
                let layer = format!("model.layers.{}", l.index);
                let v = &l.self_attn.o_proj.weight;
                let t = moe::load_tensors(w, &layer, &cfg, mc, v.dtype(), v.device(), false)?;
                experts.insert(layer, t);
            }
        }
        let router = moe::router_path(&cfg);
        for (name, var) in self.named_parameters_mut() {
            if keep(&name) {
                continue;
            }
            let part = |suffix: &str| {
                name.strip_suffix(suffix)
                    .and_then(|layer| experts.get(layer))
            };
            let t = if let Some(x) = part(&format!(".{router}.weight")) {
                x.router.clone()
            } else if let Some(b) =
                part(&format!(".{router}.bias")).and_then(|x| x.router_bias.as_ref())
            {
                b.clone()
            } else if let Some((gu, _)) =
                part(".mlp.experts.gate_up_proj").and_then(|x| x.experts.dense())
            {
                gu.tensor().clone()
            } else if let Some(b) =
                part(".mlp.experts.gate_up_proj_bias").and_then(|x| x.gate_up_bias.as_ref())
            {
                b.clone()
            } else if let Some((_, dn)) =
                part(".mlp.experts.down_proj").and_then(|x| x.experts.dense())
            {
                dn.tensor().clone()
            } else if let Some(b) =
                part(".mlp.experts.down_proj_bias").and_then(|x| x.down_bias.as_ref())
            {
                b.clone()
            } else {
                w.load(&name, var.shape(), var.dtype(), var.device())?
            };
            *var.tensor_mut() = t;
        }
        Ok(())
    }

    /// Whether the decoder linears are quantized (QLoRA), or the MoE experts kept MXFP4:
    /// their base cannot be merged into, saved whole or fine-tuned.
    pub fn is_quantized(&self) -> bool {
        self.layers.iter().any(|l| {
            l.self_attn
                .o_proj
                .quant
                .as_ref()
                .is_some_and(|q| !q.is_bf16())
        }) || self.has_mxfp4_experts()
    }

    /// Keeps every dense linear weight without an adapter (the decoder's attention and MLP
    /// linears, and the output head) in bf16 for inference (`infer_dtype: bfloat16` on the
    /// CPU): half the bytes each decode step streams, products with bf16 activations and f32
    /// sums ([`lmf_kernels::cpu::bf16_weight`]). q/k/v and gate/up become one fused linear
    /// each ([`QkvProj::Fused`], [`GateUpProj::Fused`]: the same sums per output, one pass
    /// over the input). The embedding lookups, norms, attention and KV cache stay f32. Frozen
    /// from then on: call it on a model that only infers (parameter names change with the
    /// fusion). A CPU f32 model only; returns how many bf16 weights it made.
    pub fn keep_weights_bf16(&mut self) -> Result<usize> {
        if self.device != Device::Cpu || self.dtype != DType::F32 {
            return Err(Error::Msg(format!(
                "bf16 weights are kept only for an f32 model on the CPU (this one is {} on {:?})",
                self.dtype, self.device
            )));
        }
        let mut converted = 0;
        for layer in &mut self.layers {
            // q/k/v and gate/up read the same input: one product each (fewer passes)
            if let QkvProj::Split {
                q_proj,
                k_proj,
                v_proj,
            } = &layer.self_attn.qkv
            {
                if let Some(qkv_proj) = bf16_linear(&[q_proj, k_proj, v_proj])? {
                    layer.self_attn.qkv = QkvProj::Fused { qkv_proj };
                    converted += 1;
                }
            }
            if let Some(mlp) = &mut layer.mlp {
                if let GateUpProj::Split { gate_proj, up_proj } = &mlp.gate_up {
                    if let Some(gate_up_proj) = bf16_linear(&[gate_proj, up_proj])? {
                        mlp.gate_up = GateUpProj::Fused { gate_up_proj };
                        converted += 1;
                    }
                }
            }
            let mut linears = layer.self_attn.linears_mut();
            if let Some(mlp) = &mut layer.mlp {
                linears.extend(mlp.linears_mut());
            }
            for (_, lin) in linears {
                if let Some(bf16) = bf16_linear(&[lin])? {
                    *lin = bf16;
                    converted += 1;
                }
            }
        }
        if self.head_lora.is_none() {
            let w = self.head_weight();
            let (vocab, hidden) = (w.shape()[0], w.shape()[1]);
            let data = w.tensor().to_vec::<f32>()?;
            self.head_bf16 = Some(Arc::new(QuantBase::Bf16(Bf16Weight::from_f32(
                &data, vocab, hidden,
            ))));
            // an untied head's f32 copy is not read again
            if self.lm_head.is_some() {
                self.lm_head = Some(Var::leaf(
                    Tensor::zeros(&[0, hidden], DType::F32, Device::Cpu)?,
                    false,
                ));
            }
            converted += 1;
        }
        Ok(converted)
    }

    /// Whether some MoE layer keeps its experts MXFP4 ([`QuantSpec::Mxfp4Experts`]).
    pub fn has_mxfp4_experts(&self) -> bool {
        self.layers
            .iter()
            .any(|l| l.moe.as_ref().is_some_and(|m| m.experts.is_quantized()))
    }

    /// The output head matrix `[vocab, hidden]` (the embedding when tied).
    pub fn head_weight(&self) -> &Var {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// The operands `(h', W')` of the head product for hidden states `h: [rows, hidden]`,
    /// `logits = h'·W'ᵀ` (before Gemma 2's soft-cap): `(h, head_weight)`, or with a head
    /// adapter the widened pair of [`embed_lora::head_inputs`]. What losses that take the head
    /// weight (the fused cross-entropy) must be given.
    pub fn head_inputs(&self, hidden: &Var) -> Result<(Var, Var)> {
        Ok(embed_lora::head_inputs(
            hidden,
            self.head_weight(),
            self.head_lora.as_ref(),
        )?)
    }

    /// Final hidden states `[tokens, hidden]` (after `model.norm`). With a cache, the batch
    /// holds only the new tokens of each cached sequence (positions offset by the cache).
    pub fn forward_hidden(&self, batch: &SeqBatch, cache: Option<&mut KvCache>) -> Result<Var> {
        Ok(self.run_layers(batch, cache, false)?.0)
    }

    /// The weight of the MoE load-balancing loss in a loss given labels, or `None` when
    /// transformers would not add it: `moe_aux_loss_coef` (which LLaMA-Factory turns into
    /// `output_router_logits` + `router_aux_loss_coef`), else config.json's own
    /// `router_aux_loss_coef` when it sets `output_router_logits`.
    pub fn aux_loss_weight(&self) -> Option<f64> {
        let mc = self.config.moe.as_ref()?;
        self.moe_aux_loss_coef
            .filter(|_| mc.lf_aux_loss)
            .or(mc.output_router_logits.then_some(mc.router_aux_loss_coef))
    }

    /// [`CausalLM::forward_hidden`] of a forward with labels, with the weighted MoE
    /// load-balancing loss ([`moe::load_balancing_loss`] × [`CausalLM::aux_loss_weight`])
    /// the loss must add, if any.
    pub fn forward_hidden_aux(&self, batch: &SeqBatch) -> Result<(Var, Option<Var>)> {
        let Some((mc, weight)) = self.config.moe.as_ref().zip(self.aux_loss_weight()) else {
            return Ok((self.forward_hidden(batch, None)?, None));
        };
        let (h, routers) = self.run_layers(batch, None, true)?;
        let aux = match moe::load_balancing_loss(&routers, mc)? {
            Some(a) => Some(a.scale(weight)?),
            None => None,
        };
        Ok((h, aux))
    }

    /// The decoder stack; with `routers`, also each MoE layer's router logits.
    fn run_layers(
        &self,
        batch: &SeqBatch,
        mut cache: Option<&mut KvCache>,
        routers: bool,
    ) -> Result<(Var, Vec<Var>)> {
        let c = &self.config;
        if let Some((i, &id)) = batch
            .ids
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= c.vocab_size)
        {
            return Err(Error::msg(format!(
                "token id {id} at position {i} is outside the vocabulary ({} tokens)",
                c.vocab_size
            )));
        }
        if let Some(cache) = cache.as_deref() {
            if cache.lens().len() != batch.num_seqs() {
                return Err(Error::msg(format!(
                    "KV cache holds {} sequences but the batch has {}",
                    cache.lens().len(),
                    batch.num_seqs()
                )));
            }
        }
        let mut h = self.embed(batch)?;
        let rope = RopeTables::new(c, &batch.positions, self.dtype, self.device)?;
        let ctx = LayerCtx {
            cfg: c,
            cu_seqlens: &batch.cu_seqlens,
            rope: &rope,
        };
        let checkpointing = self.gradient_checkpointing && cache.is_none() && is_grad_enabled();
        // the last `kept` layers run without a checkpoint (see `unchecked_layers`)
        let kept = self.unchecked_layers(batch.num_tokens());
        let first_kept = self.layers.len() - kept;
        let mut logits = vec![];
        for (i, layer) in self.layers.iter().enumerate() {
            let router;
            (h, router) = if checkpointing && i < first_kept {
                checkpoint_layer(layer, &h, c, &batch.cu_seqlens, &rope)?
            } else {
                layer.forward_routed(&h, &ctx, cache.as_deref_mut())?
            };
            if let (true, Some(r)) = (routers, router) {
                logits.push(r);
            }
        }
        if let Some(cache) = cache {
            cache.advance(&batch.cu_seqlens);
        }
        let h = rmsnorm(&h, &self.norm, c.rms_norm_eps, c.norm_offset)?;
        Ok((h, logits))
    }

    /// Estimated bytes one decoder layer's forward keeps for its backward over `tokens`
    /// tokens: per token, the element size times `4·hidden + 2·q_width + 2·kv_width +
    /// 3·mlp_width` (the layer input and the two normed inputs, q and the attention output,
    /// k and v, the MLP's gate, up and their product; `mlp_width` is the dense
    /// intermediate size, or top-k × the expert width when that is larger).
    pub fn layer_activation_bytes(&self, tokens: usize) -> usize {
        let c = &self.config;
        let mlp = c
            .moe
            .as_ref()
            .map_or(0, |m| m.top_k * m.intermediate_size)
            .max(c.intermediate_size);
        let per_token = 4 * c.hidden_size
            + 2 * c.num_heads * c.head_dim
            + 2 * c.num_kv_heads * c.head_dim
            + 3 * mlp;
        tokens * per_token * self.dtype.size_in_bytes()
    }

    /// How many of the last decoder layers a checkpointed training forward over `tokens`
    /// tokens runs without a checkpoint: as many as fit in [`CausalLM::checkpoint_keep_bytes`]
    /// at [`CausalLM::layer_activation_bytes`] each. The choice never changes a result
    /// (a recomputed layer gives the bits of its first forward), only memory and time.
    pub fn unchecked_layers(&self, tokens: usize) -> usize {
        let per_layer = self.layer_activation_bytes(tokens).max(1);
        (self.checkpoint_keep_bytes / per_layer).min(self.layers.len())
    }

    /// Bytes of every parameter, in its dtype.
    pub fn parameter_bytes(&self) -> usize {
        self.named_parameters()
            .iter()
            .map(|(_, v)| v.elem_count() * v.dtype().size_in_bytes())
            .sum()
    }

    /// The input of the first decoder layer, `[tokens, hidden]`: the token embeddings (scaled
    /// by √hidden for Gemma).
    pub fn embed(&self, batch: &SeqBatch) -> Result<Var> {
        let ids: Vec<i64> = batch.ids.iter().map(|&i| i as i64).collect();
        let ids = Tensor::from_vec(ids, &[batch.num_tokens()], self.device)?;
        let mut h = embedding(&self.embed_tokens, &ids)?;
        if let Some(l) = &self.embed_lora {
            if let Some(d) = l.delta(&ids, &batch.ids, self.config.pad_token_id)? {
                h = h.add(&d)?;
            }
        }
        let h = neftune::add_noise(h)?;
        match self.config.embed_scale {
            // HF multiplies by sqrt(hidden) rounded to the compute dtype.
            Some(s) => Ok(h.scale(s as f32 as f64)?),
            None => Ok(h),
        }
    }

    /// Decoder layer `index` alone on `h: [tokens, hidden]` of `batch` (no cache): what
    /// layer-by-layer work such as GPTQ calibration runs.
    pub fn forward_layer(&self, index: usize, h: &Var, batch: &SeqBatch) -> Result<Var> {
        let layer = self.layers.get(index).ok_or_else(|| {
            Error::msg(format!(
                "layer {index} of a {}-layer model",
                self.layers.len()
            ))
        })?;
        let rope = RopeTables::new(&self.config, &batch.positions, self.dtype, self.device)?;
        let ctx = LayerCtx {
            cfg: &self.config,
            cu_seqlens: &batch.cu_seqlens,
            rope: &rope,
        };
        Ok(layer.forward(h, &ctx, None)?)
    }

    /// Logits `[rows, vocab]` of hidden states `[rows, hidden]` (with Gemma 2's final
    /// soft-cap).
    pub fn logits(&self, hidden: &Var) -> Result<Var> {
        let mut logits = match &self.head_bf16 {
            Some(w) => quant_linear(hidden, w, false)?,
            None => {
                let (h, w) = self.head_inputs(hidden)?;
                linear::weight_product(&h, &w)?
            }
        };
        if let Some(cap) = self.config.final_softcap {
            logits = logits.scale(1.0 / cap)?.tanh()?.scale(cap)?;
        }
        Ok(logits)
    }

    /// Logits of every token, `[tokens, vocab]`.
    pub fn forward(&self, batch: &SeqBatch) -> Result<Var> {
        let h = self.forward_hidden(batch, None)?;
        self.logits(&h)
    }

    /// Next-token logits of each sequence, `[num_seqs, vocab]`: runs the new tokens through
    /// the cache and projects only each sequence's last row.
    pub fn forward_last(&self, batch: &SeqBatch, cache: &mut KvCache) -> Result<Var> {
        let h = self.forward_hidden(batch, Some(cache))?;
        let rows: Vec<i64> = batch.last_token_rows().iter().map(|&r| r as i64).collect();
        let rows = Tensor::from_vec(rows, &[batch.num_seqs()], self.device)?;
        self.logits(&h.index_select(&rows, 0)?)
    }

    /// A fresh KV cache for `num_seqs` sequences.
    pub fn new_cache(&self, num_seqs: usize) -> KvCache {
        KvCache::for_model(self.layers.len(), num_seqs, self.dtype, self.device)
    }

    /// Number of parameters.
    pub fn num_parameters(&self) -> usize {
        self.named_parameters()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum()
    }
}

/// One decoder layer as a gradient-checkpoint node: only its input `h` is kept; the layer
/// (a cheap clone of its parameter handles) and the per-batch tables move into the closure.
/// A MoE layer's router logits are a second output.
fn checkpoint_layer(
    layer: &DecoderLayer,
    h: &Var,
    cfg: &ModelConfig,
    cu_seqlens: &[usize],
    rope: &RopeTables,
) -> Result<(Var, Option<Var>)> {
    let (layer, cfg, cu) = (layer.clone(), cfg.clone(), cu_seqlens.to_vec());
    let rope = rope.clone();
    let mut out = checkpoint(
        move |xs: &[Var]| {
            let ctx = LayerCtx {
                cfg: &cfg,
                cu_seqlens: &cu,
                rope: &rope,
            };
            let (h, router) = layer.forward_routed(&xs[0], &ctx, None)?;
            Ok(std::iter::once(h).chain(router).collect())
        },
        std::slice::from_ref(h),
    )?;
    let h = out.remove(0);
    Ok((h, out.pop()))
}

/// One bf16 linear whose output is the outputs of `parts` side by side (their weights stacked
/// by rows, their biases joined; one part: that linear in bf16), or `None` when a part has an
/// adapter or is not dense, or only some parts have a bias.
fn bf16_linear(parts: &[&Linear]) -> Result<Option<Linear>> {
    if parts.iter().any(|l| l.quant.is_some() || l.lora.is_some())
        || !(parts.iter().all(|l| l.bias.is_some()) || parts.iter().all(|l| l.bias.is_none()))
    {
        return Ok(None);
    }
    let inp = parts[0].dims().1;
    if parts.iter().any(|l| l.dims().1 != inp) {
        return Ok(None);
    }
    let mut w = Vec::new();
    let mut bias = Vec::new();
    for l in parts {
        w.extend(l.weight.tensor().to_vec::<f32>()?);
        if let Some(b) = &l.bias {
            bias.extend(b.tensor().to_vec::<f32>()?);
        }
    }
    let out = w.len() / inp;
    let bias = if parts[0].bias.is_some() {
        Some(Var::leaf(
            Tensor::from_vec(bias, &[out], Device::Cpu)?,
            false,
        ))
    } else {
        None
    };
    let base = QuantBase::Bf16(Bf16Weight::from_f32(&w, out, inp));
    Ok(Some(Linear::quantized(base, bias)?))
}
