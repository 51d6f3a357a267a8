//! The autograd RNG stream: a thread-local `(seed, offset)` cursor into the counter-based
//! Philox generator. Random ops (dropout) reserve a range of offsets from it, so a
//! checkpoint's recompute can rewind the cursor and reproduce the exact same masks.

use std::cell::Cell;

/// A position in the random stream: Philox key `seed`, next unused counter `offset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RngState {
    /// The Philox key.
    pub seed: u64,
    /// The next unused element counter.
    pub offset: u64,
}

thread_local! {
    /// This thread's cursor.
    static STATE: Cell<RngState> = const { Cell::new(RngState { seed: 0, offset: 0 }) };
}

/// Restarts this thread's stream at `seed`, offset 0.
pub fn manual_seed(seed: u64) {
    set_rng_state(RngState { seed, offset: 0 });
}

/// This thread's current cursor.
pub fn rng_state() -> RngState {
    STATE.with(|s| s.get())
}

/// Moves this thread's cursor to `state`.
pub fn set_rng_state(state: RngState) {
    STATE.with(|s| s.set(state));
}

/// Reserves `n` numbers: returns the cursor before the reservation and advances it by `n`.
pub fn reserve(n: u64) -> RngState {
    STATE.with(|s| {
        let st = s.get();
        s.set(RngState {
            seed: st.seed,
            offset: st.offset.wrapping_add(n),
        });
        st
    })
}
