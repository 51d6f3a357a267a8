//! Dispatch macros: run generic code for the Rust type behind a runtime `DType`.

/// Runs `$body` with the type alias `$T` set to the element type of `$dtype`.
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            $crate::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
        }
    };
}

/// Runs `$body` with `$C` set to the compute type of `$dtype`: f32 for F32/BF16/F16, f64 for
/// F64 and the integer types.
macro_rules! with_compute {
    ($dtype:expr, $C:ident => $body:expr) => {
        if $dtype.computes_in_f32() {
            type $C = f32;
            $body
        } else {
            type $C = f64;
            $body
        }
    };
}
