//! `config.json` of a Hugging Face causal LM → [`ModelConfig`]: the architecture switches
//! (norm offset, GLU activation, biases, q/k norms, soft-capping, sliding windows per layer)
//! resolved once here, so the model code reads plain fields. Accepts both the transformers
//! 4 keys (`rope_theta`, `rope_scaling`) and the transformers 5 `rope_parameters`.

use crate::{Error, Result};
use lmf_kernels::cpu::rope::{RopeConfig, RopeScaling};
use lmf_kernels::cpu::swiglu::GluActivation;
use serde_json::{Map, Value};
use std::path::Path;

/// The decoder families we build (`config.model_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2 / 3 / 3.1+.
    Llama,
    /// Mistral (sliding window).
    Mistral,
    /// Qwen2 / Qwen2.5 (q/k/v bias).
    Qwen2,
    /// Qwen3 (q/k RMSNorm per head).
    Qwen3,
    /// Gemma 1 (norm offset, embedding scale, GeGLU).
    Gemma,
    /// Gemma 2 (Gemma 1 + soft-capping, alternating sliding window, post-norms).
    Gemma2,
    /// Gemma 3 text (Gemma 2 + q/k norms, a second RoPE base for the sliding layers).
    Gemma3,
    /// Qwen3-MoE (Qwen3 attention, top-k routed experts).
    Qwen3Moe,
    /// Mixtral (Mistral attention, top-k routed experts).
    Mixtral,
    /// GPT-OSS (attention sinks, biased router and experts, clamped GLU, YaRN).
    GptOss,
    /// Phi-3 / Phi-3.5 / Phi-4-mini (fused `qkv_proj` and `gate_up_proj`, LongRoPE).
    Phi3,
}

/// The `model_type` strings we accept.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "qwen3_moe",
    "mixtral",
    "gpt_oss",
    "phi3",
];

impl Arch {
    /// Parses `config.model_type`.
    pub fn from_model_type(t: &str) -> Option<Arch> {
        Some(match t {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            "gemma" => Arch::Gemma,
            "gemma2" => Arch::Gemma2,
            "gemma3_text" => Arch::Gemma3,
            "qwen3_moe" => Arch::Qwen3Moe,
            "mixtral" => Arch::Mixtral,
            "gpt_oss" => Arch::GptOss,
            "phi3" => Arch::Phi3,
            _ => return None,
        })
    }

    /// Gemma's RMSNorm multiplies by `(1 + w)`.
    pub fn is_gemma(self) -> bool {
        matches!(self, Arch::Gemma | Arch::Gemma2 | Arch::Gemma3)
    }
}

