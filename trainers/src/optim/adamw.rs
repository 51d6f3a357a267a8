//! AdamW as the HF Trainer builds it (`torch.optim.AdamW` over parameter groups): the group
//! layout of `Trainer.create_optimizer` (weight decay on / off by `get_decay_parameter_names`)
//! or of LLaMA-Factory's LoRA+ optimizer, fp32 moment state per parameter (and an fp32 master
//! copy for parameters stored in a lower precision), the update through
//! [`lmf_kernels::cpu::adamw::adamw_step`], and the state as `optimizer.safetensors` +
//! `optimizer.json` in a checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use lmf_autograd::{DType, Tensor, Var};
use lmf_kernels::cpu::adamw::{adamw_step, AdamWParams};
use serde::{Deserialize, Serialize};

use super::galore::{
    apollo_direction, hf_adamw_apply, hf_adamw_direction, hf_step_size, GaloreSettings, Projection,
    Side,
};
use super::state_file::{read_meta, write_state, StateTensors};
use super::torch_randn::next_seed;
use crate::{Error, Result};

/// File name of the moment tensors inside a checkpoint.
pub const OPTIMIZER_TENSORS: &str = "optimizer.safetensors";
/// File name of the groups / hyper-parameters / step counts inside a checkpoint.
pub const OPTIMIZER_JSON: &str = "optimizer.json";

/// One torch parameter group: its base learning rate (the scheduler multiplies it), its
/// weight decay and the names of its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamGroup {
    /// Base learning rate of the group (`lr` of the torch group before scheduling).
    pub lr: f64,
    /// Decoupled weight decay of the group.
    pub weight_decay: f64,
    /// Parameter names (HF names), in model order.
    pub params: Vec<String>,
}

/// Adam hyper-parameters shared by every group.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamHyper {
    /// First-moment decay (`adam_beta1`).
    pub beta1: f64,
    /// Second-moment decay (`adam_beta2`).
    pub beta2: f64,
    /// Denominator epsilon (`adam_epsilon`).
    pub eps: f64,
}

