//! BAdam, ratio mode (`use_badam: true`, `badam_mode: ratio`), as badam 1.4's
//! `BlockOptimizerRatio` runs under LLaMA-Factory 0.9.5 (`_create_badam_optimizer`):
//!
//! - the first parameter whose name contains `embed` and the first containing `lm_head` are
//!   frozen; every other trainable parameter trains, but only on a fraction of its entries;
//! - after every micro-batch's backward (a post-accumulate-grad hook), each trained parameter's
//!   accumulated gradient g (numel n) becomes `mask ⊙ g`, after `g += 1e-9` when
//!   n < `preserve_threshold` (100). The mask holds k = int(n · ratio) flat (row-major) indices:
//!   `adjacent`: `[offset, offset + k)`, wrapping past n; `scatter`: `randperm(n)[offset ..
//!   offset + k)` (wrapping) from torch's CPU generator seeded with the parameter's seed. Masks
//!   are cached per shape (the first parameter of a shape to reach its hook makes the mask all
//!   parameters of that shape use) until a switch drops them;
//! - when `(global_step + 1) % switch_every == 0` (global_step = optimizer steps done), the hook
//!   moves the parameter's offset by k (mod n) after masking, and drops its shape's mask. With
//!   gradient accumulation this happens after every micro-batch of that step, so the later
//!   micro-batches already use the moved offset (and, for a shape shared by several parameters,
//!   each parameter makes its own mask);
//! - `step`: sparse Adam without weight decay on the k masked values (in ascending flat order,
//!   torch's `coalesce`), per parameter step count t and moments m, v of length k:
//!   ```text
//!   m += (g − m)·(1 − β1)          v += (g² − v)·(1 − β2)          (f32, torch's op order)
//!   step_size = lr·√(1 − β2ᵗ)/(1 − β1ᵗ)                             (f64)
//!   p[idx] += f32(−step_size) · (m / (√v + eps))                   (f32)
//!   ```
//!   then `global_step += 1` and, when it is a multiple of `switch_every`, all moments and step
//!   counts are dropped;
//! - LF passes neither `switch_every` nor `preserve_threshold` (`badam_switch_interval` is for
//!   layer mode): both are 100. The group lr is the scheduler's; groups never apply decay.
//!
//! lmf keeps the gradients dense (zeros outside the mask) and remembers each parameter's mask
//! between the hook and the step. torch's hooks fire in backward order: lmf takes the reverse
//! of the model's parameter order (what torch does on Llama: `model.norm`, then the last layer's
//! `down_proj`, `up_proj`, `gate_proj`, `post_attention_layernorm`, `o_proj`, `v_proj`, …), which
//! only matters for `scatter` (whose seed makes a shape's cached mask).
//!
//! The masks are BAdam's exactly, `scatter` included: each parameter's seed is
//! `torch.randint(0, 1000, (1,))` from the global generator right after `set_seed(seed)`
//! (checked: LF builds the optimizer with that generator untouched; = mt19937(seed) % 1000,
//! drawn for every parameter in model order, frozen ones too), and `randperm(n)` is torch's CPU
//! shuffle (`randperm_cpu`: swap i with i + mt() % (n − i)), for n < 2³²/20. BAdam's
//! `torch.random.manual_seed(seed)` also reseeds torch's global generator; lmf's dropout
//! stream is its own and is not affected.
//!
//! The step is torch's arithmetic op for op, but for one thing: torch's CPU `sqrt_` on f32 is
//! MKL's vsSqrt (HA), off by one f32 step for ~20% of inputs, while lmf's is IEEE; such a
//! difference reaches a parameter rarely (5 of 1000 entries over 8 steps in the unit fixture).
//!
//! Checkpoints ([`BadamRatio::save`]) keep the global step, the offsets and the moments, so a
//! resumed run continues as the uninterrupted one. (LF's `optimizer.pt` holds only the moments
//! and step counts: a resumed LF run restarts BAdam's global step and offsets at 0, which
//! makes a difference only past step 99.)
//!
//! `tests/fixtures/hf/train/make_badam_ratio_unit.py` runs the real `BlockOptimizerRatio` on
//! toy parameters for the tests below.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use lmf_autograd::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::adamw::{AdamHyper, OPTIMIZER_JSON};
use super::state_file::{read_meta, write_state, StateTensors};
use crate::data::numpy_rng::LegacyRng;
use crate::{Error, Result};

/// `BlockOptimizerRatio`'s `switch_every` default (LF never passes it).
pub const SWITCH_EVERY: u64 = 100;
/// `BlockOptimizerRatio`'s `preserve_threshold` default (LF never passes it).
pub const PRESERVE_THRESHOLD: usize = 100;
/// What the hook adds to every gradient entry of a small parameter (`grad.add_(1e-9)`: the
/// python float becomes an f32 scalar).
const SMALL_SHIFT: f32 = 1e-9;
/// torch's `randperm_cpu` uses the shuffle below only for n < `u32::MAX / 20`.
const RANDPERM_SMALL: usize = (u32::MAX / 20) as usize;

/// `badam_mask_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskMode {
    /// k adjacent flat indices from the offset, wrapping.
    Adjacent,
    /// k entries of a seeded random permutation, from the offset.
    Scatter,
}

/// The ratio-mode settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioConfig {
    /// `badam_update_ratio`: the fraction of each parameter's entries that trains.
    pub update_ratio: f64,
    /// `badam_mask_mode`.
    pub mask_mode: MaskMode,
    /// Steps between mask moves and moment resets ([`SWITCH_EVERY`] under LF).
    pub switch_every: u64,
    /// Parameters with fewer entries get `+1e-9` on their gradient ([`PRESERVE_THRESHOLD`]).
    pub preserve_threshold: usize,
    /// β1, β2, eps (`adam_beta1`, `adam_beta2`, `adam_epsilon`).
    pub hyper: AdamHyper,
}

