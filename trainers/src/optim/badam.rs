//! BAdam, layer mode (Luo et al. 2024, "BAdam: A Memory Efficient Full Parameter Optimization
//! Method for Large Language Models"), as `badam.BlockOptimizer` 1.4 runs under LLaMA-Factory:
//!
//! - one block per decoder layer (the prefix `…layers.<i>.` of the parameter names, in order);
//!   embeddings, the final norm and the head belong to no block and stay frozen;
//! - only the active block is trainable and has optimizer state: a fresh torch AdamW whose
//!   weight decay is torch's default 0.01 for every parameter (BlockOptimizer rebuilds its
//!   groups as `{weight_decay: ..., **defaults}`, so the constructor default wins over LF's
//!   `weight_decay`);
//! - after optimizer step `s` (counted from 1), when `(s + 1) % switch_interval == 0`, the next
//!   block (ascending / descending / random / fixed) becomes active and the moments restart.
//!
//! `random` draws each round's block order from lmf's own generator seeded with `seed`
//! (BlockOptimizer uses `torch.randperm` on torch's global generator, whose state at that
//! point lmf does not reproduce).

use crate::data::numpy_rng::NumpyRng;
use crate::optim::ParamGroup;
use crate::{Error, Result};

/// torch AdamW's constructor default, the decay every BAdam block gets.
pub const BADAM_WEIGHT_DECAY: f64 = 0.01;

/// `badam_switch_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchMode {
    /// Blocks 0, 1, 2, ...
    Ascending,
    /// Last block first, then down.
    Descending,
    /// A random order each round.
    Random,
    /// Always the start block.
    Fixed,
}

/// LF's BAdam layer-mode arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct BadamConfig {
    /// `badam_start_block`.
    pub start_block: Option<usize>,
    /// `badam_switch_mode`.
    pub switch_mode: SwitchMode,
    /// `badam_switch_interval` (−1: a switch after every step, as Python's `% -1`).
    pub switch_interval: i64,
}

/// Which block trains, and when it changes.
#[derive(Clone, Debug)]
pub struct BlockSchedule {
    cfg: BadamConfig,
    /// Block prefixes (`model.layers.0.`, ...).
    pub blocks: Vec<String>,
    current: usize,
    order: Vec<usize>,
    rng: NumpyRng,
    steps: u64,
}

/// The block prefix of a parameter name: the match of `.*layers.[^.]*\.` (BlockOptimizer's
/// `infer_param_groups`), i.e. everything up to the component after the last `layers?`.
fn block_prefix(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    // greedy `.*`: the last position where `layers` + any char + `[^.]*` + `.` matches
    let mut best = None;
    let mut from = 0;
    while let Some(at) = name[from..].find("layers") {
        let i = from + at;
        let after = i + "layers".len();
        if after < bytes.len() {
            // one char (the regex's `.`), then non-dots, then a dot
            let rest = &name[after + 1..];
            if let Some(dot) = rest.find('.') {
                best = Some(name[..after + 1 + dot + 1].to_string());
            }
        }
        from = i + 1;
    }
    best
}

impl BlockSchedule {
    /// The blocks of `names` (model order) and the start block.
    pub fn new(names: &[String], cfg: &BadamConfig, seed: u64) -> Result<BlockSchedule> {
        let mut blocks: Vec<String> = vec![];
        for n in names {
            if blocks.iter().any(|b| n.contains(b.as_str())) {
                continue;
            }
            if let Some(p) = block_prefix(n) {
                blocks.push(p);
            }
        }
        if blocks.is_empty() {
            return Err(Error::Msg(
                "BAdam: the model has no decoder layers to make blocks of".into(),
            ));
        }
        if cfg.switch_interval == 0 {
            return Err(Error::Msg(
                "`badam_switch_interval` must not be 0 (-1 switches after every step)".into(),
            ));
        }
        let mut s = BlockSchedule {
            cfg: cfg.clone(),
            blocks,
            current: 0,
            order: vec![],
            rng: NumpyRng::new(seed),
            steps: 0,
        };
        s.current = match (cfg.start_block, cfg.switch_mode) {
            (Some(b), _) if b >= s.blocks.len() => {
                return Err(Error::Msg(format!(
                    "`badam_start_block` {b} is past the last of {} blocks",
                    s.blocks.len()
                )))
            }
            (Some(b), _) => b,
            (None, SwitchMode::Descending) => s.blocks.len() - 1,
            (None, SwitchMode::Ascending) => 0,
            (None, SwitchMode::Random) => s.next_random(),
            (None, SwitchMode::Fixed) => {
                return Err(Error::Msg(
                    "`badam_switch_mode: fixed` needs `badam_start_block`".into(),
                ))
            }
        };
        Ok(s)
    }

