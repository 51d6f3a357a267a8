//! AVX-512 and AVX2 building blocks of the CPU kernels, chosen at run time, each with the portable
//! loop it replaces beside it.
//!
//! Every entry point here is generic over [`Real`] and dispatches on two things: `T` is f32
//! and the CPU has AVX-512 F, else AVX2 + FMA ([`level`]; the `LMF_SIMD` environment variable
//! caps it, so every path can be exercised on one machine). Otherwise the portable loop
//! runs, which is what f64 (gradient checks) always takes.
//!
//! - [`exp`]: `exp` of 16 floats at once (≤ 1 ulp on normal results, see its doc) and the
//!   row operations of the softmaxes built on it;
//! - [`log`]: natural `log` (≤ 1 ulp, subnormal inputs included);
//! - [`tanh`]: `tanh` (≤ 1 ulp) and the logit softcap `cap · tanh(x / cap)` built on it;
//! - [`sigmoid`]: the logistic function `1 / (1 + e⁻ˣ)` (≤ 1 ulp on normal results),
//!   saturating to exactly 0 and 1;
//! - [`tile_gemm`]: a register-blocked product for the small tiles of attention, without the
//!   packing a general GEMM pays on every call.

/// Calls `$f` of the module of the running vector level (only reached once `fast_f32*`
/// answered, so the level is AVX-512 or AVX2 and the CPU has its features).
#[cfg(target_arch = "x86_64")]
macro_rules! by_level {
    ($f:ident($($a:expr),*)) => {
        match super::level() {
            super::Level::Avx512 => avx512::$f($($a),*),
            _ => avx2::$f($($a),*),
        }
    };
}

#[cfg(all(test, target_arch = "x86_64"))]
mod accuracy;
pub mod exp;
pub mod log;
pub mod sigmoid;
pub mod tanh;
pub mod tile_gemm;

pub use exp::{
    exp_in_place, exp_shift_sum, exp_shift_sum_f64, max_of, scaled_exp_row, softmax_grad_row,
};
pub use log::ln_in_place;
pub use sigmoid::sigmoid_in_place;
pub use tanh::{softcap_in_place, tanh_in_place};
pub use tile_gemm::tile_gemm;

use std::sync::OnceLock;

/// The vector instruction set the f32 paths use on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// AVX-512 F: 16 lanes, masked loads and stores.
    Avx512,
    /// AVX2 + FMA: 8 lanes.
    Avx2,
    /// Neither (or another architecture): the portable loops.
    Portable,
}

/// The level the f32 paths run at: the best the CPU has, capped by the `LMF_SIMD`
/// environment variable (`avx512`, `avx2` or `portable`; read once per process). An unknown
/// value is treated as `portable`.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("LMF_SIMD").ok().as_deref().map(str::trim) {
            None | Some("") | Some("avx512") => Level::Avx512,
            Some("avx2") => Level::Avx2,
            Some(_) => Level::Portable,
        };
        #[cfg(target_arch = "x86_64")]
        {
            let has512 = std::arch::is_x86_feature_detected!("avx512f");
            let has2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            match cap {
                Level::Avx512 if has512 => Level::Avx512,
                Level::Avx512 | Level::Avx2 if has2 => Level::Avx2,
                _ => Level::Portable,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = cap;
            Level::Portable
        }
    })
}

/// Whether the AVX-512 paths run ([`level`] is [`Level::Avx512`]).
pub fn avx512() -> bool {
    level() == Level::Avx512
}

/// `x` as f32 when `T` is f32 and a vector [`level`] runs.
#[inline]
pub(crate) fn fast_f32<T: 'static>(x: &[T]) -> Option<&[f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && level() != Level::Portable {
        // SAFETY: T is f32 (checked just above): the same slice, retyped.
        Some(unsafe { std::slice::from_raw_parts(x.as_ptr() as *const f32, x.len()) })
    } else {
        None
    }
}

/// `x` as mutable f32 when `T` is f32 and a vector [`level`] runs.
#[inline]
pub(crate) fn fast_f32_mut<T: 'static>(x: &mut [T]) -> Option<&mut [f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && level() != Level::Portable {
        // SAFETY: T is f32 (checked just above): the same slice, retyped.
        Some(unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut f32, x.len()) })
    } else {
        None
    }
}

/// A scalar of type `T` as f32 (only called once `T` is known to be f32).
#[inline]
pub(crate) fn to_f32<T: crate::Real>(x: T) -> f32 {
    x.f64() as f32
}