impl RatioConfig {
    /// What LF builds: `switch_every` and `preserve_threshold` at BAdam's defaults.
    pub fn lf(update_ratio: f64, mask_mode: MaskMode, hyper: AdamHyper) -> RatioConfig {
        RatioConfig {
            update_ratio,
            mask_mode,
            switch_every: SWITCH_EVERY,
            preserve_threshold: PRESERVE_THRESHOLD,
            hyper,
        }
    }
}

/// A parameter's mask: ascending flat indices.
#[derive(Clone, Debug, PartialEq)]
enum Mask {
    /// Ascending runs `[a, b)` (adjacent: one run, two when it wraps; ratio 1: all).
    Runs(Vec<(usize, usize)>),
    /// Ascending indices (scatter).
    List(Arc<Vec<usize>>),
}

impl Mask {
    /// `_generate_mask_adjacent`: `[offset, offset + k)` when it fits in n, else
    /// `[0, offset + k − n) ∪ [offset, n)`.
    fn adjacent(n: usize, k: usize, offset: usize) -> Mask {
        if offset + k > n {
            Mask::Runs(vec![(0, offset + k - n), (offset, n)])
        } else {
            Mask::Runs(vec![(offset, offset + k)])
        }
    }

    /// `_generate_mask_scatter`: `randperm(n)` under `manual_seed(seed)`, entries
    /// `[offset, offset + k)` (wrapping to the start), sorted.
    fn scatter(n: usize, k: usize, offset: usize, seed: u64) -> Mask {
        let perm = torch_randperm(n, seed);
        let mut idx: Vec<usize> = if offset + k > n {
            perm[offset..]
                .iter()
                .chain(&perm[..offset + k - n])
                .copied()
                .collect()
        } else {
            perm[offset..offset + k].to_vec()
        };
        idx.sort_unstable();
        Mask::List(Arc::new(idx))
    }

    /// Every index of a parameter with n entries.
    fn all(n: usize) -> Mask {
        Mask::Runs(vec![(0, n)])
    }

    /// Number of indices.
    fn len(&self) -> usize {
        match self {
            Mask::Runs(r) => r.iter().map(|(a, b)| b - a).sum(),
            Mask::List(l) => l.len(),
        }
    }

    /// Calls `f` on every index, ascending.
    fn for_each(&self, mut f: impl FnMut(usize)) {
        match self {
            Mask::Runs(r) => r.iter().for_each(|&(a, b)| (a..b).for_each(&mut f)),
            Mask::List(l) => l.iter().copied().for_each(f),
        }
    }

    /// The indices, ascending.
    fn indices(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each(|i| out.push(i));
        out
    }

    /// `g ← mask ⊙ g` (`grad.sparse_mask(mask)`, kept dense).
    fn zero_outside(&self, g: &mut [f32]) {
        let n = g.len();
        let mut next = 0;
        match self {
            Mask::Runs(r) => {
                for &(a, b) in r {
                    g[next..a].fill(0.0);
                    next = b;
                }
            }
            Mask::List(l) => {
                for &i in l.iter() {
                    g[next..i].fill(0.0);
                    next = i + 1;
                }
            }
        }
        g[next.min(n)..].fill(0.0);
    }

    /// `g[idx]` in ascending index order (the coalesced sparse values).
    fn gather(&self, g: &[f32]) -> Vec<f32> {
        match self {
            Mask::Runs(r) => r.iter().flat_map(|&(a, b)| &g[a..b]).copied().collect(),
            Mask::List(l) => l.iter().map(|&i| g[i]).collect(),
        }
    }

    /// `p[idx_j] += scale · dir[j]` (`param.add_(-step_size * sparse(dir))`: the scalar times
    /// each f32 value, then added).
    fn add_scaled(&self, p: &mut [f32], scale: f32, dir: &[f32]) {
        match self {
            Mask::Runs(r) => {
                let mut j = 0;
                for &(a, b) in r {
                    for (x, d) in p[a..b].iter_mut().zip(&dir[j..j + (b - a)]) {
                        *x += scale * d;
                    }
                    j += b - a;
                }
            }
            Mask::List(l) => {
                for (&i, d) in l.iter().zip(dir) {
                    p[i] += scale * d;
                }
            }
        }
    }
}

/// `torch.manual_seed(seed); torch.randperm(n)` on the CPU (n < 2³²/20): the identity, then
/// for i in 0..n−1 swap entries i and i + mt() % (n − i).
fn torch_randperm(n: usize, seed: u64) -> Vec<usize> {
    let mut g = LegacyRng::new(seed);
    let mut r: Vec<usize> = (0..n).collect();
    for i in 0..n.saturating_sub(1) {
        let z = g.next_u32() as usize % (n - i);
        r.swap(i, i + z);
    }
    r
}

/// The per-parameter seeds `BlockOptimizerRatio` draws at construction: one
/// `torch.randint(0, 1000, (1,))` per parameter of `count`, in model order, from the global
/// generator right after `torch.manual_seed(seed)` (= mt19937 output % 1000).
pub fn scatter_seeds(seed: u64, count: usize) -> Vec<u64> {
    let mut g = LegacyRng::new(seed);
    (0..count).map(|_| (g.next_u32() % 1000) as u64).collect()
}