/// Everything the decoder needs from `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Architecture family.
    pub arch: Arch,
    /// `config.model_type` as written.
    pub model_type: String,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA).
    pub num_kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RMSNorm offset: 1 for Gemma (`x̂ · (1 + w)`), else 0.
    pub norm_offset: f64,
    /// Rotary embedding parameters (of the full-attention layers when
    /// [`ModelConfig::rope_local`] is set).
    pub rope: RopeConfig,
    /// Gemma 3: the RoPE of the sliding-window layers (its own base, no scaling).
    pub rope_local: Option<RopeConfig>,
    /// GLU activation of the MLP.
    pub act: GluActivation,
    /// Bias on q/k/v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// Bias on the MLP projections.
    pub mlp_bias: bool,
    /// Per-head RMSNorm on q and k before RoPE (Qwen3).
    pub qk_norm: bool,
    /// Phi-3's fused `qkv_proj` and `gate_up_proj` in place of the separate projections.
    pub fused_proj: bool,
    /// Post-attention and post-feedforward norms on the branch outputs (Gemma 2).
    pub sandwich_norms: bool,
    /// Embedding output multiplied by `sqrt(hidden)` (Gemma).
    pub embed_scale: Option<f64>,
    /// Output head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Softmax scale of attention.
    pub attn_scale: f64,
    /// Attention logit soft-cap (Gemma 2).
    pub attn_softcap: Option<f64>,
    /// Final logit soft-cap (Gemma 2).
    pub final_softcap: Option<f64>,
    /// Sliding window per layer (`None` = full attention).
    pub layer_windows: Vec<Option<usize>>,
    /// `bos_token_id` from the config.
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` (one or several).
    pub eos_token_ids: Vec<u32>,
    /// `pad_token_id`.
    pub pad_token_id: Option<u32>,
    /// The routed experts of a mixture-of-experts model.
    pub moe: Option<MoeConfig>,
}

/// How a mixture-of-experts layer routes and what it computes.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    /// Experts per MoE layer.
    pub num_experts: usize,
    /// Experts each token is sent to.
    pub top_k: usize,
    /// Width of one expert's MLP.
    pub intermediate_size: usize,
    /// Renormalise the top-k routing probabilities to sum to 1 (Mixtral always does).
    pub norm_topk_prob: bool,
    /// Weight of the load-balancing loss (`router_aux_loss_coef`).
    pub router_aux_loss_coef: f64,
    /// `output_router_logits` of config.json: transformers then adds the load-balancing loss
    /// to the loss of every forward given labels.
    pub output_router_logits: bool,
    /// Whether layer `i` is a MoE layer (else a dense MLP of `intermediate_size`).
    pub sparse_layers: Vec<bool>,
    /// GPT-OSS: the router takes the top-k of its (biased) logits and softmaxes those k;
    /// the experts have biases and the clamped GLU `(clamp(up) + 1) · g·σ(α·g)`, `g =
    /// min(gate, limit)`. Else: softmax over all experts, then the top-k (Qwen-MoE, Mixtral).
    pub gpt_oss: bool,
    /// Whether LLaMA-Factory's `moe_aux_loss_coef` turns the load-balancing loss on for this
    /// family (its `configure_moe` list: Mixtral, Qwen-MoE; not GPT-OSS).
    pub lf_aux_loss: bool,
}

/// GPT-OSS's GLU constants, hard-coded in transformers' `GptOssExperts` (the config's
/// `swiglu_limit` is not read).
pub const GPT_OSS_ALPHA: f64 = 1.702;
/// See [`GPT_OSS_ALPHA`].
pub const GPT_OSS_LIMIT: f64 = 7.0;

/// Typed access to the JSON object with errors naming the file and key.
struct Keys<'a> {
    map: &'a Map<String, Value>,
    path: &'a Path,
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// [`Keys::bad`], or "missing key" when `key` is absent.
    fn bad_or_missing(&self, key: &str, want: &str) -> Error {
        if self.map.contains_key(key) {
            self.bad(key, want)
        } else {
            Error::file(self.path, format!("missing key `{key}` ({want})"))
        }
    }

    fn bad(&self, key: &str, want: &str) -> Error {
        Error::file(
            self.path,
            format!("key `{key}` must be {want}, got {}", self.map[key]),
        )
    }

    fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| self.bad(key, "a non-negative integer"))
            })
            .transpose()
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?
            .ok_or_else(|| Error::file(self.path, format!("missing key `{key}`")))
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| self.bad(key, "a number")))
            .transpose()
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.bad(key, "true or false")))
            .transpose()
            .map(|b| b.unwrap_or(default))
    }

    fn str_opt(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| self.bad(key, "a string")))
            .transpose()
    }

    /// A token id or a list of them.
    fn ids(&self, key: &str) -> Result<Vec<u32>> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_u64().map(|x| x as u32))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.bad(key, "a token id or a list of token ids")),
            Some(v) => v
                .as_u64()
                .map(|x| vec![x as u32])
                .ok_or_else(|| self.bad(key, "a token id or a list of token ids")),
        }
    }
}

