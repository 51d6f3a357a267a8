//! NEFTune (Jain et al. 2023, "NEFTune: Noisy Embeddings Improve Instruction Finetuning"), as
//! transformers' `neftune_post_forward_hook`: in training forwards, the token embeddings
//! `[batch, len, hidden]` get uniform noise in `±α / √(len · hidden)`, `len` being the padded
//! length of the batch the reference's collator builds. lmf's batches are unpadded, so the
//! caller says which `len` that is ([`with_neftune`]); the noise comes from lmf's Philox stream.

use std::cell::Cell;

use lmf_autograd::rng::reserve;
use lmf_autograd::{Result, Tensor, Var};

thread_local! {
    /// `(α, padded length)` of the forwards run on this thread, when NEFTune is on.
    static NEFTUNE: Cell<Option<(f64, usize)>> = const { Cell::new(None) };
}

/// Runs `f` with NEFTune on (`alpha`, the batch's padded length `padded_len`) for this thread's
/// training forwards ([`super::linear::is_training`]). Restores the previous state, also when
/// `f` panics.
pub fn with_neftune<T>(alpha: f64, padded_len: usize, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<(f64, usize)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            NEFTUNE.with(|n| n.set(self.0));
        }
    }
    let _restore = Restore(NEFTUNE.with(|n| n.replace(Some((alpha, padded_len)))));
    f()
}

/// The noise bound `α / √(len · hidden)` (f32, as torch computes it from an int tensor).
pub fn noise_bound(alpha: f64, padded_len: usize, hidden: usize) -> f32 {
    alpha as f32 / ((padded_len * hidden) as f32).sqrt()
}

/// `h: [tokens, hidden]` plus NEFTune's noise when it is on and this is a training forward.
pub(crate) fn add_noise(h: Var) -> Result<Var> {
    let Some((alpha, len)) = NEFTUNE.with(|n| n.get()) else {
        return Ok(h);
    };
    if !super::linear::is_training() {
        return Ok(h);
    }
    let shape = h.shape().to_vec();
    let hidden = *shape.last().unwrap_or(&1);
    let mag = noise_bound(alpha, len.max(1), hidden);
    let mut noise = vec![0f32; h.elem_count()];
    let st = reserve(noise.len() as u64);
    lmf_kernels::cpu::philox::fill_uniform(st.seed, st.offset, &mut noise);
    noise.iter_mut().for_each(|u| *u = -mag + 2.0 * mag * *u);
    let noise = Tensor::from_vec(noise, &shape, h.tensor().device())?.to_dtype(h.dtype())?;
    h.add(&Var::constant(noise))
}