/// The parameters ratio mode freezes: the first name containing `embed` and the first
/// containing `lm_head` (BlockOptimizerRatio's `embedding_layer` / `lm_head_layer`).
pub fn frozen_names(names: &[String]) -> Result<(String, String)> {
    let first = |pat: &str| names.iter().find(|n| n.contains(pat)).cloned();
    let embed = first("embed").ok_or_else(|| {
        Error::Msg(
            "`badam_mode: ratio` needs an embedding parameter (a name containing `embed`) to \
             freeze; BAdam fails here with `'NoneType' object has no attribute 'requires_grad_'`"
                .into(),
        )
    })?;
    let head = first("lm_head").ok_or_else(|| {
        Error::Msg(
            "`badam_mode: ratio` needs an untied `lm_head`: with tied word embeddings the model \
             has no `lm_head` parameter and BAdam's ratio mode fails (`'NoneType' object has no \
             attribute 'requires_grad_'`); use `badam_mode: layer` or a model with its own head"
                .into(),
        )
    })?;
    Ok((embed, head))
}

/// One trained parameter.
#[derive(Clone, Debug)]
struct Param {
    name: String,
    shape: Vec<usize>,
    numel: usize,
    /// int(numel · ratio).
    k: usize,
    /// Its scatter seed.
    seed: u64,
    /// Start of its mask.
    offset: usize,
}