impl ModelConfig {
    /// Reads `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<ModelConfig> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(Error::missing(&path, "the model config"));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_json_str(&text, &path)
    }

    /// Parses the text of a `config.json`; `path` is used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<ModelConfig> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?;
        let map = value
            .as_object()
            .ok_or_else(|| Error::file(path, "expected a JSON object"))?;
        Self::from_map(map, path)
    }

    fn from_map(map: &Map<String, Value>, path: &Path) -> Result<ModelConfig> {
        let k = Keys { map, path };
        let model_type = k
            .str_opt("model_type")?
            .ok_or_else(|| Error::file(path, "missing key `model_type`"))?
            .to_string();
        let arch = Arch::from_model_type(&model_type).ok_or_else(|| {
            Error::file(
                path,
                format!(
                    "unsupported model_type `{model_type}` (supported: {})",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ),
            )
        })?;
        let hidden_size = k.usize("hidden_size")?;
        let num_heads = k.usize("num_attention_heads")?;
        let num_kv_heads = k.usize_opt("num_key_value_heads")?.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(Error::file(
                path,
                format!("num_key_value_heads {num_kv_heads} must divide num_attention_heads {num_heads}"),
            ));
        }
        // transformers' config classes: Qwen3 and Gemma 1/2 declare a default head_dim; the
        // others derive it from the hidden size.
        let head_dim = match (k.usize_opt("head_dim")?, arch) {
            (Some(d), _) => d,
            (None, Arch::Qwen3) => 128,
            (None, Arch::GptOss) => 64,
            (None, Arch::Gemma | Arch::Gemma2 | Arch::Gemma3) => 256,
            (None, _) if hidden_size % num_heads == 0 => hidden_size / num_heads,
            (None, _) => {
                return Err(Error::file(
                    path,
                    "no `head_dim` and hidden_size is not a multiple of num_attention_heads",
                ))
            }
        };
        let num_layers = k.usize("num_hidden_layers")?;
        let gemma = arch.is_gemma();
        let act_name = if gemma {
            // Gemma ignores the legacy `hidden_act: gelu` and uses the tanh approximation.
            k.str_opt("hidden_activation")?
                .unwrap_or("gelu_pytorch_tanh")
        } else {
            k.str_opt("hidden_act")?.unwrap_or("silu")
        };
        let act = match act_name {
            "silu" | "swish" => GluActivation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => GluActivation::GeluTanh,
            other => {
                return Err(Error::file(
                    path,
                    format!(
                        "unsupported activation `{other}` (supported: silu, gelu_pytorch_tanh)"
                    ),
                ))
            }
        };
        let sliding_window = k.usize_opt("sliding_window")?;
        let layer_windows = layer_windows(&k, arch, num_layers, sliding_window)?;
        let attn_bias = k.bool_or("attention_bias", arch == Arch::GptOss)?;
        let query_pre_attn_scalar = match arch {
            Arch::Gemma2 => k.f64_opt("query_pre_attn_scalar")?,
            // Gemma3TextConfig's default
            Arch::Gemma3 => Some(k.f64_opt("query_pre_attn_scalar")?.unwrap_or(256.0)),
            _ => None,
        };
        let attn_scale = 1.0 / query_pre_attn_scalar.unwrap_or(head_dim as f64).sqrt();
        let (attn_softcap, final_softcap) = match arch {
            // transformers 5.6's Gemma3Attention reads `attn_logit_softcapping` but never passes
            // it to the attention: only the final cap applies.
            Arch::Gemma3 => (None, k.f64_opt("final_logit_softcapping")?),
            Arch::Gemma2 => (
                k.f64_opt("attn_logit_softcapping")?,
                k.f64_opt("final_logit_softcapping")?,
            ),
            _ => (None, None),
        };
        let (rope, rope_local) = match arch {
            Arch::Gemma3 => gemma3_ropes(&k, head_dim)?,
            _ => (rope_config(&k, head_dim)?, None),
        };
        Ok(ModelConfig {
            arch,
            vocab_size: k.usize("vocab_size")?,
            hidden_size,
            intermediate_size: k.usize("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: k.f64_opt("rms_norm_eps")?.unwrap_or(1e-6),
            norm_offset: if gemma { 1.0 } else { 0.0 },
            rope,
            rope_local,
            act,
            // The biases each modeling file builds: Qwen2 always on q/k/v and never on o_proj,
            // Mistral never, the others per `attention_bias`; MLP biases only in Llama.
            qkv_bias: match arch {
                Arch::Qwen2 => true,
                Arch::Mistral => false,
                _ => attn_bias,
            },
            o_bias: !matches!(arch, Arch::Qwen2 | Arch::Mistral) && attn_bias,
            mlp_bias: arch == Arch::Llama && k.bool_or("mlp_bias", false)?,
            qk_norm: matches!(arch, Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma3),
            fused_proj: arch == Arch::Phi3,
            sandwich_norms: matches!(arch, Arch::Gemma2 | Arch::Gemma3),
            embed_scale: gemma.then(|| (hidden_size as f64).sqrt()),
            tie_word_embeddings: k.bool_or("tie_word_embeddings", gemma)?,
            attn_scale,
            attn_softcap,
            final_softcap,
            layer_windows,
            bos_token_id: k.ids("bos_token_id")?.first().copied(),
            eos_token_ids: k.ids("eos_token_id")?,
            pad_token_id: k.ids("pad_token_id")?.first().copied(),
            moe: moe_config(&k, arch, num_layers)?,
            model_type,
        })
    }
}

