//! Learning-rate schedules exactly as transformers 5.6 computes them (`get_scheduler`).
//!
//! Every schedule is a pure function of the optimizer step: torch's `LambdaLR` sets the lr used
//! at optimizer step `s` (0-based) to `base_lr * lambda(s)` and `scheduler.step()` runs after each
//! optimizer step, so resuming only needs the step count (`last_epoch`). The arithmetic below
//! follows transformers' operation order in f64 so values agree to the last bit or two.

use super::plateau::Plateau;
use serde_json::{Map, Value};
use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

/// A scheduler problem: a bad name, kwarg or step count.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedulerError {
    /// `lr_scheduler_type` is not one we know.
    #[error("unknown lr_scheduler_type `{0}`; expected one of: {names}", names = SchedulerType::NAMES.join(", "))]
    UnknownType(String),
    /// A key in `lr_scheduler_kwargs` this scheduler does not take.
    #[error("lr_scheduler_kwargs: `{key}` is not accepted by `{ty}`; it accepts: {accepted}")]
    UnknownKwarg {
        /// The scheduler name.
        ty: &'static str,
        /// The offending key.
        key: String,
        /// The keys it accepts.
        accepted: String,
    },
    /// A kwarg with a wrong type or value, or a missing required one.
    #[error("lr_scheduler_kwargs: {0}")]
    BadKwarg(String),
    /// Step counts that the schedule cannot work with.
    #[error("{0}")]
    BadSteps(String),
}

/// The HF / LLaMA-Factory `lr_scheduler_type` values we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerType {
    /// Linear warmup, then linear decay to 0 at `num_training_steps`.
    Linear,
    /// Linear warmup, then cosine decay (`num_cycles` 0.5 = half a wave down to 0).
    Cosine,
    /// Linear warmup, then `num_cycles` hard-restarted cosine waves.
    CosineWithRestarts,
    /// Linear warmup, then polynomial decay to the absolute `lr_end`.
    Polynomial,
    /// Constant base lr.
    Constant,
    /// Linear warmup, then constant.
    ConstantWithWarmup,
    /// Linear warmup, then `1 / sqrt((step + shift) / timescale)`.
    InverseSqrt,
    /// Cosine that bottoms out at `min_lr` (or `min_lr_rate` x base lr).
    CosineWithMinLr,
    /// Warmup, stable plateau, then decay to `min_lr_ratio`.
    WarmupStableDecay,
    /// `cosine_with_min_lr` with its own warmup (optionally from `warmup_lr_rate`) and the
    /// cosine one step ahead.
    CosineWarmupWithMinLr,
    /// torch's `ReduceLROnPlateau`, stepped with an evaluation metric ([`super::plateau`]).
    ReduceLrOnPlateau,
}

impl SchedulerType {
    /// The names `parse` accepts, in declaration order.
    pub const NAMES: [&'static str; 11] = [
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
        "constant",
        "constant_with_warmup",
        "inverse_sqrt",
        "cosine_with_min_lr",
        "warmup_stable_decay",
        "cosine_warmup_with_min_lr",
        "reduce_lr_on_plateau",
    ];

    /// Every type, in the order of [`Self::NAMES`].
    pub const ALL: [SchedulerType; 11] = [
        SchedulerType::Linear,
        SchedulerType::Cosine,
        SchedulerType::CosineWithRestarts,
        SchedulerType::Polynomial,
        SchedulerType::Constant,
        SchedulerType::ConstantWithWarmup,
        SchedulerType::InverseSqrt,
        SchedulerType::CosineWithMinLr,
        SchedulerType::WarmupStableDecay,
        SchedulerType::CosineWarmupWithMinLr,
        SchedulerType::ReduceLrOnPlateau,
    ];

