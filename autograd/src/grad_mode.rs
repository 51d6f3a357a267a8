//! Grad mode: a thread-local switch; while it is off (`no_grad`) ops record nothing.

use std::cell::Cell;

thread_local! {
    /// Whether ops on this thread record nodes.
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread currently record onto the tape.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Sets this thread's grad mode and returns the previous one (for callers that cannot pass a
/// closure, such as the C ABI's no-grad scopes; Rust code uses [`no_grad`]).
pub fn set_grad_enabled(enabled: bool) -> bool {
    GRAD_ENABLED.with(|g| g.replace(enabled))
}

/// Restores the previous mode on drop, so a panic or `?` inside `f` cannot leak the mode.
struct ModeGuard(bool);

impl Drop for ModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.0));
    }
}

/// Runs `f` with grad mode set to `enabled`, restoring the previous mode afterwards.
pub fn with_grad_mode<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    let _guard = ModeGuard(GRAD_ENABLED.with(|g| g.replace(enabled)));
    f()
}

/// Runs `f` without recording: every var made inside is a constant without history.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    with_grad_mode(false, f)
}

/// Runs `f` with recording on (e.g. a checkpoint's recompute inside an outer `no_grad`).
pub fn enable_grad<R>(f: impl FnOnce() -> R) -> R {
    with_grad_mode(true, f)
}