/// Sliding window of each layer: `layer_types` when the config lists them (transformers 5),
/// else each family's rule from transformers 4.
fn layer_windows(
    k: &Keys,
    arch: Arch,
    num_layers: usize,
    window: Option<usize>,
) -> Result<Vec<Option<usize>>> {
    if let Some(types) = k.get("layer_types") {
        let types = types
            .as_array()
            .filter(|a| a.len() == num_layers)
            .ok_or_else(|| k.bad("layer_types", "a list with one entry per layer"))?;
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(None),
                Some("sliding_attention") => window.map(Some).ok_or_else(|| {
                    Error::file(
                        k.path,
                        "`layer_types` has sliding_attention but no `sliding_window`",
                    )
                }),
                _ => Err(k.bad("layer_types", "full_attention or sliding_attention entries")),
            })
            .collect();
    }
    let use_sliding = k.bool_or("use_sliding_window", false)?;
    let pattern = k.usize_opt("sliding_window_pattern")?.unwrap_or(6).max(1);
    let max_window_layers = k.usize_opt("max_window_layers")?.unwrap_or(num_layers);
    Ok((0..num_layers)
        .map(|i| match arch {
            // Phi3Model masks every layer with the window when the config has one
            Arch::Mistral | Arch::Mixtral | Arch::Phi3 => window,
            // GptOssConfig: alternating, sliding first
            Arch::GptOss => window.filter(|_| i % 2 == 0),
            // Qwen3MoeConfig drops the window unless `use_sliding_window`, then all layers
            Arch::Qwen3Moe => window.filter(|_| use_sliding),
            Arch::Gemma2 => window.filter(|_| i % 2 == 0),
            // Gemma3TextConfig: every `sliding_window_pattern`-th layer (default 6) is global.
            Arch::Gemma3 => window.filter(|_| (i + 1) % pattern != 0),
            Arch::Qwen2 | Arch::Qwen3 => window.filter(|_| use_sliding && i >= max_window_layers),
            Arch::Llama | Arch::Gemma => None,
        })
        .collect())
}