    /// The schedule after `steps` optimizer steps (resuming a checkpoint).
    pub fn at_step(
        names: &[String],
        cfg: &BadamConfig,
        seed: u64,
        steps: u64,
    ) -> Result<BlockSchedule> {
        let mut s = BlockSchedule::new(names, cfg, seed)?;
        for _ in 0..steps {
            s.after_step();
        }
        Ok(s)
    }

    fn next_random(&mut self) -> usize {
        if self.order.is_empty() {
            self.order = self.rng.permutation(self.blocks.len());
        }
        self.order.pop().unwrap_or(0)
    }

    /// The active block's prefix.
    pub fn active(&self) -> &str {
        &self.blocks[self.current]
    }

    /// Whether parameter `name` is in the active block.
    pub fn is_active(&self, name: &str) -> bool {
        name.contains(self.active())
    }

    /// Counts one optimizer step; returns whether the active block changed (the optimizer
    /// must then start over on the new block).
    pub fn after_step(&mut self) -> bool {
        self.steps += 1;
        if (self.steps as i64 + 1) % self.cfg.switch_interval != 0 {
            return false;
        }
        let n = self.blocks.len();
        self.current = match self.cfg.switch_mode {
            SwitchMode::Ascending => (self.current + 1) % n,
            SwitchMode::Descending => (self.current + n - 1) % n,
            SwitchMode::Random => self.next_random(),
            SwitchMode::Fixed => self.current,
        };
        true
    }

    /// The optimizer groups of the active block among `trainable`: BlockOptimizer's
    /// `[non-bias, bias]`, both at decay 0.01.
    pub fn groups(&self, trainable: &[String], lr: f64) -> Vec<ParamGroup> {
        let (bias, rest): (Vec<String>, Vec<String>) = trainable
            .iter()
            .filter(|n| self.is_active(n))
            .cloned()
            .partition(|n| n.contains("bias"));
        [rest, bias]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|params| ParamGroup {
                lr,
                weight_decay: BADAM_WEIGHT_DECAY,
                params,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(layers: usize) -> Vec<String> {
        let mut v = vec!["model.embed_tokens.weight".to_string()];
        for i in 0..layers {
            v.push(format!("model.layers.{i}.self_attn.q_proj.weight"));
            v.push(format!("model.layers.{i}.mlp.down_proj.weight"));
        }
        v.push("model.norm.weight".into());
        v.push("lm_head.weight".into());
        v
    }

    #[test]
    fn blocks_and_ascending_switches() {
        assert_eq!(
            block_prefix("model.layers.12.mlp.up_proj.weight").as_deref(),
            Some("model.layers.12.")
        );
        assert_eq!(block_prefix("lm_head.weight"), None);
        let cfg = BadamConfig {
            start_block: None,
            switch_mode: SwitchMode::Ascending,
            switch_interval: 4,
        };
        let mut s = BlockSchedule::new(&names(3), &cfg, 0).unwrap();
        assert_eq!(
            s.blocks,
            ["model.layers.0.", "model.layers.1.", "model.layers.2."]
        );
        // switches after steps 3, 7, 11: block 0 trains 3 steps, later ones 4
        let mut active = vec![];
        for _ in 0..12 {
            active.push(s.current);
            s.after_step();
        }
        assert_eq!(active, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0]);
        assert!(!s.is_active("model.layers.10.x"));
        let replay = BlockSchedule::at_step(&names(3), &cfg, 0, 12).unwrap();
        assert_eq!(replay.current, s.current);
        let d = BadamConfig {
            switch_mode: SwitchMode::Descending,
            ..cfg.clone()
        };
        assert_eq!(BlockSchedule::new(&names(3), &d, 0).unwrap().current, 2);
        let f = BadamConfig {
            switch_mode: SwitchMode::Fixed,
            ..cfg
        };
        assert!(BlockSchedule::new(&names(3), &f, 0).is_err());
    }
}