    /// Parses an HF name (`cosine_with_min_lr`, ...); unknown names list the valid ones.
    pub fn parse(name: &str) -> Result<Self, SchedulerError> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| SchedulerError::UnknownType(name.to_string()))
    }

    /// The HF name of this type.
    pub fn name(self) -> &'static str {
        let i = Self::ALL.iter().position(|t| *t == self).unwrap_or(0);
        Self::NAMES[i]
    }

    /// The `lr_scheduler_kwargs` keys transformers' schedule function takes for this type.
    fn accepted_kwargs(self) -> &'static [&'static str] {
        match self {
            SchedulerType::Linear => &[],
            SchedulerType::Cosine | SchedulerType::CosineWithRestarts => &["num_cycles"],
            SchedulerType::Polynomial => &["lr_end", "power"],
            // get_scheduler never forwards kwargs to these two, so any key is ignored.
            SchedulerType::Constant | SchedulerType::ConstantWithWarmup => &[],
            SchedulerType::InverseSqrt => &["timescale"],
            SchedulerType::CosineWithMinLr => &["num_cycles", "min_lr", "min_lr_rate"],
            SchedulerType::CosineWarmupWithMinLr => {
                &["num_cycles", "min_lr", "min_lr_rate", "warmup_lr_rate"]
            }
            // checked by `Plateau::new`
            SchedulerType::ReduceLrOnPlateau => &[],
            SchedulerType::WarmupStableDecay => &[
                "num_stable_steps",
                "num_decay_steps",
                "min_lr_ratio",
                "warmup_type",
                "decay_type",
                "num_cycles",
            ],
        }
    }
}

impl FromStr for SchedulerType {
    type Err = SchedulerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SchedulerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// transformers' `TrainingArguments.get_warmup_steps` (5.6): a set `warmup_ratio` replaces
/// `warmup_steps` (done in `__post_init__`); then a value >= 1 is a step count (truncated) and a
/// value below 1 is a ratio: `ceil(num_training_steps * value)`.
pub fn get_warmup_steps(
    warmup_steps: f64,
    warmup_ratio: Option<f64>,
    num_training_steps: u64,
) -> u64 {
    let w = warmup_ratio.unwrap_or(warmup_steps);
    if w >= 1.0 {
        w as u64
    } else {
        (num_training_steps as f64 * w).ceil().max(0.0) as u64
    }
}

/// Warmup / decay curve shapes of `warmup_stable_decay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    Linear,
    Cosine,
    OneMinusSqrt,
}

impl Curve {
    fn parse(key: &str, v: &str) -> Result<Self, SchedulerError> {
        match v {
            "linear" => Ok(Curve::Linear),
            "cosine" => Ok(Curve::Cosine),
            "1-sqrt" => Ok(Curve::OneMinusSqrt),
            _ => Err(SchedulerError::BadKwarg(format!(
                "`{key}` is `{v}`; expected `linear`, `cosine` or `1-sqrt`"
            ))),
        }
    }
}

/// The per-type parameters, resolved from the kwargs.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Linear,
    Cosine {
        num_cycles: f64,
    },
    CosineWithRestarts {
        num_cycles: f64,
    },
    Polynomial {
        lr_end: f64,
        power: f64,
    },
    Constant,
    ConstantWithWarmup,
    InverseSqrt {
        timescale: f64,
    },
    CosineWithMinLr {
        num_cycles: f64,
        min_lr_rate: f64,
    },
    CosineWarmupWithMinLr {
        num_cycles: f64,
        min_lr_rate: f64,
        warmup_lr_rate: Option<f64>,
    },
    Plateau(Plateau),
    Wsd {
        num_stable_steps: i64,
        num_decay_steps: i64,
        min_lr_ratio: f64,
        warmup: Curve,
        decay: Curve,
        num_cycles: f64,
    },
}

/// A learning-rate schedule: `lr_at(step) = base_lr * multiplier(step)`, plus the `last_epoch`
/// counter torch keeps (the step whose lr is current).
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    ty: SchedulerType,
    shape: Shape,
    base_lr: f64,
    num_warmup_steps: u64,
    num_training_steps: u64,
    last_epoch: u64,
}