/// The routed experts of Qwen3-MoE (`num_experts`, `moe_intermediate_size`,
/// `decoder_sparse_step`, `mlp_only_layers`) and Mixtral (`num_local_experts`, every layer),
/// with their config classes' defaults.
fn moe_config(k: &Keys, arch: Arch, num_layers: usize) -> Result<Option<MoeConfig>> {
    let positive = |key: &str, v: usize| -> Result<usize> {
        if v == 0 {
            return Err(k.bad(key, "a positive integer"));
        }
        Ok(v)
    };
    let top_k = |default: usize| -> Result<usize> {
        let v = k.usize_opt("num_experts_per_tok")?.unwrap_or(default);
        positive("num_experts_per_tok", v)
    };
    let cfg = match arch {
        Arch::Qwen3Moe => {
            // transformers 5 writes `num_local_experts` (its attribute map), Hub configs
            // `num_experts`
            let e = match k.usize_opt("num_experts")? {
                Some(e) => positive("num_experts", e)?,
                None => positive(
                    "num_local_experts",
                    k.usize_opt("num_local_experts")?.unwrap_or(128),
                )?,
            };
            let step = positive(
                "decoder_sparse_step",
                k.usize_opt("decoder_sparse_step")?.unwrap_or(1),
            )?;
            let dense: Vec<usize> = match k.get("mlp_only_layers") {
                None => vec![],
                Some(v) => v
                    .as_array()
                    .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect())
                    .ok_or_else(|| k.bad("mlp_only_layers", "a list of layer indices"))?,
            };
            MoeConfig {
                num_experts: e,
                top_k: top_k(8)?,
                intermediate_size: k.usize_opt("moe_intermediate_size")?.unwrap_or(768),
                norm_topk_prob: k.bool_or("norm_topk_prob", false)?,
                router_aux_loss_coef: k.f64_opt("router_aux_loss_coef")?.unwrap_or(0.001),
                output_router_logits: k.bool_or("output_router_logits", false)?,
                sparse_layers: (0..num_layers)
                    .map(|i| !dense.contains(&i) && (i + 1) % step == 0)
                    .collect(),
                gpt_oss: false,
                lf_aux_loss: true,
            }
        }
        Arch::Mixtral => MoeConfig {
            num_experts: positive(
                "num_local_experts",
                k.usize_opt("num_local_experts")?.unwrap_or(8),
            )?,
            top_k: top_k(2)?,
            intermediate_size: k.usize("intermediate_size")?,
            norm_topk_prob: true,
            router_aux_loss_coef: k.f64_opt("router_aux_loss_coef")?.unwrap_or(0.001),
            output_router_logits: k.bool_or("output_router_logits", false)?,
            sparse_layers: vec![true; num_layers],
            gpt_oss: false,
            lf_aux_loss: true,
        },
        Arch::GptOss => MoeConfig {
            num_experts: positive(
                "num_local_experts",
                k.usize_opt("num_local_experts")?.unwrap_or(128),
            )?,
            // the Hub configs carry both names
            top_k: match k.usize_opt("num_experts_per_tok")? {
                Some(v) => positive("num_experts_per_tok", v)?,
                None => positive(
                    "experts_per_token",
                    k.usize_opt("experts_per_token")?.unwrap_or(4),
                )?,
            },
            intermediate_size: k.usize("intermediate_size")?,
            norm_topk_prob: false,
            router_aux_loss_coef: k.f64_opt("router_aux_loss_coef")?.unwrap_or(0.001),
            output_router_logits: k.bool_or("output_router_logits", false)?,
            sparse_layers: vec![true; num_layers],
            gpt_oss: true,
            lf_aux_loss: false,
        },
        _ => return Ok(None),
    };
    if cfg.top_k > cfg.num_experts {
        return Err(Error::file(
            k.path,
            format!(
                "num_experts_per_tok {} exceeds the {} experts",
                cfg.top_k, cfg.num_experts
            ),
        ));
    }
    Ok(Some(cfg))
}

/// The object under `key`, if present.
fn object<'a>(k: &Keys<'a>, key: &str) -> Result<Option<&'a Map<String, Value>>> {
    match k.map.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(k.bad(key, "an object")),
    }
}

/// RoPE from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (4.x).
fn rope_config(k: &Keys, head_dim: usize) -> Result<RopeConfig> {
    let params = match object(k, "rope_parameters")? {
        Some(m) => Some(m),
        None => object(k, "rope_scaling")?,
    };
    rope_from(k, params, None, head_dim)
}

