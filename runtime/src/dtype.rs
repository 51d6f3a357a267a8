//! Element types: the `DType` tag and the `Element` trait that maps Rust scalars onto it.

use crate::storage::CpuStorage;
use half::{bf16, f16};

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float (gradient checks).
    F64,
    /// bfloat16 (8-bit exponent, 7-bit mantissa).
    BF16,
    /// IEEE half precision.
    F16,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer (token ids, argmax).
    I64,
    /// Unsigned byte (masks, quantized blocks).
    U8,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::BF16 | DType::F16 => 2,
            DType::U8 => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::BF16 | DType::F16)
    }

    /// The lowercase name used in messages and safetensors-like contexts (`f32`, `bf16`, ..).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
        }
    }

    /// Whether elementwise math on this dtype runs in f32 (F32, BF16, F16); the others run in
    /// f64, which is exact for every integer we store (ids, counts, masks).
    pub fn computes_in_f32(self) -> bool {
        matches!(self, DType::F32 | DType::BF16 | DType::F16)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust scalar that can live in a tensor.
pub trait Element: Copy + Send + Sync + std::fmt::Debug + 'static {
    /// The dtype tag of this scalar.
    const DTYPE: DType;
    /// Widens to f64 (exact for every type but i64 beyond 2^53).
    fn to_f64(self) -> f64;
    /// Converts from f64: rounds to nearest for floats, truncates and saturates for integers.
    fn from_f64(v: f64) -> Self;
    /// Widens to f32 (the fast path between the f32-computing types).
    fn to_f32(self) -> f32 {
        self.to_f64() as f32
    }
    /// Converts from f32 (rounds to nearest even for bf16/f16).
    fn from_f32(v: f32) -> Self {
        Self::from_f64(v as f64)
    }
    /// The storage slice, if `s` holds this type.
    #[doc(hidden)]
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    /// The mutable storage slice, if `s` holds this type.
    #[doc(hidden)]
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    /// Wraps a vector as storage.
    #[doc(hidden)]
    fn into_storage(v: Vec<Self>) -> CpuStorage;
}

/// Converts one element between element types, through f32 when both sides are f32-like
/// (single rounding, fast) and through f64 otherwise.
#[inline(always)]
pub fn cast<S: Element, T: Element>(x: S) -> T {
    if S::DTYPE.computes_in_f32() && T::DTYPE.computes_in_f32() {
        T::from_f32(x.to_f32())
    } else {
        T::from_f64(x.to_f64())
    }
}

/// The three storage accessors of an `Element` impl, for the `CpuStorage` variant `$dt`.
macro_rules! storage_access {
    ($dt:ident) => {
        fn slice(s: &CpuStorage) -> Option<&[Self]> {
            match s {
                CpuStorage::$dt(v) => Some(v),
                _ => None,
            }
        }
        fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
            match s {
                CpuStorage::$dt(v) => Some(v),
                _ => None,
            }
        }
        fn into_storage(v: Vec<Self>) -> CpuStorage {
            CpuStorage::$dt(v)
        }
    };
}

macro_rules! impl_element {
    ($t:ty, $dt:ident, |$a:ident| $to:expr, |$b:ident| $from:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$dt;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                let $a = self;
                $to
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                let $b = v;
                $from
            }
            storage_access!($dt);
        }
    };
}

impl_element!(f64, F64, |x| x, |v| v);
impl_element!(i32, I32, |x| x as f64, |v| v as i32);
impl_element!(i64, I64, |x| x as f64, |v| v as i64);
impl_element!(u8, U8, |x| x as f64, |v| v as u8);

// f32, bf16 and f16 override the f32 path so conversions among them round once and stay fast.
impl Element for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    storage_access!(F32);
}

macro_rules! impl_half {
    ($t:ty, $dt:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$dt;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self.to_f32() as f64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                // Through f32: `half`'s direct f64 path truncates the low mantissa bits anyway.
                <$t>::from_f32(v as f32)
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                <$t>::to_f32(self)
            }
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                <$t>::from_f32(v)
            }
            storage_access!($dt);
        }
    };
}

impl_half!(bf16, BF16);
impl_half!(f16, F16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_names_and_float_flags() {
        assert_eq!(DType::BF16.size_in_bytes(), 2);
        assert_eq!(DType::I64.size_in_bytes(), 8);
        assert_eq!(DType::U8.size_in_bytes(), 1);
        assert_eq!(DType::F16.name(), "f16");
        assert!(DType::BF16.is_float() && !DType::I32.is_float());
        assert!(DType::F16.computes_in_f32() && !DType::I64.computes_in_f32());
    }

    #[test]
    fn casts_round_and_saturate() {
        // 1 + 2^-8 is halfway between two bf16 values: ties to even gives 1.0.
        assert_eq!(cast::<f32, bf16>(1.0 + 1.0 / 256.0).to_f32(), 1.0);
        // 1 + 3·2^-8 is halfway too: ties to even gives 1 + 2^-6 (mantissa ...10).
        assert_eq!(
            cast::<f32, bf16>(1.0 + 3.0 / 256.0).to_f32(),
            1.0 + 1.0 / 64.0
        );
        assert_eq!(cast::<f64, i64>(-3.7), -3);
        assert_eq!(cast::<f64, u8>(300.0), 255);
        assert_eq!(cast::<i64, f32>(42), 42.0);
    }
}