/// Reads the kwargs of one scheduler type, rejecting keys it does not take.
struct Kwargs<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Kwargs<'a> {
    fn new(ty: SchedulerType, map: &'a Map<String, Value>) -> Result<Self, SchedulerError> {
        let accepted = ty.accepted_kwargs();
        let ignores_all = matches!(
            ty,
            SchedulerType::Constant | SchedulerType::ConstantWithWarmup
        );
        if !ignores_all {
            if let Some(key) = map.keys().find(|k| !accepted.contains(&k.as_str())) {
                return Err(SchedulerError::UnknownKwarg {
                    ty: ty.name(),
                    key: key.clone(),
                    accepted: if accepted.is_empty() {
                        "nothing".into()
                    } else {
                        accepted.join(", ")
                    },
                });
            }
        }
        Ok(Kwargs { map })
    }

    /// A number kwarg; JSON null counts as absent (Python `None`).
    fn f64(&self, key: &str) -> Result<Option<f64>, SchedulerError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                SchedulerError::BadKwarg(format!("`{key}` must be a number, got {v}"))
            }),
        }
    }

    /// An integer kwarg (step counts).
    fn i64(&self, key: &str) -> Result<Option<i64>, SchedulerError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                SchedulerError::BadKwarg(format!("`{key}` must be an integer, got {v}"))
            }),
        }
    }

    fn curve(&self, key: &str, default: Curve) -> Result<Curve, SchedulerError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::String(s)) => Curve::parse(key, s),
            Some(v) => Err(SchedulerError::BadKwarg(format!(
                "`{key}` must be a string, got {v}"
            ))),
        }
    }
}

/// Linear warmup shared by most types: `step / max(1, warmup)`.
fn warmup_ramp(step: u64, warmup: u64) -> f64 {
    step as f64 / warmup.max(1) as f64
}

/// Cosine from 1 to 0 over `num_cycles` waves; operation order as in transformers.
fn cosine_wave(num_cycles: f64, progress: f64) -> f64 {
    0.5 * (1.0 + (PI * num_cycles * 2.0 * progress).cos())
}

impl Scheduler {
    /// Builds `ty` for an optimizer whose initial lr is `base_lr`, with transformers' kwargs
    /// (`lr_scheduler_kwargs`) and defaults; mirrors `transformers.get_scheduler`.
    pub fn new(
        ty: SchedulerType,
        base_lr: f64,
        num_warmup_steps: u64,
        num_training_steps: u64,
        kwargs: &Map<String, Value>,
    ) -> Result<Self, SchedulerError> {
        if ty == SchedulerType::ReduceLrOnPlateau {
            return Ok(Scheduler {
                ty,
                shape: Shape::Plateau(Plateau::new(base_lr, kwargs)?),
                base_lr,
                num_warmup_steps,
                num_training_steps,
                last_epoch: 0,
            });
        }
        let kw = Kwargs::new(ty, kwargs)?;
        let shape = match ty {
            SchedulerType::ReduceLrOnPlateau => unreachable!("handled above"),
            SchedulerType::Linear => Shape::Linear,
            SchedulerType::Cosine => Shape::Cosine {
                num_cycles: kw.f64("num_cycles")?.unwrap_or(0.5),
            },
            SchedulerType::CosineWithRestarts => Shape::CosineWithRestarts {
                num_cycles: kw.f64("num_cycles")?.unwrap_or(1.0),
            },
            SchedulerType::Polynomial => {
                let lr_end = kw.f64("lr_end")?.unwrap_or(1e-7);
                let power = kw.f64("power")?.unwrap_or(1.0);
                // Written so NaN fails too, as `not (lr_init > lr_end)` does in transformers.
                if base_lr.partial_cmp(&lr_end) != Some(std::cmp::Ordering::Greater) {
                    return Err(SchedulerError::BadKwarg(format!(
                        "polynomial: lr_end ({lr_end}) must be smaller than the learning rate ({base_lr})"
                    )));
                }
                if num_training_steps <= num_warmup_steps {
                    // transformers divides by (training - warmup) and fails at that step.
                    return Err(SchedulerError::BadSteps(format!(
                        "polynomial: num_training_steps ({num_training_steps}) must exceed num_warmup_steps ({num_warmup_steps})"
                    )));
                }
                Shape::Polynomial { lr_end, power }
            }
            SchedulerType::Constant => Shape::Constant,
            SchedulerType::ConstantWithWarmup => Shape::ConstantWithWarmup,
            SchedulerType::InverseSqrt => {
                let default = if num_warmup_steps > 0 {
                    num_warmup_steps as f64
                } else {
                    10_000.0
                };
                let timescale = kw.f64("timescale")?.unwrap_or(default);
                if timescale <= 0.0 {
                    return Err(SchedulerError::BadKwarg(format!(
                        "inverse_sqrt: `timescale` must be positive, got {timescale}"
                    )));
                }
                Shape::InverseSqrt { timescale }
            }
            SchedulerType::CosineWithMinLr | SchedulerType::CosineWarmupWithMinLr => {
                let name = ty.name();
                let num_cycles = kw.f64("num_cycles")?.unwrap_or(0.5);
                let min_lr_rate = match (kw.f64("min_lr")?, kw.f64("min_lr_rate")?) {
                    (Some(_), Some(_)) => {
                        return Err(SchedulerError::BadKwarg(format!(
                            "{name}: set only one of `min_lr` and `min_lr_rate`"
                        )))
                    }
                    (Some(min_lr), None) => min_lr / base_lr,
                    (None, Some(rate)) => rate,
                    (None, None) => {
                        return Err(SchedulerError::BadKwarg(format!(
                            "{name} needs `min_lr` or `min_lr_rate`"
                        )))
                    }
                };
                if ty == SchedulerType::CosineWithMinLr {
                    Shape::CosineWithMinLr {
                        num_cycles,
                        min_lr_rate,
                    }
                } else {
                    Shape::CosineWarmupWithMinLr {
                        num_cycles,
                        min_lr_rate,
                        warmup_lr_rate: kw.f64("warmup_lr_rate")?,
                    }
                }
            }
            SchedulerType::WarmupStableDecay => {
                let num_decay_steps = kw.i64("num_decay_steps")?.ok_or_else(|| {
                    SchedulerError::BadKwarg("warmup_stable_decay needs `num_decay_steps`".into())
                })?;
                // Without num_stable_steps the plateau fills what warmup and decay leave.
                let num_stable_steps = match kw.i64("num_stable_steps")? {
                    Some(s) => s,
                    None => num_training_steps as i64 - num_warmup_steps as i64 - num_decay_steps,
                };
                Shape::Wsd {
                    num_stable_steps,
                    num_decay_steps,
                    min_lr_ratio: kw.f64("min_lr_ratio")?.unwrap_or(0.0),
                    warmup: kw.curve("warmup_type", Curve::Linear)?,
                    decay: kw.curve("decay_type", Curve::Cosine)?,
                    num_cycles: kw.f64("num_cycles")?.unwrap_or(0.5),
                }
            }
        };
        Ok(Scheduler {
            ty,
            shape,
            base_lr,
            num_warmup_steps,
            num_training_steps,
            last_epoch: 0,
        })
    }