/// Gemma 3's two RoPEs `(full, sliding)`: transformers 5 nests them under
/// `rope_parameters.{full_attention, sliding_attention}`; 4.x configs give `rope_theta`
/// (+ `rope_scaling`) for the full layers and `rope_local_base_freq` for the sliding ones.
/// Defaults (Gemma3TextConfig): θ 1e6 global, 1e4 local.
fn gemma3_ropes(k: &Keys, head_dim: usize) -> Result<(RopeConfig, Option<RopeConfig>)> {
    let nested = object(k, "rope_parameters")?
        .filter(|m| m.contains_key("full_attention") || m.contains_key("sliding_attention"));
    let (full, local) = match nested {
        Some(m) => {
            let sub = Keys {
                map: m,
                path: k.path,
            };
            (
                object(&sub, "full_attention")?,
                object(&sub, "sliding_attention")?,
            )
        }
        None => (
            object(k, "rope_parameters")?.or(object(k, "rope_scaling")?),
            None,
        ),
    };
    let global_theta = k.f64_opt("rope_theta")?.unwrap_or(1_000_000.0);
    let local_theta = k.f64_opt("rope_local_base_freq")?.unwrap_or(10_000.0);
    Ok((
        rope_from(k, full, Some(global_theta), head_dim)?,
        Some(rope_from(k, local, Some(local_theta), head_dim)?),
    ))
}

