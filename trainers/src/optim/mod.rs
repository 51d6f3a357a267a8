//! Optimizers, gradient clipping and learning-rate schedules for the training loop.

pub mod adamw;
pub mod badam;
pub mod badam_ratio;
pub mod clip;
pub mod galore;
pub mod plateau;
pub mod scheduler;
pub mod state_file;
pub mod torch_init;
pub mod torch_randn;

pub use adamw::{default_groups, loraplus_groups, AdamHyper, AdamW, ParamGroup};
pub use clip::{clip_grad_norm, grad_norm};
pub use scheduler::{get_warmup_steps, Scheduler, SchedulerError, SchedulerType};