    /// [`Self::new`] from an HF name.
    pub fn from_name(
        name: &str,
        base_lr: f64,
        num_warmup_steps: u64,
        num_training_steps: u64,
        kwargs: &Map<String, Value>,
    ) -> Result<Self, SchedulerError> {
        Self::new(
            SchedulerType::parse(name)?,
            base_lr,
            num_warmup_steps,
            num_training_steps,
            kwargs,
        )
    }

    /// `reduce_lr_on_plateau`'s detector, when this is that schedule.
    pub fn plateau(&self) -> Option<&Plateau> {
        match &self.shape {
            Shape::Plateau(p) => Some(p),
            _ => None,
        }
    }

    /// [`Scheduler::plateau`], mutable (stepped after evaluations).
    pub fn plateau_mut(&mut self) -> Option<&mut Plateau> {
        match &mut self.shape {
            Shape::Plateau(p) => Some(p),
            _ => None,
        }
    }

    /// The schedule type.
    pub fn ty(&self) -> SchedulerType {
        self.ty
    }

    /// The optimizer's initial learning rate.
    pub fn base_lr(&self) -> f64 {
        self.base_lr
    }

    /// The warmup steps it was built with.
    pub fn num_warmup_steps(&self) -> u64 {
        self.num_warmup_steps
    }

    /// The training steps it was built with.
    pub fn num_training_steps(&self) -> u64 {
        self.num_training_steps
    }