/// One RoPE from its parameter object `params` (theta, scaling), falling back to the
/// top-level `rope_theta` (or `default_theta`).
fn rope_from(
    k: &Keys,
    params: Option<&Map<String, Value>>,
    default_theta: Option<f64>,
    head_dim: usize,
) -> Result<RopeConfig> {
    let sub = params.map(|m| Keys {
        map: m,
        path: k.path,
    });
    let theta = match sub
        .as_ref()
        .map(|s| s.f64_opt("rope_theta"))
        .transpose()?
        .flatten()
    {
        Some(t) => t,
        None => match default_theta {
            Some(t) => t,
            None => k.f64_opt("rope_theta")?.unwrap_or(10000.0),
        },
    };
    let max_pos = k.usize_opt("max_position_embeddings")?.unwrap_or(2048);
    // transformers 5 moves `partial_rotary_factor` into rope_parameters
    let partial = match sub
        .as_ref()
        .map(|s| s.f64_opt("partial_rotary_factor"))
        .transpose()?
    {
        Some(Some(p)) => p,
        _ => k.f64_opt("partial_rotary_factor")?.unwrap_or(1.0),
    };
    let rotary_dim = ((head_dim as f64 * partial) as usize) & !1;
    let scaling = match sub {
        None => RopeScaling::Default,
        Some(s) => {
            let kind = s
                .str_opt("rope_type")?
                .or(s.str_opt("type")?)
                .unwrap_or("default");
            let factor = || {
                s.f64_opt("factor")?
                    .ok_or_else(|| Error::file(k.path, format!("rope `{kind}` needs `factor`")))
            };
            let orig = || -> Result<usize> {
                Ok(s.usize_opt("original_max_position_embeddings")?
                    .or(k.usize_opt("original_max_position_embeddings")?)
                    .unwrap_or(max_pos))
            };
            match kind {
                "default" => RopeScaling::Default,
                "linear" => RopeScaling::Linear { factor: factor()? },
                "dynamic" => RopeScaling::Dynamic {
                    factor: factor()?,
                    original_max_position_embeddings: orig()?,
                },
                "llama3" => RopeScaling::Llama3 {
                    factor: factor()?,
                    low_freq_factor: s.f64_opt("low_freq_factor")?.unwrap_or(1.0),
                    high_freq_factor: s.f64_opt("high_freq_factor")?.unwrap_or(4.0),
                    original_max_position_embeddings: orig()?,
                },
                // Phi-3 (`su` is its older name): transformers' `_compute_longrope_parameters`
                "longrope" | "su" => {
                    let factors = |key: &str| -> Result<Vec<f64>> {
                        let v = s
                            .get(key)
                            .and_then(Value::as_array)
                            .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
                            .ok_or_else(|| s.bad_or_missing(key, "a list of numbers"))?;
                        if v.len() != rotary_dim / 2 {
                            return Err(Error::file(
                                k.path,
                                format!(
                                    "rope `{key}` has {} entries; the rotary dimension {rotary_dim} needs {}",
                                    v.len(),
                                    rotary_dim / 2
                                ),
                            ));
                        }
                        Ok(v)
                    };
                    // the top-level `original_max_position_embeddings` wins (Phi3Config keeps it)
                    let orig = k
                        .usize_opt("original_max_position_embeddings")?
                        .or(s.usize_opt("original_max_position_embeddings")?)
                        .unwrap_or(max_pos)
                        .max(1);
                    let factor = max_pos as f64 / orig as f64;
                    let af = match s.f64_opt("attention_factor")? {
                        Some(a) => a,
                        None if factor <= 1.0 => 1.0,
                        None => (1.0 + factor.ln() / (orig as f64).ln()).sqrt(),
                    };
                    RopeScaling::longrope(factors("short_factor")?, factors("long_factor")?, orig, af)
                }
                "yarn" => RopeScaling::Yarn {
                    factor: factor()?,
                    original_max_position_embeddings: orig()?,
                    beta_fast: s.f64_opt("beta_fast")?.unwrap_or(32.0),
                    beta_slow: s.f64_opt("beta_slow")?.unwrap_or(1.0),
                    mscale: s.f64_opt("mscale")?,
                    mscale_all_dim: s.f64_opt("mscale_all_dim")?,
                    attention_factor: s.f64_opt("attention_factor")?,
                    truncate: s.bool_or("truncate", true)?,
                },
                other => {
                    return Err(Error::file(
                        k.path,
                        format!("unsupported rope type `{other}` (supported: default, linear, dynamic, llama3, yarn, longrope)"),
                    ))
                }
            }
        }
    };
    Ok(RopeConfig {
        head_dim,
        rotary_dim,
        theta,
        max_position_embeddings: max_pos,
        scaling,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(model_type: &str, extra: &str) -> ModelConfig {
        let text = format!(
            r#"{{"model_type": "{model_type}", "vocab_size": 10, "hidden_size": 8,
                "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2
                {extra}}}"#
        );
        ModelConfig::from_json_str(&text, Path::new("config.json")).unwrap()
    }

    /// transformers 5.6's modeling files: which linears have biases, and the config classes'
    /// `head_dim` defaults.
    #[test]
    fn biases_and_head_dim_follow_each_modeling_file() {
        let on = r#", "attention_bias": true, "mlp_bias": true"#;
        let cases = [
            // model_type: (qkv, o, mlp) with attention_bias and mlp_bias set
            ("llama", (true, true, true)),
            ("mistral", (false, false, false)),
            ("qwen2", (true, false, false)),
            ("qwen3", (true, true, false)),
            ("gemma", (true, true, false)),
            ("gemma2", (true, true, false)),
        ];
        for (mt, want) in cases {
            let c = parse(mt, on);
            assert_eq!((c.qkv_bias, c.o_bias, c.mlp_bias), want, "{mt}");
        }
        assert!(
            parse("qwen2", "").qkv_bias,
            "qwen2's q/k/v always have a bias"
        );
        assert_eq!(parse("llama", "").head_dim, 4);
        assert_eq!(parse("mistral", "").head_dim, 4);
        assert_eq!(parse("qwen2", "").head_dim, 4);
        assert_eq!(parse("qwen3", "").head_dim, 128);
        assert_eq!(parse("gemma", "").head_dim, 256);
        assert_eq!(parse("gemma2", "").head_dim, 256);
        assert_eq!(parse("qwen3", r#", "head_dim": 6"#).head_dim, 6);
    }
}