impl Default for AdamHyper {
    /// HF `TrainingArguments` defaults.
    fn default() -> Self {
        AdamHyper {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Whether HF 5.6 `Trainer.get_decay_parameter_names` applies weight decay to `name`: not to
/// biases nor to any norm weight (its forbidden name patterns, searched in the lowercased name;
/// our architectures have no `nn.LayerNorm` modules).
pub fn hf_decays(name: &str) -> bool {
    let n = name.to_lowercase();
    if n.contains("bias") || n.contains("layernorm") || n.contains("rmsnorm") {
        return false;
    }
    // `(?:^|\.)norm(?:$|\.)` and `_norm(?:$|\.)`.
    let comps: Vec<&str> = n.split('.').collect();
    !comps.iter().any(|c| *c == "norm" || c.ends_with("_norm"))
}

/// HF `create_optimizer` groups: trainable parameters that decay (at `weight_decay`), then the
/// others (at 0), both at `lr`.
pub fn default_groups(trainable: &[String], lr: f64, weight_decay: f64) -> Vec<ParamGroup> {
    let (decay, nodecay): (Vec<String>, Vec<String>) =
        trainable.iter().cloned().partition(|n| hf_decays(n));
    vec![
        ParamGroup {
            lr,
            weight_decay,
            params: decay,
        },
        ParamGroup {
            lr,
            weight_decay: 0.0,
            params: nodecay,
        },
    ]
}

/// LLaMA-Factory `_create_loraplus_optimizer` groups: `lora_A`-like at `lr`; `lora_B` and 1-D
/// parameters at `lr · ratio` (split by decay: LF's decay names only exclude biases here);
/// `lora_embedding_B` at `embedding_lr`. `ndim(name)` gives each parameter's rank.
pub fn loraplus_groups(
    trainable: &[String],
    ndim: impl Fn(&str) -> usize,
    lr: f64,
    ratio: f64,
    embedding_lr: f64,
    weight_decay: f64,
) -> Vec<ParamGroup> {
    let (mut a, mut b, mut b_nodecay, mut emb) = (vec![], vec![], vec![], vec![]);
    for name in trainable {
        if name.contains("lora_embedding_B") {
            emb.push(name.clone());
        } else if name.contains("lora_B") || ndim(name) == 1 {
            if name.contains("bias") {
                b_nodecay.push(name.clone());
            } else {
                b.push(name.clone());
            }
        } else {
            a.push(name.clone());
        }
    }
    let g = |lr, weight_decay, params| ParamGroup {
        lr,
        weight_decay,
        params,
    };
    vec![
        g(lr, weight_decay, a),
        g(lr * ratio, weight_decay, b),
        g(lr * ratio, 0.0, b_nodecay),
        g(embedding_lr, weight_decay, emb),
    ]
}

/// Per-parameter state: torch's `step`, `exp_avg`, `exp_avg_sq`, and the fp32 master copy
/// when the parameter itself is not fp32.
#[derive(Clone, Debug, Default, PartialEq)]
struct ParamState {
    step: u64,
    m: Vec<f32>,
    v: Vec<f32>,
    master: Option<Vec<f32>>,
    /// GaLore's projection (the moments are then in its low-rank shape).
    proj: Option<Projection>,
    /// APOLLO: the seed of the next random projection.
    seed: u64,
    /// APOLLO: the norm-growth limiter's last scaled-gradient norm.
    scaled_grad: Option<f32>,
}

/// The JSON half of a saved optimizer.
#[derive(Serialize, Deserialize)]
struct SavedMeta {
    hyper: AdamHyper,
    groups: Vec<ParamGroup>,
    steps: BTreeMap<String, u64>,
    /// GaLore projections: parameter → (side, m, n, r).
    #[serde(default)]
    projections: BTreeMap<String, (Side, usize, usize, usize)>,
    /// APOLLO: parameter → (next seed, limiter norm).
    #[serde(default)]
    apollo: BTreeMap<String, (u64, Option<f32>)>,
}

/// AdamW over named parameter groups.
#[derive(Clone, Debug)]
pub struct AdamW {
    /// Shared Adam hyper-parameters.
    pub hyper: AdamHyper,
    /// The groups, in torch order (group 0's lr is the one HF logs).
    pub groups: Vec<ParamGroup>,
    state: HashMap<String, ParamState>,
    /// GaLore on its target parameters (which also switches every parameter to
    /// [`AdamW::hf_legacy`]'s formula, as galore_torch's optimizer is that AdamW).
    pub galore: Option<GaloreSettings>,
    /// Hugging Face's old `AdamW` formula (eps before bias correction, decay after the
    /// update) instead of torch's.
    pub hf_legacy: bool,
}

impl AdamW {
    /// A fresh optimizer (no state yet: torch creates it lazily at the first step).
    pub fn new(hyper: AdamHyper, groups: Vec<ParamGroup>) -> AdamW {
        AdamW {
            hyper,
            groups,
            state: HashMap::new(),
            galore: None,
            hf_legacy: false,
        }
    }

    /// This optimizer as `GaLoreAdamW`: GaLore on `settings.targets`, HF's old AdamW formula
    /// everywhere.
    pub fn with_galore(mut self, settings: GaloreSettings) -> AdamW {
        self.galore = Some(settings);
        self.hf_legacy = true;
        self
    }

    /// The lr every group uses at a step whose schedule multiplier is `mult`.
    pub fn group_lrs(&self, mult: f64) -> Vec<f64> {
        self.groups.iter().map(|g| g.lr * mult).collect()
    }

    /// Number of optimizer steps `name` has taken (torch `state[p]["step"]`).
    pub fn param_step(&self, name: &str) -> u64 {
        self.state.get(name).map_or(0, |s| s.step)
    }

    /// One step: every parameter of every group that has a gradient in `grads` is updated in
    /// place at `group.lr · mult` (parameters without a gradient are skipped, as torch skips
    /// `grad is None`). `params` maps names to the model's vars.
    pub fn step(
        &mut self,
        params: &mut HashMap<String, &mut Var>,
        grads: &HashMap<String, Vec<f32>>,
        mult: f64,
    ) -> Result<()> {
        let AdamW {
            hyper,
            groups,
            state,
            galore,
            hf_legacy,
        } = self;
        for group in groups.iter() {
            let hp = AdamWParams {
                lr: (group.lr * mult) as f32,
                beta1: hyper.beta1 as f32,
                beta2: hyper.beta2 as f32,
                eps: hyper.eps as f32,
                weight_decay: group.weight_decay as f32,
                step: 1,
            };
            for name in &group.params {
                let Some(grad) = grads.get(name) else {
                    continue;
                };
                let var = params.get_mut(name).ok_or_else(|| {
                    Error::Msg(format!("optimizer: parameter `{name}` is not in the model"))
                })?;
                let n = var.elem_count();
                if grad.len() != n {
                    return Err(Error::Msg(format!(
                        "optimizer: gradient of `{name}` has {} values, parameter {n}",
                        grad.len()
                    )));
                }
                let dtype = var.dtype();
                if *hf_legacy {
                    let lr = group.lr * mult;
                    let st = state.entry(name.clone()).or_default();
                    hf_legacy_step(
                        name,
                        var,
                        grad,
                        st,
                        hyper,
                        galore.as_ref(),
                        lr,
                        group.weight_decay,
                    )?;
                    continue;
                }
                let st = state.entry(name.clone()).or_insert_with(|| ParamState {
                    step: 0,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                    master: None,
                    proj: None,
                    seed: 0,
                    scaled_grad: None,
                });
                if st.m.len() != n {
                    return Err(Error::Msg(format!(
                        "optimizer: state of `{name}` has {} values, parameter {n}",
                        st.m.len()
                    )));
                }
                st.step += 1;
                let hp = AdamWParams {
                    step: st.step,
                    ..hp
                };
                if dtype == DType::F32 && var.tensor().device().is_cpu() {
                    // In place: the loss graph is gone, so the storage is not shared and
                    // `update` does not copy.
                    var.tensor_mut().update::<f32>(|p| {
                        adamw_step(p, grad, &mut st.m, &mut st.v, &hp);
                    })?;
                } else {
                    if st.master.is_none() {
                        st.master = Some(var.tensor().to_vec::<f32>()?);
                    }
                    let master = st
                        .master
                        .as_mut()
                        .ok_or_else(|| Error::Msg("master".into()))?;
                    adamw_step(master, grad, &mut st.m, &mut st.v, &hp);
                    let t = Tensor::from_slice(master, var.shape(), var.device())?;
                    *var.tensor_mut() = t.to_dtype(dtype)?;
                }
            }
        }
        Ok(())
    }

    /// Writes `optimizer.safetensors` (moments and masters) and `optimizer.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors: BTreeMap<String, &[f32]> = BTreeMap::new();
        let mut steps = BTreeMap::new();
        let mut projections = BTreeMap::new();
        let mut apollo = BTreeMap::new();
        for (name, st) in &self.state {
            steps.insert(name.clone(), st.step);
            if st.seed != 0 || st.scaled_grad.is_some() {
                apollo.insert(name.clone(), (st.seed, st.scaled_grad));
            }
            if let Some(p) = &st.proj {
                projections.insert(name.clone(), (p.side, p.m, p.n, p.r));
                for (key, mat) in [("galore_left", &p.left), ("galore_right", &p.right)] {
                    if !mat.is_empty() {
                        tensors.insert(format!("{name}.{key}"), mat);
                    }
                }
            }
            tensors.insert(format!("{name}.exp_avg"), &st.m);
            tensors.insert(format!("{name}.exp_avg_sq"), &st.v);
            if let Some(master) = &st.master {
                tensors.insert(format!("{name}.master"), master);
            }
        }
        let meta = SavedMeta {
            hyper: self.hyper,
            groups: self.groups.clone(),
            steps,
            projections,
            apollo,
        };
        write_state(dir, &tensors, &meta)
    }

    /// Restores the state saved by [`AdamW::save`] from `dir`. The groups must name the same
    /// parameters as this optimizer's (a checkpoint of another run is refused).
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        let meta: SavedMeta = read_meta(dir, "an AdamW optimizer state")?;
        let names =
            |g: &[ParamGroup]| -> Vec<Vec<String>> { g.iter().map(|g| g.params.clone()).collect() };
        if names(&meta.groups) != names(&self.groups) {
            return Err(Error::Msg(format!(
                "{}: the checkpoint's optimizer groups do not match the trainable parameters of this run",
                dir.join(OPTIMIZER_JSON).display()
            )));
        }
        let st = StateTensors::read(dir)?;
        let get = |key: &str| st.get(key);
        let mut state = HashMap::new();
        for (name, step) in meta.steps {
            let m = st.need(&format!("{name}.exp_avg"))?;
            let v = st.need(&format!("{name}.exp_avg_sq"))?;
            let master = get(&format!("{name}.master"))?;
            let proj = match meta.projections.get(&name) {
                Some(&(side, pm, pn, r)) => Some(Projection {
                    side,
                    m: pm,
                    n: pn,
                    r,
                    left: get(&format!("{name}.galore_left"))?.unwrap_or_default(),
                    right: get(&format!("{name}.galore_right"))?.unwrap_or_default(),
                }),
                None => None,
            };
            let (seed, scaled_grad) = meta.apollo.get(&name).copied().unwrap_or((0, None));
            state.insert(
                name,
                ParamState {
                    step,
                    m,
                    v,
                    master,
                    proj,
                    seed,
                    scaled_grad,
                },
            );
        }
        self.hyper = meta.hyper;
        self.groups = meta.groups;
        self.state = state;
        Ok(())
    }
}

/// One step of HF's old AdamW on `var` (f32 on the CPU), through GaLore's projection when
/// `var` is one of its targets (see [`super::galore`]).
#[allow(clippy::too_many_arguments)]
fn hf_legacy_step(
    name: &str,
    var: &mut Var,
    grad: &[f32],
    st: &mut ParamState,
    hyper: &AdamHyper,
    galore: Option<&GaloreSettings>,
    lr: f64,
    weight_decay: f64,
) -> Result<()> {
    if var.dtype() != DType::F32 || !var.tensor().device().is_cpu() {
        return Err(Error::Msg(format!(
            "optimizer: GaLore's AdamW steps f32 parameters on the CPU; `{name}` is {} on {:?}",
            var.dtype(),
            var.tensor().device()
        )));
    }
    let target = galore.filter(|g| g.targets.contains(name) && var.rank() == 2);
    let low: Vec<f32>;
    let r_grad: &[f32] = match target {
        Some(g) => {
            let (m, n) = (var.shape()[0], var.shape()[1]);
            if st.proj.is_none() || st.step.is_multiple_of(g.update_interval.max(1)) {
                let side = g.proj_type.side(m, n);
                st.proj = Some(match g.apollo {
                    Some(a) if a.random => {
                        if st.proj.is_none() && st.seed == 0 {
                            st.seed = g.seeds.get(name).copied().unwrap_or(1);
                        }
                        let p = Projection::random(m, n, g.rank, side, st.seed)?;
                        st.seed = next_seed(st.seed);
                        p
                    }
                    _ => {
                        let signs = g.signs.get(&(name.to_string(), st.step + 1));
                        Projection::fit(grad, m, n, g.rank, side, signs.map(Vec::as_slice))?
                    }
                });
            }
            low = st
                .proj
                .as_ref()
                .map(|p| p.project(grad))
                .unwrap_or_default();
            &low
        }
        None => grad,
    };
    if st.m.len() != r_grad.len() {
        st.m = vec![0.0; r_grad.len()];
        st.v = vec![0.0; r_grad.len()];
    }
    st.step += 1;
    let dir = hf_adamw_direction(
        r_grad,
        &mut st.m,
        &mut st.v,
        hyper.beta1,
        hyper.beta2,
        hyper.eps,
    );
    let dir = match (target, &st.proj) {
        (Some(g), Some(p)) => match g.apollo {
            Some(a) => apollo_direction(
                grad,
                p.m,
                p.n,
                r_grad,
                &dir,
                p.low_shape(),
                a.channel,
                g.scale,
                &mut st.scaled_grad,
            )?,
            None => p.project_back(&dir, g.scale),
        },
        _ => dir,
    };
    let step_size = hf_step_size(lr, hyper.beta1, hyper.beta2, st.step);
    var.tensor_mut()
        .update::<f32>(|p| hf_adamw_apply(p, &dir, step_size, lr, weight_decay))?;
    Ok(())
}

/// Little-endian bytes of an f32 slice (safetensors layout).
#[cfg(test)]
mod tests {
    use super::*;
    use lmf_autograd::Device;

