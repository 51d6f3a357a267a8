//! `lr_scheduler_type: reduce_lr_on_plateau`: torch's `ReduceLROnPlateau`, which transformers
//! steps with the evaluation metric (`metric_for_best_model`, `eval_loss` by default) after each
//! evaluation during training, never per optimizer step. Its `lr_scheduler_kwargs` are torch's:
//! `mode` min / max, `factor` 0.1, `patience` 10, `threshold` 1e-4, `threshold_mode` rel / abs,
//! `cooldown` 0, `min_lr` 0, `eps` 1e-8.

use serde_json::{Map, Value};

use super::scheduler::SchedulerError;

/// The plateau detector and the learning rate it has settled on.
#[derive(Clone, Debug, PartialEq)]
pub struct Plateau {
    /// Current learning rate.
    pub lr: f64,
    /// Best metric so far (∓∞ before the first).
    pub best: f64,
    /// Evaluations without improvement.
    pub num_bad_epochs: u64,
    /// Evaluations left in the cool-down after a reduction.
    pub cooldown_counter: u64,
    /// Evaluations seen.
    pub last_epoch: u64,
    max_mode: bool,
    factor: f64,
    patience: u64,
    threshold: f64,
    rel: bool,
    cooldown: u64,
    min_lr: f64,
    eps: f64,
}

impl Plateau {
    /// torch's constructor with `kwargs` over `base_lr`.
    pub fn new(base_lr: f64, kwargs: &Map<String, Value>) -> Result<Plateau, SchedulerError> {
        let bad = |m: String| SchedulerError::BadKwarg(format!("reduce_lr_on_plateau: {m}"));
        for k in kwargs.keys() {
            if ![
                "mode",
                "factor",
                "patience",
                "threshold",
                "threshold_mode",
                "cooldown",
                "min_lr",
                "eps",
            ]
            .contains(&k.as_str())
            {
                return Err(bad(format!("unknown keyword `{k}`")));
            }
        }
        let num = |k: &str, d: f64| -> Result<f64, SchedulerError> {
            match kwargs.get(k) {
                None => Ok(d),
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| bad(format!("`{k}` must be a number, got {v}"))),
            }
        };
        let word = |k: &str, d: &str, allowed: [&str; 2]| -> Result<bool, SchedulerError> {
            let v = match kwargs.get(k) {
                None => d.to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => return Err(bad(format!("`{k}` must be a string, got {v}"))),
            };
            if !allowed.contains(&v.as_str()) {
                return Err(bad(format!("{k} {v} is unknown!")));
            }
            Ok(v == allowed[1])
        };
        let factor = num("factor", 0.1)?;
        if factor >= 1.0 {
            return Err(bad("Factor should be < 1.0.".into()));
        }
        let max_mode = word("mode", "min", ["min", "max"])?;
        Ok(Plateau {
            lr: base_lr,
            best: if max_mode {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            },
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
            max_mode,
            factor,
            patience: num("patience", 10.0)?.max(0.0) as u64,
            threshold: num("threshold", 1e-4)?,
            rel: !word("threshold_mode", "rel", ["rel", "abs"])?,
            cooldown: num("cooldown", 0.0)?.max(0.0) as u64,
            min_lr: num("min_lr", 0.0)?,
            eps: num("eps", 1e-8)?,
        })
    }

    fn is_better(&self, a: f64) -> bool {
        let best = self.best;
        match (self.max_mode, self.rel) {
            (false, true) => a < best * (1.0 - self.threshold),
            (false, false) => a < best - self.threshold,
            (true, true) => a > best * (self.threshold + 1.0),
            (true, false) => a > best + self.threshold,
        }
    }

    /// `scheduler.step(metric)`.
    pub fn step(&mut self, metric: f64) {
        self.last_epoch += 1;
        if self.is_better(metric) {
            self.best = metric;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.patience {
            let new_lr = (self.lr * self.factor).max(self.min_lr);
            if self.lr - new_lr > self.eps {
                self.lr = new_lr;
            }
            self.cooldown_counter = self.cooldown;
            self.num_bad_epochs = 0;
        }
    }

    /// The state a checkpoint keeps: `(lr, best, num_bad_epochs, cooldown_counter, last_epoch)`.
    pub fn state(&self) -> (f64, f64, u64, u64, u64) {
        (
            self.lr,
            self.best,
            self.num_bad_epochs,
            self.cooldown_counter,
            self.last_epoch,
        )
    }

    /// Restores [`Plateau::state`].
    pub fn set_state(&mut self, s: (f64, f64, u64, u64, u64)) {
        (
            self.lr,
            self.best,
            self.num_bad_epochs,
            self.cooldown_counter,
            self.last_epoch,
        ) = s;
    }
}
