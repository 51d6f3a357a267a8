//! LoRA-family adapters on a [`CausalLM`], PEFT-compatible: the adapter lives on each
//! targeted [`Linear`] (`Linear::lora`), its parameters are listed by
//! `named_parameters()` under PEFT's names, and folders are PEFT's
//! (`adapter_config.json` + `adapter_model.safetensors`).
//!
//! What lives where:
//! - `config`: [`LoraConfig`] / [`LoraInit`] and the `adapter_config.json` form.
//! - `init` (this file): [`CausalLM::add_lora`] — targets, A/B initialisation (kaiming,
//!   gaussian, PiSSA), DoRA magnitudes, `modules_to_save`, freezing the base.
//! - `svd`: exact and randomized top-r SVD for PiSSA.
//! - `io`: [`CausalLM::save_adapter`] / [`CausalLM::load_adapter`].
//! - `merge`: [`CausalLM::merge_adapter`], PiSSA → LoRA conversion.

pub mod config;
pub mod io;
pub mod merge;
pub mod svd;

pub use crate::model::linear::{adapters_disabled, is_training, set_training, without_adapters};
pub use config::{full_match_regex, matches_module, LoraConfig, LoraInit};
pub use merge::pissa_to_lora;

use crate::model::linear::dora_weight_norm;
use crate::model::{CausalLM, DecoderLayer, EmbedLora, Linear, Lora};
use crate::{Error, Result};
use lmf_autograd::{DType, Device, Tensor, Var};

/// Whether a parameter name (as `named_parameters` gives it) is a LoRA/DoRA parameter.
pub fn is_adapter_param(name: &str) -> bool {
    name.ends_with(".lora_A.weight")
        || name.ends_with(".lora_B.weight")
        || name.ends_with(".lora_magnitude_vector")
        || name.ends_with(".lora_embedding_A")
        || name.ends_with(".lora_embedding_B")
}

/// HF module name of the token embedding.
pub const EMBED_MODULE: &str = "model.embed_tokens";
/// HF module name of the output head.
pub const HEAD_MODULE: &str = "lm_head";

/// Which of the embedding and the head `cfg` puts an adapter on, `(embed, head)`; an error
/// for the variants lmf does not build there (DoRA, PiSSA).
pub(crate) fn embedding_targets(cfg: &LoraConfig) -> Result<(bool, bool)> {
    let (embed, head) = (cfg.targets(EMBED_MODULE), cfg.targets(HEAD_MODULE));
    if embed || head {
        let variant = if cfg.use_dora {
            Some("DoRA")
        } else if matches!(cfg.init, LoraInit::Pissa { .. }) {
            Some("PiSSA")
        } else {
            None
        };
        if let Some(v) = variant {
            return Err(Error::msg(format!(
                "lora: {v} on `{}` is not implemented; keep the embeddings out of the targets or \
                 drop {v}",
                if embed { "embed_tokens" } else { "lm_head" }
            )));
        }
        if let Some(t) = cfg.modules_to_save.iter().find(|t| {
            (embed && matches_module(EMBED_MODULE, std::slice::from_ref(t)))
                || (head && matches_module(HEAD_MODULE, std::slice::from_ref(t)))
        }) {
            return Err(Error::msg(format!(
                "lora: `{t}` is both a LoRA target and a module to save (additional_target); \
                 name it in one of them"
            )));
        }
    }
    Ok((embed, head))
}

/// Whether parameter `name` belongs to one of `modules_to_save` (PEFT's suffix match on the
/// module name, i.e. the parameter name without its last component).
pub fn is_saved_module_param(name: &str, modules_to_save: &[String]) -> bool {
    !is_adapter_param(name)
        && name
            .rsplit_once('.')
            .is_some_and(|(module, _)| matches_module(module, modules_to_save))
}

/// Leaf names the linears of a decoder layer can have (what [`linears_mut`] visits): the
/// Llama family's seven, and Phi-3's fused `qkv_proj` / `gate_up_proj`.
pub const LINEAR_LEAVES: [&str; 9] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "qkv_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "gate_up_proj",
    "down_proj",
];

/// Every linear layer of the model with its HF module name, in checkpoint order.
pub(crate) fn linears_mut(m: &mut CausalLM) -> Vec<(String, &mut Linear)> {
    let mut out = vec![];
    for l in &mut m.layers {
        let p = format!("model.layers.{}", l.index);
        for (path, lin) in layer_linears_mut(l) {
            out.push((format!("{p}.{path}"), lin));
        }
    }
    out
}