    #[test]
    fn decay_names_follow_hf_patterns() {
        assert!(hf_decays("model.layers.0.self_attn.q_proj.weight"));
        assert!(hf_decays("model.embed_tokens.weight"));
        assert!(hf_decays("lm_head.weight"));
        assert!(!hf_decays("model.layers.0.self_attn.q_proj.bias"));
        assert!(!hf_decays("model.layers.0.input_layernorm.weight"));
        assert!(!hf_decays("model.layers.0.self_attn.q_norm.weight"));
        assert!(!hf_decays("model.norm.weight"));
        // `normal` is not a norm.
        assert!(hf_decays("model.normal.weight"));
    }

    #[test]
    fn loraplus_groups_split_b_and_1d() {
        let names: Vec<String> = [
            "a.lora_A.weight",
            "a.lora_B.weight",
            "a.lora_magnitude_vector",
            "x.bias",
            "e.lora_embedding_B",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let g = loraplus_groups(
            &names,
            |n| {
                if n.contains("lora_") && !n.contains("magnitude") {
                    2
                } else {
                    1
                }
            },
            1e-4,
            16.0,
            1e-6,
            0.1,
        );
        assert_eq!(g[0].params, vec!["a.lora_A.weight"]);
        assert_eq!(
            g[1].params,
            vec!["a.lora_B.weight", "a.lora_magnitude_vector"]
        );
        assert_eq!(g[2].params, vec!["x.bias"]);
        assert_eq!(g[2].weight_decay, 0.0);
        assert_eq!(g[3].params, vec!["e.lora_embedding_B"]);
        assert!((g[1].lr - 1.6e-3).abs() < 1e-12);
    }

    #[test]
    fn step_skips_missing_grads_and_state_roundtrips() {
        let mut a = Var::param(Tensor::from_vec(vec![1.0f32, -2.0], &[2], Device::Cpu).unwrap());
        let mut b = Var::param(Tensor::from_vec(vec![0.5f32], &[1], Device::Cpu).unwrap());
        let groups = default_groups(&["w.weight".into(), "w.bias".into()], 0.1, 0.01);
        let mut opt = AdamW::new(AdamHyper::default(), groups);
        let grads: HashMap<String, Vec<f32>> =
            [("w.weight".to_string(), vec![0.5f32, -0.5])].into();
        {
            let mut params: HashMap<String, &mut Var> = [
                ("w.weight".to_string(), &mut a),
                ("w.bias".to_string(), &mut b),
            ]
            .into();
            opt.step(&mut params, &grads, 1.0).unwrap();
        }
        assert_eq!(opt.param_step("w.weight"), 1);
        assert_eq!(opt.param_step("w.bias"), 0);
        assert_eq!(b.tensor().to_vec::<f32>().unwrap(), vec![0.5]);
        // First Adam step moves each weight by ~lr against the gradient sign (after decay).
        let w = a.tensor().to_vec::<f32>().unwrap();
        assert!((w[0] - (1.0 * (1.0 - 0.001) - 0.1)).abs() < 1e-5, "{w:?}");
        assert!((w[1] - (-2.0 * (1.0 - 0.001) + 0.1)).abs() < 1e-5, "{w:?}");

        let dir = std::env::temp_dir().join(format!("lmf-adamw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        opt.save(&dir).unwrap();
        let mut back = AdamW::new(AdamHyper::default(), opt.groups.clone());
        back.load(&dir).unwrap();
        assert_eq!(back.state, opt.state);
        let other = AdamW::new(
            AdamHyper::default(),
            default_groups(&["z".into()], 0.1, 0.0),
        );
        assert!(other.clone().load(&dir).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