/// Sparse Adam state of one parameter (`state[p]`).
#[derive(Clone, Debug, Default, PartialEq)]
struct SparseState {
    step: u64,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// The JSON half of a saved ratio-mode optimizer.
#[derive(Serialize, Deserialize)]
struct SavedRatio {
    /// Marks the file (an AdamW `optimizer.json` has no such key).
    badam_ratio: RatioConfig,
    /// Trained parameters, model order.
    params: Vec<String>,
    global_step: u64,
    offsets: BTreeMap<String, usize>,
    /// Step counts of the parameters that have state.
    steps: BTreeMap<String, u64>,
}

/// BAdam's `BlockOptimizerRatio`: the masks, the hook and the sparse Adam step.
#[derive(Clone, Debug)]
pub struct BadamRatio {
    cfg: RatioConfig,
    frozen: (String, String),
    /// Trained parameters in hook order (the reverse of the model's order).
    params: Vec<Param>,
    /// `mask_dict`: shape → the cached mask (`None`: dropped at a switch).
    masks: HashMap<Vec<usize>, Option<Mask>>,
    /// The mask each parameter's accumulated gradient carries (set by the hook, used by the
    /// step).
    current: HashMap<String, Mask>,
    state: HashMap<String, SparseState>,
    global_step: u64,
}

impl BadamRatio {
    /// The optimizer over `all` (every parameter of the model, model order, with its shape).
    /// `trainable(name)` says whether a parameter trains before BAdam freezes the embedding
    /// and the head; `seed` is the run's `seed` (scatter seeds).
    pub fn new(
        all: &[(String, Vec<usize>)],
        trainable: impl Fn(&str) -> bool,
        cfg: RatioConfig,
        seed: u64,
    ) -> Result<BadamRatio> {
        check_config(&cfg)?;
        let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
        let frozen = frozen_names(&names)?;
        let seeds = scatter_seeds(seed, all.len());
        let mut params = vec![];
        for ((name, shape), &seed) in all.iter().zip(&seeds) {
            if !trainable(name) || *name == frozen.0 || *name == frozen.1 {
                continue;
            }
            let numel: usize = shape.iter().product();
            let k = (numel as f64 * cfg.update_ratio) as usize;
            check_param(&cfg, name, numel)?;
            params.push(Param {
                name: name.clone(),
                shape: shape.clone(),
                numel,
                k,
                seed,
                offset: 0,
            });
        }
        params.reverse();
        Ok(BadamRatio {
            cfg,
            frozen,
            params,
            masks: HashMap::new(),
            current: HashMap::new(),
            state: HashMap::new(),
            global_step: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &RatioConfig {
        &self.cfg
    }

    /// The frozen embedding and head names.
    pub fn frozen(&self) -> (&str, &str) {
        (&self.frozen.0, &self.frozen.1)
    }

    /// Whether `name` trains (and gets the hook).
    pub fn is_trainable(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.name == name)
    }

    /// The trained parameters, model order.
    pub fn trainable_names(&self) -> Vec<String> {
        self.params.iter().rev().map(|p| p.name.clone()).collect()
    }

    /// Optimizer steps taken (BAdam's `global_step`).
    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    /// The flat indices (ascending) the accumulated gradient of `name` keeps, once the hook
    /// ran on it this step.
    pub fn mask_indices(&self, name: &str) -> Option<Vec<usize>> {
        self.current.get(name).map(Mask::indices)
    }

    /// The hook after a micro-batch's backward, on every trained parameter present in `grads`
    /// (the accumulated gradients; every parameter of lmf's models gets a gradient from every
    /// micro-batch). See [`BadamRatio::after_micro_batch_of`].
    pub fn after_micro_batch(&mut self, grads: &mut HashMap<String, Vec<f32>>) -> Result<()> {
        self.after_micro_batch_of(grads, |_| true)
    }

    /// The hook on the trained parameters that got a gradient from this micro-batch
    /// (`fired(name)`; torch fires a parameter's hook only then), in hook order, each on its
    /// accumulated gradient in `grads`.
    pub fn after_micro_batch_of(
        &mut self,
        grads: &mut HashMap<String, Vec<f32>>,
        fired: impl Fn(&str) -> bool,
    ) -> Result<()> {
        for i in 0..self.params.len() {
            let name = &self.params[i].name;
            if !fired(name) {
                continue;
            }
            if let Some(g) = grads.get_mut(name) {
                self.hook(i, g)?;
            }
        }
        Ok(())
    }

    /// `sparse_update_hook` on parameter `i`'s accumulated gradient `g`.
    fn hook(&mut self, i: usize, g: &mut [f32]) -> Result<()> {
        let p = &self.params[i];
        if g.len() != p.numel {
            return Err(Error::Msg(format!(
                "BAdam ratio: gradient of `{}` has {} values, parameter {}",
                p.name,
                g.len(),
                p.numel
            )));
        }
        if p.numel < self.cfg.preserve_threshold {
            g.iter_mut().for_each(|x| *x += SMALL_SHIFT);
        }
        if self.cfg.update_ratio == 1.0 {
            // BAdam's "temporary fix": the whole gradient, shifted; offsets never move.
            g.iter_mut().for_each(|x| *x += SMALL_SHIFT);
            self.current.insert(p.name.clone(), Mask::all(p.numel));
            return Ok(());
        }
        let mask = match self.masks.get(&p.shape) {
            Some(Some(m)) => m.clone(),
            _ => {
                let m = match self.cfg.mask_mode {
                    MaskMode::Adjacent => Mask::adjacent(p.numel, p.k, p.offset),
                    MaskMode::Scatter => Mask::scatter(p.numel, p.k, p.offset, p.seed),
                };
                // keep_mask: one mask per shape
                self.masks.insert(p.shape.clone(), Some(m.clone()));
                m
            }
        };
        mask.zero_outside(g);
        self.current.insert(p.name.clone(), mask);
        if (self.global_step + 1).is_multiple_of(self.cfg.switch_every) {
            let p = &mut self.params[i];
            p.offset = (p.offset + p.k) % p.numel.max(1);
            self.masks.insert(p.shape.clone(), None);
        }
        Ok(())
    }

    /// One optimizer step at learning rate `lr` (the scheduler's, same for both of LF's
    /// groups): sparse Adam on every trained parameter with a gradient in `grads` (already
    /// through the hooks and clipping), then the step count and, every `switch_every` steps,
    /// the reset of all moments.
    pub fn step(
        &mut self,
        params: &mut HashMap<String, &mut Var>,
        grads: &HashMap<String, Vec<f32>>,
        lr: f64,
    ) -> Result<()> {
        for p in &self.params {
            let Some(grad) = grads.get(&p.name) else {
                continue;
            };
            let mask = self.current.get(&p.name).ok_or_else(|| {
                Error::Msg(format!(
                    "BAdam ratio: the gradient of `{}` did not go through the hook (SparseAdam \
                     does not support dense gradients)",
                    p.name
                ))
            })?;
            let var = params.get_mut(&p.name).ok_or_else(|| {
                Error::Msg(format!(
                    "optimizer: parameter `{}` is not in the model",
                    p.name
                ))
            })?;
            if grad.len() != p.numel || var.elem_count() != p.numel {
                return Err(Error::Msg(format!(
                    "BAdam ratio: `{}` has {} values and a gradient of {}; expected {}",
                    p.name,
                    var.elem_count(),
                    grad.len(),
                    p.numel
                )));
            }
            let values = mask.gather(grad);
            let st = self
                .state
                .entry(p.name.clone())
                .or_insert_with(|| SparseState {
                    step: 0,
                    m: vec![0.0; values.len()],
                    v: vec![0.0; values.len()],
                });
            if st.m.len() != values.len() {
                return Err(Error::Msg(format!(
                    "BAdam ratio: `{}` has {} masked gradient values but {} moments",
                    p.name,
                    values.len(),
                    st.m.len()
                )));
            }
            st.step += 1;
            let (scale, dir) = sparse_adam(&values, st, &self.cfg.hyper, lr);
            apply(var, &p.name, mask, scale, &dir)?;
        }
        self.current.clear();
        self.global_step += 1;
        if self.global_step.is_multiple_of(self.cfg.switch_every) {
            self.state.clear();
        }
        Ok(())
    }

    /// Writes `optimizer.safetensors` (`{name}.exp_avg`, `{name}.exp_avg_sq`) and
    /// `optimizer.json` (settings, global step, offsets, step counts) into `dir`. Masks are
    /// not saved: they follow from the offsets.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors: BTreeMap<String, &[f32]> = BTreeMap::new();
        for (name, st) in &self.state {
            tensors.insert(format!("{name}.exp_avg"), &st.m);
            tensors.insert(format!("{name}.exp_avg_sq"), &st.v);
        }
        let meta = SavedRatio {
            badam_ratio: self.cfg.clone(),
            params: self.trainable_names(),
            global_step: self.global_step,
            offsets: self
                .params
                .iter()
                .map(|p| (p.name.clone(), p.offset))
                .collect(),
            steps: self
                .state
                .iter()
                .map(|(n, s)| (n.clone(), s.step))
                .collect(),
        };
        write_state(dir, &tensors, &meta)
    }

    /// Restores what [`BadamRatio::save`] wrote. The checkpoint must be ratio mode over the
    /// same trained parameters with the same ratio, mask mode and switch interval; β and eps
    /// come from the checkpoint (as torch's `load_state_dict` restores the groups).
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        let meta: SavedRatio = read_meta(dir, "a BAdam ratio-mode optimizer state")?;
        let path = dir.join(OPTIMIZER_JSON);
        let (a, b) = (&meta.badam_ratio, &self.cfg);
        if meta.params != self.trainable_names()
            || a.update_ratio != b.update_ratio
            || a.mask_mode != b.mask_mode
            || a.switch_every != b.switch_every
            || a.preserve_threshold != b.preserve_threshold
        {
            return Err(Error::Msg(format!(
                "{}: the checkpoint's BAdam ratio state was written for other parameters or \
                 settings (ratio, mask mode) than this run's",
                path.display()
            )));
        }
        let st = StateTensors::read(dir)?;
        let mut state = HashMap::new();
        for (name, step) in &meta.steps {
            let m = st.need(&format!("{name}.exp_avg"))?;
            let v = st.need(&format!("{name}.exp_avg_sq"))?;
            state.insert(name.clone(), SparseState { step: *step, m, v });
        }
        for p in &mut self.params {
            p.offset = meta.offsets.get(&p.name).copied().unwrap_or(0) % p.numel.max(1);
        }
        self.cfg.hyper = meta.badam_ratio.hyper;
        self.global_step = meta.global_step;
        self.state = state;
        self.masks.clear();
        self.current.clear();
        Ok(())
    }
}

/// LF's checks on `badam_update_ratio` (its `assert ratio > 1e-6`), and lmf's refusals of what
/// BAdam cannot do sensibly.
fn check_config(cfg: &RatioConfig) -> Result<()> {
    let r = cfg.update_ratio;
    if r.is_nan() || r <= 1e-6 {
        return Err(Error::Msg(format!(
            "`badam_update_ratio` must be above 1e-6 (LLaMA-Factory asserts it), got {r}"
        )));
    }
    if r > 1.0 {
        return Err(Error::Msg(format!(
            "`badam_update_ratio` {r} is above 1: BAdam's masks would repeat entries; use at most 1"
        )));
    }
    if cfg.switch_every == 0 {
        return Err(Error::Msg(
            "BAdam ratio: `switch_every` must be positive".into(),
        ));
    }
    Ok(())
}

/// Per-parameter refusals: ratio 1 on a small parameter (BAdam shifts an already sparse
/// gradient there, which torch refuses), scatter on a parameter too big for torch's
/// reproduced shuffle.
fn check_param(cfg: &RatioConfig, name: &str, numel: usize) -> Result<()> {
    if cfg.update_ratio == 1.0 && numel < cfg.preserve_threshold {
        return Err(Error::Msg(format!(
            "`badam_update_ratio: 1` fails in BAdam 1.4 for parameters with fewer than {} \
             entries (`{name}` has {numel}): torch raises `add(sparse, dense) is not supported`",
            cfg.preserve_threshold
        )));
    }
    if cfg.mask_mode == MaskMode::Scatter && cfg.update_ratio < 1.0 && numel >= RANDPERM_SMALL {
        return Err(Error::Msg(format!(
            "`badam_mask_mode: scatter`: `{name}` has {numel} entries; lmf reproduces torch's \
             randperm only below {RANDPERM_SMALL}"
        )));
    }
    Ok(())
}

/// `_sparse_adam`'s arithmetic on the masked values `g` (moments in `st`, `st.step` already
/// counted): returns `f32(−step_size)` and the direction `m / (√v + eps)`.
///
/// ```text
/// m += (g − m)·f32(1 − β1)        grad_values.sub(exp_avg).mul_(1 - beta1); exp_avg.add_(…)
/// v += (g·g − v)·f32(1 − β2)      grad_values.pow(2).sub_(exp_avg_sq).mul_(1 - beta2); add_
/// d  = m / (√v + f32(eps))        numer.div_(exp_avg_sq.clone().sqrt_().add_(eps))
/// step_size = lr·√(1 − β2ᵗ) / (1 − β1ᵗ)   (f64, Python's `**` = C pow)
/// ```
fn sparse_adam(g: &[f32], st: &mut SparseState, h: &AdamHyper, lr: f64) -> (f32, Vec<f32>) {
    let c1 = (1.0 - h.beta1) as f32;
    let c2 = (1.0 - h.beta2) as f32;
    let eps = h.eps as f32;
    let mut dir = Vec::with_capacity(g.len());
    for ((&x, m), v) in g.iter().zip(&mut st.m).zip(&mut st.v) {
        *m += (x - *m) * c1;
        *v += (x * x - *v) * c2;
        dir.push(*m / (v.sqrt() + eps));
    }
    let t = st.step as f64;
    let bc1 = 1.0 - h.beta1.powf(t);
    let bc2 = 1.0 - h.beta2.powf(t);
    let step_size = lr * bc2.sqrt() / bc1;
    // `-step_size * sparse`: the python float is cast to f32 for the multiply
    ((-step_size) as f32, dir)
}

/// `param.add_(scale · sparse(dir))`: `p[idx_j] += scale · dir[j]` (f32), idx ascending.
fn apply(var: &mut Var, name: &str, mask: &Mask, scale: f32, dir: &[f32]) -> Result<()> {
    if var.dtype() != DType::F32 {
        return Err(Error::Msg(format!(
            "BAdam ratio: lmf steps f32 parameters; `{name}` is {}",
            var.dtype()
        )));
    }
    let add = |p: &mut [f32]| mask.add_scaled(p, scale, dir);
    if var.tensor().device().is_cpu() {
        var.tensor_mut().update::<f32>(add)?;
    } else {
        let mut host = var.tensor().to_vec::<f32>()?;
        add(&mut host);
        *var.tensor_mut() = Tensor::from_slice(&host, var.shape(), var.device())?;
    }
    Ok(())
}

/// Little-endian bytes of an f32 slice (safetensors layout).
#[cfg(test)]
mod tests {
    use super::*;
    use lmf_autograd::Device;
    use serde_json::Value;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/hf/train/badam_ratio_unit.json"
    );