/// The linears of one decoder layer in module order, by their path inside the layer
/// (`self_attn.q_proj`, ..., `mlp.down_proj`): seven in a dense layer; in a
/// mixture-of-experts layer the attention's four (the router and the stacked experts are not
/// `nn.Linear` modules, so PEFT never targets them).
pub(crate) fn layer_linears_mut(l: &mut DecoderLayer) -> Vec<(&'static str, &mut Linear)> {
    let mut out = l.self_attn.linears_mut();
    if let Some(f) = &mut l.mlp {
        out.extend(f.linears_mut());
    }
    out
}

/// The leaf names of [`layer_linears_mut`] (`q_proj`, ..., or Phi-3's `qkv_proj`,
/// `gate_up_proj`).
fn layer_linear_leaves(l: &DecoderLayer) -> Vec<&'static str> {
    let mut out = l.self_attn.linears();
    if let Some(f) = &l.mlp {
        out.extend(f.linears());
    }
    out.into_iter()
        .map(|(path, _)| path.rsplit('.').next().unwrap_or(path))
        .collect()
}

/// The targeted linears, or an error naming the targets and the leaf names on offer.
pub(crate) fn targets_mut<'a>(
    m: &'a mut CausalLM,
    cfg: &LoraConfig,
) -> Result<Vec<(String, &'a mut Linear)>> {
    let all = linears_mut(m);
    let leaves: Vec<String> = {
        let mut v: Vec<String> = all
            .iter()
            .filter_map(|(n, _)| n.rsplit('.').next().map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let hit: Vec<_> = all.into_iter().filter(|(n, _)| cfg.targets(n)).collect();
    if hit.is_empty() && !cfg.targets(EMBED_MODULE) && !cfg.targets(HEAD_MODULE) {
        return Err(Error::msg(format!(
            "lora: target_modules {} match no linear layer of this model (its linears: {})",
            cfg.target_description(),
            leaves.join(", ")
        )));
    }
    Ok(hit)
}

/// Uniform `[rows, cols]` in `[-bound, bound]` from Philox `(seed, offset)`.
fn uniform(
    seed: u64,
    offset: u64,
    shape: [usize; 2],
    bound: f64,
    device: Device,
) -> Result<Tensor> {
    let u = Tensor::rand(seed, offset, &shape, DType::F32, device)?;
    Ok(u.affine(2.0 * bound, -bound)?)
}

/// PiSSA (PEFT `pissa_init`): top-r SVD `W ≈ U·S·Vᵀ` in f64, `A = √(S/s)·Vᵀ`,
/// `B = U·√(S/s)`, and the residual `W − s·B·A`; returns `(A, B, residual)` in f32.
fn pissa_init(w: &Tensor, r: usize, scale: f64, niter: i64, seed: u64) -> Result<[Tensor; 3]> {
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let wv = w.to_vec::<f64>()?;
    let t = if niter < 0 {
        svd::svd_top(&wv, out_f, in_f, r)?
    } else {
        svd::svd_lowrank(&wv, out_f, in_f, r, niter as usize, seed)?
    };
    let k = t.s.len();
    let root: Vec<f64> = t.s.iter().map(|s| (s / scale).sqrt()).collect();
    let mut a = vec![0.0; k * in_f];
    for c in 0..k {
        for j in 0..in_f {
            a[c * in_f + j] = root[c] * t.v[j * k + c];
        }
    }
    let mut b = vec![0.0; out_f * k];
    for i in 0..out_f {
        for c in 0..k {
            b[i * k + c] = t.u[i * k + c] * root[c];
        }
    }
    let mut res = wv;
    for i in 0..out_f {
        for j in 0..in_f {
            let ba: f64 = (0..k).map(|c| b[i * k + c] * a[c * in_f + j]).sum();
            res[i * in_f + j] -= scale * ba;
        }
    }
    let dev = w.device();
    Ok([
        Tensor::from_vec(a, &[k, in_f], dev)?.to_dtype(DType::F32)?,
        Tensor::from_vec(b, &[out_f, k], dev)?.to_dtype(DType::F32)?,
        Tensor::from_vec(res, &[out_f, in_f], dev)?.to_dtype(DType::F32)?,
    ])
}

/// Builds the adapter of one linear per `cfg.init`; PiSSA also rewrites `lin.weight` to the
/// residual. `k` numbers the linear (its random stream position).
fn init_linear(lin: &mut Linear, cfg: &LoraConfig, seed: u64, k: u64) -> Result<Lora> {
    let (out_f, in_f) = lin.dims();
    let (r, scale) = (cfg.r, cfg.scale());
    let (dtype, dev) = (lin.dtype(), lin.weight.device());
    // Each linear's A starts at its own stream offset (room for 2^40 values per layer).
    let offset = k << 40;
    let (a, b) = match cfg.init {
        // nn.init.kaiming_uniform_(a=√5) on [r, in]: bound = 1/√fan_in.
        LoraInit::Default => (
            uniform(seed, offset, [r, in_f], 1.0 / (in_f as f64).sqrt(), dev)?,
            Tensor::zeros(&[out_f, r], DType::F32, dev)?,
        ),
        LoraInit::Gaussian => (
            Tensor::randn(seed, offset, &[r, in_f], DType::F32, dev)?.scale(1.0 / r as f64)?,
            Tensor::zeros(&[out_f, r], DType::F32, dev)?,
        ),
        // init_lora_weights=false keeps nn.Linear's default init on both matrices.
        LoraInit::NoInit => (
            uniform(seed, offset, [r, in_f], 1.0 / (in_f as f64).sqrt(), dev)?,
            uniform(
                seed,
                offset + (1 << 39),
                [out_f, r],
                1.0 / (r as f64).sqrt(),
                dev,
            )?,
        ),
        LoraInit::Pissa { niter } => {
            if lin.quant.is_some() {
                return Err(Error::msg(
                    "pissa: cannot initialise PiSSA on a quantized model (LLaMA-Factory: use \
                     its scripts/pissa_init.py on the unquantized model first)",
                ));
            }
            if r > out_f.min(in_f) {
                return Err(Error::msg(format!(
                    "pissa: rank {r} exceeds the weight [{out_f}, {in_f}]"
                )));
            }
            let [a, b, res] = pissa_init(lin.weight.tensor(), r, scale, niter, seed ^ k)?;
            let res = res.to_dtype(dtype)?;
            lin.weight = Var::leaf(res, lin.weight.requires_grad());
            (a, b)
        }
    };
    let (a, b) = (a.to_dtype(dtype)?, b.to_dtype(dtype)?);
    let magnitude = if cfg.use_dora {
        Some(Var::param(dora_weight_norm(
            &lin.dense_weight()?,
            &a,
            &b,
            scale,
        )?))
    } else {
        None
    };
    Ok(Lora {
        a: Var::param(a),
        b: Var::param(b),
        scale,
        dropout: cfg.lora_dropout,
        magnitude,
    })
}

/// PEFT's `lora.Embedding` init: A zeros `[r, vocab]`, B standard normal `[hidden, r]`
/// (`"gaussian"` and `true` alike), so the adapter starts as a no-op; with `init_lora_weights:
/// false` both stay standard normal. `k` numbers the adapter (its random stream position).
fn init_embedding(m: &CausalLM, cfg: &LoraConfig, seed: u64, k: u64) -> Result<EmbedLora> {
    let (v, h) = (m.embed_tokens.shape()[0], m.embed_tokens.shape()[1]);
    let (r, dev, dtype) = (cfg.r, m.device, m.embed_tokens.dtype());
    let offset = k << 40;
    let a = match cfg.init {
        LoraInit::NoInit => Tensor::randn(seed, offset + (1 << 39), &[r, v], DType::F32, dev)?,
        _ => Tensor::zeros(&[r, v], DType::F32, dev)?,
    };
    let b = Tensor::randn(seed, offset, &[h, r], DType::F32, dev)?;
    Ok(EmbedLora {
        a: Var::param(a.to_dtype(dtype)?),
        b: Var::param(b.to_dtype(dtype)?),
        scale: cfg.scale(),
    })
}

impl CausalLM {
    /// Adds a new trainable adapter on the linears, the embedding and the head named by
    /// `cfg.target_modules` (PEFT's suffix match; LLaMA-Factory's `all` must be expanded by the
    /// caller), with
    /// A/B initialised per `cfg.init` from Philox stream `seed`, makes `modules_to_save`
    /// trainable full copies, and freezes everything else.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()> {
        cfg.validate()?;
        let (embed, head) = embedding_targets(cfg)?;
        if (embed && self.embed_lora.is_some()) || (head && self.head_lora.is_some()) {
            return Err(Error::msg(
                "lora: the embeddings already have an adapter (merge it first)",
            ));
        }
        self.prepare_modules_to_save(&cfg.modules_to_save)?;
        let n_linears;
        {
            let targets = targets_mut(self, cfg)?;
            if let Some((n, _)) = targets.iter().find(|(_, l)| l.lora.is_some()) {
                return Err(Error::msg(format!(
                    "lora: `{n}` already has an adapter (merge it first)"
                )));
            }
            // initialise on copies first, so an error leaves the model untouched
            let plan = targets
                .iter()
                .enumerate()
                .map(|(k, (_, lin))| {
                    let mut scratch = Linear::clone(lin);
                    let lora = init_linear(&mut scratch, cfg, seed, k as u64)?;
                    Ok((scratch.weight, lora))
                })
                .collect::<Result<Vec<_>>>()?;
            n_linears = plan.len() as u64;
            for ((_, lin), (weight, lora)) in targets.into_iter().zip(plan) {
                lin.weight = weight;
                lin.lora = Some(lora);
            }
        }
        if head {
            // PEFT's lora.Linear init on the head: kaiming A, zero B
            let mut scratch = Linear::new(self.head_weight().clone(), None);
            self.head_lora = Some(init_linear(&mut scratch, cfg, seed, n_linears)?);
        }
        if embed {
            self.embed_lora = Some(init_embedding(self, cfg, seed, n_linears + 1)?);
        }
        let saved = cfg.modules_to_save.clone();
        self.set_trainable(|n| is_adapter_param(n) || is_saved_module_param(n, &saved));
        Ok(())
    }

    /// Checks every `modules_to_save` entry names a module with parameters; `lm_head` on a
    /// tied model is untied first (PEFT wraps a copy of it, which then trains on its own).
    pub(crate) fn prepare_modules_to_save(&mut self, modules: &[String]) -> Result<()> {
        for t in modules {
            let one = std::slice::from_ref(t);
            if self.lm_head.is_none() && matches_module("lm_head", one) {
                let e = self.embed_tokens.tensor().clone();
                self.lm_head = Some(Var::leaf(e, false));
            }
            if !self
                .named_parameters()
                .iter()
                .any(|(n, _)| is_saved_module_param(n, one))
            {
                return Err(Error::msg(format!(
                    "lora: modules_to_save entry `{t}` matches no module of this model"
                )));
            }
        }
        Ok(())
    }

    /// The leaf names of every linear layer, sorted (`lm_head` is not one): LLaMA-Factory's
    /// `find_all_linear_modules`, i.e. what `lora_target: all` expands to.
    /// Nothing for a model without layers.
    pub fn all_linear_modules(&self) -> Vec<String> {
        if self.layers.is_empty() {
            return vec![];
        }
        // the leaves of every layer: MLP ones only where a layer has a dense MLP (MoE experts
        // are not nn.Linear), Phi-3's fused names where it has them
        let mut names: Vec<String> = self
            .layers
            .iter()
            .flat_map(layer_linear_leaves)
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// A copy without adapters and value head that shares every base weight with this model
    /// (the tensors are reference-counted, nothing is copied): the base for a second adapter
    /// on the same weights, such as PPO's LoRA reward model. Its variables are frozen.
    pub fn base_copy(&self) -> CausalLM {
        let mut m = self.clone();
        for (_, lin) in linears_mut(&mut m) {
            lin.lora = None;
        }
        m.embed_lora = None;
        m.head_lora = None;
        m.value_head = None;
        m.set_trainable(|_| false);
        m
    }

    /// Whether any layer carries an adapter.
    pub fn has_adapter(&self) -> bool {
        self.named_parameters()
            .iter()
            .any(|(n, _)| is_adapter_param(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pissa_init_splits_w_into_residual_plus_top_r() {
        let (m, n, r, s) = (6, 5, 2, 2.0);
        let w: Vec<f32> = (0..m * n)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let wt = Tensor::from_vec(w.clone(), &[m, n], Device::Cpu).unwrap();
        let [a, b, res] = pissa_init(&wt, r, s, -1, 0).unwrap();
        let back = res.add(&b.matmul(&a).unwrap().scale(s).unwrap()).unwrap();
        let back = back.to_vec::<f32>().unwrap();
        for (x, y) in w.iter().zip(&back) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        // A·Aᵀ = diag(S/s) (V orthonormal) and BᵀB = diag(S/s) (U orthonormal): balanced.
        let aa = a.matmul(&a.t().unwrap()).unwrap().to_vec::<f32>().unwrap();
        let bb = b.t().unwrap().matmul(&b).unwrap().to_vec::<f32>().unwrap();
        for (x, y) in aa.iter().zip(&bb) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
        assert!(aa[1].abs() < 1e-5 && aa[2].abs() < 1e-5);
    }

    #[test]
    fn saved_module_match_uses_the_module_name() {
        let t = vec!["lm_head".to_string(), "embed_tokens".to_string()];
        assert!(is_saved_module_param("lm_head.weight", &t));
        assert!(is_saved_module_param("model.embed_tokens.weight", &t));
        assert!(!is_saved_module_param("model.norm.weight", &t));
        assert!(!is_saved_module_param(
            "model.layers.0.self_attn.q_proj.lora_A.weight",
            &["q_proj".to_string()]
        ));
    }
}
