//! Optimizers and learning-rate schedules for the training loop.

pub mod scheduler;

pub use scheduler::{get_warmup_steps, Scheduler, SchedulerError, SchedulerType};