    /// The lr multiplier (torch's `lr_lambda`) at optimizer step `step` (0-based).
    pub fn multiplier(&self, step: u64) -> f64 {
        let w = self.num_warmup_steps;
        let t = self.num_training_steps;
        let after_warmup_progress =
            || (step as i64 - w as i64) as f64 / (t as i64 - w as i64).max(1) as f64;
        match self.shape {
            Shape::Constant => 1.0,
            Shape::Plateau(ref p) => p.lr / self.base_lr,
            Shape::Wsd { .. } => self.wsd(step),
            Shape::CosineWarmupWithMinLr {
                num_cycles,
                min_lr_rate,
                warmup_lr_rate,
            } => {
                // transformers' `_get_cosine_with_min_lr_schedule_with_warmup_lr_rate_lambda`
                let (s, w, t) = (step as f64, w as f64, t as f64);
                if s < w {
                    return match warmup_lr_rate {
                        None => (s + 1.0) / w.max(1.0),
                        Some(r) => r + (1.0 - r) * s / (w - 1.0).max(1.0),
                    };
                }
                let progress = (s - w + 1.0) / (t - w).max(1.0);
                let factor = cosine_wave(num_cycles, progress);
                (0.0f64).max(factor * (1.0 - min_lr_rate) + min_lr_rate)
            }
            _ if step < w => warmup_ramp(step, w),
            Shape::ConstantWithWarmup => 1.0,
            Shape::Linear => {
                (0.0f64).max((t as i64 - step as i64) as f64 / (t as i64 - w as i64).max(1) as f64)
            }
            Shape::Cosine { num_cycles } => {
                (0.0f64).max(cosine_wave(num_cycles, after_warmup_progress()))
            }
            Shape::CosineWithRestarts { num_cycles } => {
                let progress = after_warmup_progress();
                if progress >= 1.0 {
                    return 0.0;
                }
                (0.0f64).max(0.5 * (1.0 + (PI * ((num_cycles * progress) % 1.0)).cos()))
            }
            Shape::Polynomial { lr_end, power } => {
                let lr_init = self.base_lr;
                if step > t {
                    return lr_end / lr_init;
                }
                let lr_range = lr_init - lr_end;
                let decay_steps = (t - w) as f64;
                let pct_remaining = 1.0 - (step - w) as f64 / decay_steps;
                (lr_range * pct_remaining.powf(power) + lr_end) / lr_init
            }
            Shape::InverseSqrt { timescale } => {
                let shift = timescale - w as f64;
                1.0 / ((step as f64 + shift) / timescale).sqrt()
            }
            Shape::CosineWithMinLr {
                num_cycles,
                min_lr_rate,
            } => {
                let factor = cosine_wave(num_cycles, after_warmup_progress());
                (0.0f64).max(factor * (1.0 - min_lr_rate) + min_lr_rate)
            }
        }
    }

    /// `warmup_stable_decay`'s three phases.
    fn wsd(&self, step: u64) -> f64 {
        let Shape::Wsd {
            num_stable_steps,
            num_decay_steps,
            min_lr_ratio,
            warmup,
            decay,
            num_cycles,
        } = self.shape
        else {
            return 1.0;
        };
        let s = step as i64;
        let w = self.num_warmup_steps as i64;
        let blend = |f: f64| (0.0f64).max(f * (1.0 - min_lr_ratio) + min_lr_ratio);
        if s < w {
            let progress = s as f64 / w.max(1) as f64;
            return blend(match warmup {
                Curve::Linear => progress,
                Curve::Cosine => 0.5 * (1.0 - (PI * progress).cos()),
                Curve::OneMinusSqrt => 1.0 - (1.0 - progress).sqrt(),
            });
        }
        if s < w + num_stable_steps {
            return 1.0;
        }
        if s < w + num_stable_steps + num_decay_steps {
            let progress = (s - w - num_stable_steps) as f64 / num_decay_steps.max(1) as f64;
            return blend(match decay {
                Curve::Linear => 1.0 - progress,
                Curve::Cosine => cosine_wave(num_cycles, progress),
                Curve::OneMinusSqrt => 1.0 - progress.sqrt(),
            });
        }
        min_lr_ratio
    }

    /// The learning rate used at optimizer step `step` (0-based): `base_lr * multiplier(step)`.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.base_lr * self.multiplier(step)
    }

    /// torch's `last_epoch`: the step whose lr is current (0 right after construction).
    pub fn last_epoch(&self) -> u64 {
        self.last_epoch
    }

    /// Restores `last_epoch` from a checkpoint (torch's `load_state_dict`).
    pub fn set_last_epoch(&mut self, last_epoch: u64) {
        self.last_epoch = last_epoch;
    }

    /// The current learning rate (`get_last_lr()[0]`).
    pub fn lr(&self) -> f64 {
        self.lr_at(self.last_epoch)
    }

    /// Advances one optimizer step (`scheduler.step()`) and returns the new current lr.
    pub fn step(&mut self) -> f64 {
        self.last_epoch += 1;
        self.lr()
    }
}