    fn fixture() -> Value {
        let text = std::fs::read_to_string(FIXTURE).expect("badam_ratio_unit.json");
        serde_json::from_str(&text).expect("json")
    }

    fn f32s(v: &Value) -> Vec<f32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect()
    }

    fn usizes(v: &Value) -> Vec<usize> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_u64().expect("index") as usize)
            .collect()
    }

    /// `make_badam_ratio_unit.py`'s gradient of parameter `p` at step `s`, micro-batch `mb`.
    fn grad_of(p: usize, s: usize, mb: usize, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + s * 104729 + mb * 7 + p * 1009) % 2001) as f32 - 1000.0)
            .map(|x| x / 1000.0)
            .collect()
    }

    /// … and its initial values.
    fn init_of(p: usize, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 31 + p * 17) % 201) as f32 - 100.0)
            .map(|x| x / 100.0)
            .collect()
    }

    fn shapes(fx: &Value) -> Vec<(String, Vec<usize>)> {
        fx["shapes"]
            .as_array()
            .expect("shapes")
            .iter()
            .map(|s| (s[0].as_str().expect("name").to_string(), usizes(&s[1])))
            .collect()
    }

    fn vars(all: &[(String, Vec<usize>)]) -> Vec<Var> {
        all.iter()
            .enumerate()
            .map(|(p, (_, shape))| {
                let n = shape.iter().product();
                Var::param(Tensor::from_vec(init_of(p, n), shape, Device::Cpu).expect("tensor"))
            })
            .collect()
    }

    fn config(case: &Value) -> RatioConfig {
        let c = &case["config"];
        RatioConfig {
            update_ratio: c["ratio"].as_f64().expect("ratio"),
            mask_mode: match c["mode"].as_str() {
                Some("scatter") => MaskMode::Scatter,
                _ => MaskMode::Adjacent,
            },
            switch_every: c["switch_every"].as_u64().expect("switch_every"),
            preserve_threshold: c["threshold"].as_u64().expect("threshold") as usize,
            hyper: AdamHyper::default(),
        }
    }

    /// One trainer step as lmf will run it: per micro-batch, accumulate (`acc += g`) then the
    /// hook; then the step at `lr`.
    fn train_step(
        opt: &mut BadamRatio,
        all: &[(String, Vec<usize>)],
        vs: &mut [Var],
        s: usize,
        gas: usize,
        lr: f64,
    ) -> HashMap<String, Vec<usize>> {
        let mut grads: HashMap<String, Vec<f32>> = HashMap::new();
        for mb in 0..gas {
            for (p, (name, shape)) in all.iter().enumerate() {
                if !opt.is_trainable(name) {
                    continue;
                }
                let g = grad_of(p, s, mb, shape.iter().product());
                match grads.get_mut(name) {
                    Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, b)| *a += b),
                    None => {
                        grads.insert(name.clone(), g);
                    }
                }
            }
            opt.after_micro_batch(&mut grads).expect("hook");
        }
        let masks = all
            .iter()
            .filter_map(|(n, _)| opt.mask_indices(n).map(|m| (n.clone(), m)))
            .collect();
        let mut params: HashMap<String, &mut Var> = all
            .iter()
            .map(|(n, _)| n.clone())
            .zip(vs.iter_mut())
            .collect();
        opt.step(&mut params, &grads, lr).expect("step");
        masks
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Distance in f32 steps (same-sign values).
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// `got` within one f32 step of `want` everywhere (torch's sqrt is MKL's, off by one step
    /// for ~20% of inputs, which reaches a parameter now and then); returns how many differ.
    fn within_one_ulp(got: &[f32], want: &[f32], ctx: &str) -> usize {
        assert_eq!(got.len(), want.len(), "{ctx}");
        let mut differ = 0;
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!(ulps(a, b) <= 1, "{ctx}[{i}]: {a} vs torch {b}");
            differ += usize::from(a != b);
        }
        differ
    }

    /// The toy runs of `make_badam_ratio_unit.py` (real BAdam hooks and steps): masks, offsets,
    /// step counts and every parameter after every step, bit for bit.
    #[test]
    fn matches_badam_on_the_toy_runs() {
        let fx = fixture();
        let all = shapes(&fx);
        let lrs: Vec<f64> = fx["lrs"]
            .as_array()
            .expect("lrs")
            .iter()
            .map(|x| x.as_f64().expect("lr"))
            .collect();
        for (case_name, case) in fx["cases"].as_object().expect("cases") {
            let cfg = config(case);
            let gas = case["config"]["gas"].as_u64().expect("gas") as usize;
            let mut opt = BadamRatio::new(&all, |_| true, cfg, 42).expect("new");
            assert_eq!(
                scatter_seeds(42, all.len()),
                case["seeds"]
                    .as_array()
                    .expect("seeds")
                    .iter()
                    .map(|x| x.as_u64().expect("seed"))
                    .collect::<Vec<_>>(),
                "{case_name}: seeds"
            );
            let (e, h) = opt.frozen();
            assert_eq!(
                vec![e, h],
                case["frozen"]
                    .as_array()
                    .expect("frozen")
                    .iter()
                    .map(|x| x.as_str().expect("name"))
                    .collect::<Vec<_>>()
            );
            let hook_order: Vec<String> = opt.params.iter().map(|p| p.name.clone()).collect();
            let want: Vec<String> = case["hook_order"]
                .as_array()
                .expect("hook_order")
                .iter()
                .map(|x| x.as_str().expect("name").to_string())
                .collect();
            assert_eq!(hook_order, want, "{case_name}: hook order");
            let mut vs = vars(&all);
            let (mut differ, mut total) = (0, 0);
            for (s, want) in case["steps"].as_array().expect("steps").iter().enumerate() {
                let masks = train_step(&mut opt, &all, &mut vs, s, gas, lrs[s]);
                for (name, m) in want["masks"].as_object().expect("masks") {
                    assert_eq!(
                        masks.get(name),
                        Some(&usizes(m)),
                        "{case_name} step {s} {name} mask"
                    );
                }
                assert_eq!(
                    masks.len(),
                    want["masks"].as_object().map_or(0, |m| m.len())
                );
                for p in &opt.params {
                    assert_eq!(
                        p.offset as u64,
                        want["offsets"][&p.name].as_u64().expect("offset"),
                        "{case_name} step {s} {} offset",
                        p.name
                    );
                    let t = opt.state.get(&p.name).map_or(0, |st| st.step);
                    assert_eq!(
                        t,
                        want["state_steps"][&p.name].as_u64().expect("t"),
                        "{case_name} step {s} {} state step",
                        p.name
                    );
                }
                for ((name, _), v) in all.iter().zip(&vs) {
                    let got = v.tensor().to_vec::<f32>().expect("values");
                    let exp = f32s(&want["params"][name]);
                    let ctx = format!("{case_name} step {s} {name}");
                    differ += within_one_ulp(&got, &exp, &ctx);
                    total += got.len();
                }
            }
            // none on this fixture; a rare one is MKL's sqrt
            assert!(
                differ * 100 <= total,
                "{case_name}: {differ} of {total} differ"
            );
        }
    }

    /// `_sparse_adam` alone on hand-made vectors (`adam_unit` of the fixture: torch's numbers).
    #[test]
    fn sparse_adam_arithmetic_matches_torch() {
        let fx = fixture();
        let u = &fx["adam_unit"];
        let mut st = SparseState {
            step: u["step"].as_u64().expect("step"),
            m: f32s(&u["exp_avg"]),
            v: f32s(&u["exp_avg_sq"]),
        };
        let h = AdamHyper {
            beta1: u["betas"][0].as_f64().expect("b1"),
            beta2: u["betas"][1].as_f64().expect("b2"),
            eps: u["eps"].as_f64().expect("eps"),
        };
        let (scale, dir) = sparse_adam(&f32s(&u["values"]), &mut st, &h, 1e-3);
        assert_eq!(bits(&st.m), bits(&f32s(&u["exp_avg_after"])));
        assert_eq!(bits(&st.v), bits(&f32s(&u["exp_avg_sq_after"])));
        let mut p = f32s(&u["param"]);
        Mask::List(Arc::new(usizes(&u["indices"]))).add_scaled(&mut p, scale, &dir);
        within_one_ulp(&p, &f32s(&u["param_after"]), "adam_unit");
    }

    /// `make_badam_ratio_unit.py: hashed`: f32 in [-0.5, 0.5) from splitmix64 of (i, s, salt).
    fn hashed(n: usize, s: u64, salt: u64) -> Vec<f32> {
        let base = s
            .wrapping_mul(0xBF58_476D_1CE4_E5B9)
            .wrapping_add(salt.wrapping_mul(0x94D0_49BB_1331_11EB));
        (0..n as u64)
            .map(|i| {
                let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(base);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 40) as f32 / 16_777_216.0 - 0.5
            })
            .collect()
    }

    /// Eight `_sparse_adam` steps on 1000 hashed entries (`adam_random`): the moments bit for
    /// bit, the parameter within one f32 step (torch's `sqrt_` is MKL's vsSqrt, which is off
    /// by one step for ~20% of inputs; lmf's is IEEE).
    #[test]
    fn sparse_adam_matches_torch_over_steps() {
        let fx = fixture();
        let u = &fx["adam_random"];
        let n = u["n"].as_u64().expect("n") as usize;
        let mut p: Vec<f32> = hashed(n, 0, 1).iter().map(|x| x * 4.0).collect();
        let mut st = SparseState {
            step: 0,
            m: vec![0.0; n],
            v: vec![0.0; n],
        };
        let all = Mask::all(n);
        for s in 0..u["steps"].as_u64().expect("steps") {
            let scale = 2f32.powi(-((s % 5) as i32));
            let g: Vec<f32> = hashed(n, s, 2).iter().map(|x| x * scale).collect();
            st.step += 1;
            let lr = 1e-3 * (s + 1) as f64;
            let (step, dir) = sparse_adam(&all.gather(&g), &mut st, &AdamHyper::default(), lr);
            all.add_scaled(&mut p, step, &dir);
        }
        let want = |k: &str| -> Vec<u32> {
            u[k].as_array()
                .expect("bits")
                .iter()
                .map(|x| x.as_u64().expect("bits") as u32)
                .collect()
        };
        assert_eq!(bits(&st.m), want("exp_avg"));
        assert_eq!(bits(&st.v), want("exp_avg_sq"));
        let torch: Vec<f32> = want("param").into_iter().map(f32::from_bits).collect();
        // 5 of 1000 differ by one step on the reference machine (torch's sqrt, see above)
        let differ = within_one_ulp(&p, &torch, "adam_random");
        assert!(differ <= 10, "{differ} of {n} differ");
    }

    #[test]
    fn adjacent_masks_wrap_and_scatter_is_torch_randperm() {
        assert_eq!(Mask::adjacent(10, 3, 0).indices(), [0, 1, 2]);
        assert_eq!(Mask::adjacent(10, 3, 7).indices(), [7, 8, 9]);
        assert_eq!(Mask::adjacent(10, 3, 8).indices(), [0, 8, 9]);
        assert_eq!(Mask::adjacent(10, 0, 4).indices(), Vec::<usize>::new());
        let mut g: Vec<f32> = (1..=10).map(|x| x as f32).collect();
        Mask::adjacent(10, 4, 8).zero_outside(&mut g);
        assert_eq!(g, [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 10.0]);
        // torch 2.9.1: torch.manual_seed(0); torch.randperm(10).tolist()
        assert_eq!(torch_randperm(10, 0), [4, 1, 7, 5, 3, 9, 0, 8, 6, 2]);
        // torch.manual_seed(5); torch.randperm(100000)[:5].tolist()
        assert_eq!(
            torch_randperm(100_000, 5)[..5],
            [53411, 99184, 41565, 33006, 87522]
        );
        // torch.manual_seed(42); [torch.randint(0, 1000, (1,)).item() for _ in range(5)]
        assert_eq!(scatter_seeds(42, 5), [542, 67, 876, 414, 26]);
        // sorted(randperm[8:] + randperm[:1]) under seed 0
        assert_eq!(Mask::scatter(10, 3, 8, 0).indices(), [2, 4, 6]);
    }

    /// Two micro-batches with a switch step: the second micro-batch is masked with the moved
    /// offset, so the first micro-batch's masked part is dropped; + 1e-9 per micro-batch on a
    /// small parameter.
    #[test]
    fn accumulation_then_switch_quirk() {
        let all = vec![
            ("embed".to_string(), vec![2, 2]),
            ("w".to_string(), vec![10]),
            ("lm_head".to_string(), vec![2, 2]),
        ];
        let cfg = RatioConfig {
            update_ratio: 0.3,
            mask_mode: MaskMode::Adjacent,
            switch_every: 1,
            preserve_threshold: 5,
            hyper: AdamHyper::default(),
        };
        let mut opt = BadamRatio::new(&all, |_| true, cfg, 0).expect("new");
        assert_eq!(opt.trainable_names(), ["w"]);
        let mut grads: HashMap<String, Vec<f32>> = [("w".to_string(), vec![1.0f32; 10])].into();
        opt.after_micro_batch(&mut grads).expect("hook");
        assert_eq!(grads["w"][..4], [1.0, 1.0, 1.0, 0.0]);
        grads
            .get_mut("w")
            .expect("w")
            .iter_mut()
            .for_each(|x| *x += 2.0);
        opt.after_micro_batch(&mut grads).expect("hook");
        // the switch moved the offset to 3 after the first micro-batch: [3, 6) of g1 + g2
        assert_eq!(opt.mask_indices("w"), Some(vec![3, 4, 5]));
        assert_eq!(grads["w"][..7], [0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0]);
        assert_eq!(opt.params[0].offset, 6);
        // below the threshold: + f32(1e-9) on every entry before masking
        let cfg = RatioConfig {
            preserve_threshold: 100,
            switch_every: 100,
            ..opt.cfg.clone()
        };
        let mut opt = BadamRatio::new(&all, |_| true, cfg, 0).expect("new");
        let mut grads: HashMap<String, Vec<f32>> = [("w".to_string(), vec![0.5f32; 10])].into();
        opt.after_micro_batch(&mut grads).expect("hook");
        assert_eq!(grads["w"][0], 0.5f32 + 1e-9f32);
        assert_eq!(grads["w"][3], 0.0);
        assert_eq!(opt.mask_indices("w"), Some(vec![0, 1, 2]));
    }

    #[test]
    fn frozen_names_and_config_errors() {
        let names: Vec<String> = [
            "model.embed_tokens.weight",
            "model.norm.weight",
            "lm_head.weight",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (e, h) = frozen_names(&names).expect("frozen");
        assert_eq!(
            (e.as_str(), h.as_str()),
            ("model.embed_tokens.weight", "lm_head.weight")
        );
        let tied = frozen_names(&names[..2]).expect_err("tied");
        assert!(tied.to_string().contains("untied `lm_head`"), "{tied}");
        let all: Vec<(String, Vec<usize>)> =
            names.iter().map(|n| (n.clone(), vec![4, 4])).collect();
        let cfg = |r| RatioConfig::lf(r, MaskMode::Adjacent, AdamHyper::default());
        assert!(BadamRatio::new(&all, |_| true, cfg(0.0), 0).is_err());
        assert!(BadamRatio::new(&all, |_| true, cfg(1.5), 0).is_err());
        // ratio 1 on a 16-entry parameter: torch's error in BAdam
        let err = BadamRatio::new(&all, |_| true, cfg(1.0), 0).expect_err("ratio 1");
        assert!(err.to_string().contains("add(sparse, dense)"), "{err}");
        let ok = BadamRatio::new(&all, |_| true, cfg(0.05), 0).expect("new");
        assert_eq!(ok.trainable_names(), ["model.norm.weight"]);
        assert!(ok.is_trainable("model.norm.weight"));
        assert!(!ok.is_trainable("lm_head.weight"));
    }

    /// Save after a few steps, load into a fresh optimizer, continue both: identical.
    #[test]
    fn state_roundtrips_and_resume_is_exact() {
        let fx = fixture();
        let all = shapes(&fx);
        let case = &fx["cases"]["scatter_gas2"];
        let cfg = config(case);
        let mut a = BadamRatio::new(&all, |_| true, cfg.clone(), 42).expect("new");
        let mut va = vars(&all);
        for s in 0..4 {
            train_step(&mut a, &all, &mut va, s, 2, 1e-3);
        }
        let dir = std::env::temp_dir().join(format!("lmf-badam-ratio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        a.save(&dir).expect("save");
        let mut b = BadamRatio::new(&all, |_| true, cfg.clone(), 42).expect("new");
        b.load(&dir).expect("load");
        assert_eq!(b.global_step, a.global_step);
        assert_eq!(b.state, a.state);
        let mut vb: Vec<Var> = va.iter().map(|v| Var::param(v.tensor().clone())).collect();
        for s in 4..10 {
            train_step(&mut a, &all, &mut va, s, 2, 1e-3);
            train_step(&mut b, &all, &mut vb, s, 2, 1e-3);
        }
        for (x, y) in va.iter().zip(&vb) {
            let (x, y) = (
                x.tensor().to_vec::<f32>().expect("a"),
                y.tensor().to_vec::<f32>().expect("b"),
            );
            assert_eq!(bits(&x), bits(&y));
        }
        // another ratio is refused
        let other = RatioConfig {
            update_ratio: 0.5,
            ..cfg
        };
        let mut c = BadamRatio::new(&all, |_| true, other, 42).expect("new");
        assert!(c.load(&dir).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
