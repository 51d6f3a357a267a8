//! AVX-512 building blocks of the CPU kernels, chosen at run time, each with the portable
//! loop it replaces beside it.
//!
//! Every entry point here is generic over [`Real`] and dispatches on two things: `T` is f32
//! and the CPU has AVX-512 F (and the `LMF_NO_AVX512` environment variable is unset, so the
//! fallback can be exercised on any machine). Otherwise the portable loop runs, which is
//! what f64 (gradient checks) always takes.
//!
//! - [`exp`]: `exp` of 16 floats at once (≤ 1 ulp on normal results, see its doc) and the
//!   row operations of the softmaxes built on it;
//! - [`tile_gemm`]: a register-blocked product for the small tiles of attention, without the
//!   packing a general GEMM pays on every call.

pub mod exp;
pub mod tile_gemm;

pub use exp::{exp_shift_sum, exp_shift_sum_f64, max_of, scaled_exp_row, softmax_grad_row};
pub use tile_gemm::tile_gemm;

use std::sync::OnceLock;

/// Whether the AVX-512 paths run: the CPU has AVX-512 F and `LMF_NO_AVX512` is unset or empty.
/// Read once per process.
pub fn avx512() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let off = std::env::var_os("LMF_NO_AVX512").is_some_and(|v| !v.is_empty());
        #[cfg(target_arch = "x86_64")]
        {
            !off && std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = off;
            false
        }
    })
}

/// `x` as f32 when `T` is f32 and the AVX-512 paths run.
#[inline]
pub(crate) fn fast_f32<T: 'static>(x: &[T]) -> Option<&[f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && avx512() {
        // SAFETY: T is f32 (checked just above): the same slice, retyped.
        Some(unsafe { std::slice::from_raw_parts(x.as_ptr() as *const f32, x.len()) })
    } else {
        None
    }
}

/// `x` as mutable f32 when `T` is f32 and the AVX-512 paths run.
#[inline]
pub(crate) fn fast_f32_mut<T: 'static>(x: &mut [T]) -> Option<&mut [f32]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && avx512() {
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
