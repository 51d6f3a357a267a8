//! Strided matrix multiply on CPU through the `gemm` crate (multi-threaded with rayon).
//!
//! Every matmul in the CPU kernels and the runtime goes through [`gemm`]: transposes are
//! expressed as strides (no copies), and accumulation into the destination is free.
//!
//! Inside [`rows_independent`], products are computed so that each output row depends only
//! on its own input row: serving runs many sequences through one forward and must give each
//! the bits it would get alone (the `gemm` crate's blocking depends on the number of rows).
//!
//! Inside [`bf16_products`], f32 products take bf16 operands (each rounded to nearest even)
//! with f32 accumulation through [`super::gemm_bf16`]: the matmul half of torch's CPU
//! autocast, which `bf16: true` asks for.

use crate::Real;
use std::cell::Cell;

thread_local! {
    /// Whether products on this thread must be row-independent (see [`rows_independent`]).
    static ROWS_INDEPENDENT: Cell<bool> = const { Cell::new(false) };
    /// Whether f32 products on this thread round their operands to bf16 (see [`bf16_products`]).
    static BF16_PRODUCTS: Cell<bool> = const { Cell::new(false) };
}

/// Sets `flag` on this thread for the duration of `f`, restoring it also when `f` panics.
fn with_flag<R>(flag: &'static std::thread::LocalKey<Cell<bool>>, f: impl FnOnce() -> R) -> R {
    struct Restore(&'static std::thread::LocalKey<Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            self.0.with(|r| r.set(self.1));
        }
    }
    let _restore = Restore(flag, flag.with(|r| r.replace(true)));
    f()
}

/// Runs `f` with every product started on this thread computed row by row in one fixed
/// order: row `i` of `a · b` is then bitwise the same whatever other rows `a` holds (the
/// product of a 1-row `a` takes the same path). Products of an activation `[m, k]` by a
/// transposed weight `[n, k]ᵀ` go through the skinny kernel 8 rows at a time; any other
/// shape one row at a time. Restores the previous state, also when `f` panics.
///
/// Scope it to single products: work that `f` hands to other threads does not see it.
pub fn rows_independent<R>(f: impl FnOnce() -> R) -> R {
    with_flag(&ROWS_INDEPENDENT, f)
}

/// Whether [`rows_independent`] is in force on this thread.
pub fn rows_independent_on() -> bool {
    ROWS_INDEPENDENT.with(|r| r.get())
}

/// Fewest rows and columns of a product that [`bf16_products`] rounds to bf16.
pub const BF16_MIN_DIM: usize = 16;

/// Runs `f` with every f32 [`gemm`] started on this thread computed as
/// `bf16(a) · bf16(b)` with f32 accumulation ([`super::gemm_bf16::gemm_rounded`]): torch's
/// CPU autocast for matmuls. f64 products, products with fewer than [`BF16_MIN_DIM`] rows or
/// columns (a rank-8 LoRA product: rounding its `[tokens, hidden]` operand would cost more
/// than the product), and products inside [`rows_independent`] stay exact. Restores the
/// previous state, also when `f` panics.
///
/// Like [`rows_independent`] it is per thread: kernels call `gemm` from the thread that
/// runs the op, so it covers them; work `f` hands to rayon does not see it.
pub fn bf16_products<R>(f: impl FnOnce() -> R) -> R {
    with_flag(&BF16_PRODUCTS, f)
}

/// Whether [`bf16_products`] is in force on this thread.
pub fn bf16_products_on() -> bool {
    BF16_PRODUCTS.with(|r| r.get())
}

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// Backing slice; must cover every addressed element.
    pub data: &'a [T],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A contiguous row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose, as a view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// A mutable strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    /// Backing slice; must cover every addressed element.
    pub data: &'a mut [T],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a, T> MatMut<'a, T> {
    /// A contiguous row-major `[rows, cols]` matrix.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose, as a view (no copy).
    pub fn t(self) -> Self {
        MatMut {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// Panics unless `dst = a · b` has matching shapes and every view stays inside its slice
/// (`what` names the caller in the message). The element types may differ (bf16 inputs, an
/// f32 output).
pub(crate) fn check_product<T, U, V>(
    dst: &MatMut<'_, T>,
    a: &MatRef<'_, U>,
    b: &MatRef<'_, V>,
    what: &str,
) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    assert!(
        a.rows == m && b.rows == k && b.cols == n,
        "{what} shape mismatch"
    );
    assert!(
        span(m, n, dst.rs, dst.cs) <= dst.data.len(),
        "{what} dst out of bounds"
    );
    assert!(
        span(m, k, a.rs, a.cs) <= a.data.len(),
        "{what} lhs out of bounds"
    );
    assert!(
        span(k, n, b.rs, b.cs) <= b.data.len(),
        "{what} rhs out of bounds"
    );
}

/// `dst = (accumulate ? dst : 0) + scale · a · b`, with `a: [m, k]`, `b: [k, n]`, `dst: [m, n]`.
///
/// Panics if the shapes disagree or a view addresses past its slice (a caller bug, never
/// user input: the runtime checks shapes before calling).
pub fn gemm<T: Real>(
    dst: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    scale: T,
) {
    gemm_impl(dst, a, b, accumulate, scale, true)
}

/// [`gemm`] on the calling thread only: for tile products inside kernels that are already
/// parallel over rows or heads, where forking again would only add overhead.
pub fn gemm_serial<T: Real>(
    dst: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    scale: T,
) {
    gemm_impl(dst, a, b, accumulate, scale, false)
}

fn gemm_impl<T: Real>(
    dst: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    scale: T,
    parallel: bool,
) {
    let is_f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    // A product with fewer than `BF16_MIN_DIM` rows or columns (LoRA's rank-r products,
    // decode rows) stays exact: rounding its large operand would cost more than the product.
    let wide = dst.rows.min(dst.cols) >= BF16_MIN_DIM;
    if is_f32 && wide && a.cols > 0 && bf16_products_on() && !ROWS_INDEPENDENT.with(|r| r.get()) {
        if let Some((dst, a, b)) = as_f32(dst, a, b) {
            return super::gemm_bf16::gemm_rounded(dst, a, b, accumulate, scale.f64() as f32);
        }
        unreachable!("T is f32");
    }
    gemm_exact(dst, a, b, accumulate, scale, parallel)
}

/// The views retyped to f32 when `T` is f32.
#[allow(clippy::type_complexity)]
fn as_f32<'a, 'b, 'c, T: 'static>(
    dst: MatMut<'a, T>,
    a: MatRef<'b, T>,
    b: MatRef<'c, T>,
) -> Option<(MatMut<'a, f32>, MatRef<'b, f32>, MatRef<'c, f32>)> {
    if std::any::TypeId::of::<T>() != std::any::TypeId::of::<f32>() {
        return None;
    }
    // SAFETY: T is f32 (checked just above): the same slices, retyped.
    unsafe {
        Some((
            MatMut {
                data: std::slice::from_raw_parts_mut(
                    dst.data.as_mut_ptr() as *mut f32,
                    dst.data.len(),
                ),
                rows: dst.rows,
                cols: dst.cols,
                rs: dst.rs,
                cs: dst.cs,
            },
            MatRef {
                data: std::slice::from_raw_parts(a.data.as_ptr() as *const f32, a.data.len()),
                rows: a.rows,
                cols: a.cols,
                rs: a.rs,
                cs: a.cs,
            },
            MatRef {
                data: std::slice::from_raw_parts(b.data.as_ptr() as *const f32, b.data.len()),
                rows: b.rows,
                cols: b.cols,
                rs: b.rs,
                cs: b.cs,
            },
        ))
    }
}

/// [`gemm`] with the operands as given, whatever [`bf16_products`] says.
pub(crate) fn gemm_exact<T: Real>(
    dst: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    scale: T,
    parallel: bool,
) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    check_product(&dst, &a, &b, "gemm");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.rs + j * dst.cs] = T::zero();
                }
            }
        }
        return;
    }
    if super::gemm_skinny::applies(&dst, &a, &b) {
        return super::gemm_skinny::skinny(dst, a, b, accumulate, scale, parallel);
    }
    if m > 1 && ROWS_INDEPENDENT.with(|r| r.get()) {
        if super::gemm_skinny::applies_to_rows(&a, &b, n) {
            return super::gemm_skinny::skinny(dst, a, b, accumulate, scale, parallel);
        }
        // one row at a time: each row takes the path a 1-row product takes
        for i in 0..m {
            let (d0, a0) = (i * dst.rs, i * a.rs);
            let row_dst = MatMut {
                data: &mut dst.data[d0..],
                rows: 1,
                cols: n,
                rs: dst.rs,
                cs: dst.cs,
            };
            let row_a = MatRef {
                data: &a.data[a0..],
                rows: 1,
                cols: k,
                rs: a.rs,
                cs: a.cs,
            };
            gemm_exact(row_dst, row_a, b, accumulate, scale, parallel);
        }
        return;
    }
    // Small products are faster single-threaded than through rayon's fork/join.
    let par = if parallel && m * n * k >= 64 * 64 * 64 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above prove every addressed element lies inside its slice, `dst`
    // is uniquely borrowed, and `T` is f32 or f64 (the only `Real` impls), both of which the
    // gemm crate supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            scale,
            false,
            false,
            false,
            par,
        )
    }
}

/// `[m, k] · [k, n]` for contiguous row-major inputs, into a new buffer (convenience).
pub fn matmul<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut out = vec![T::zero(); m * n];
    gemm(
        MatMut::new(&mut out, m, n),
        MatRef::new(a, m, k),
        MatRef::new(b, k, n),
        false,
        T::one(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{rand_vec, Lcg};

    fn naive(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Vec<f64> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for p in 0..a.cols {
                    out[i * b.cols + j] +=
                        a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_with_transposes_and_accumulate() {
        let mut rng = Lcg::new(7);
        // m <= 8 with a transposed weight takes the skinny path (serial and parallel)
        let shapes = [
            (1, 1, 1),
            (37, 48, 5),
            (3, 130, 67),
            (70, 70, 70),
            (1, 517, 300),
            (8, 64, 2001),
            (5, 33, 9),
        ];
        for &(m, k, n) in &shapes {
            let a = rand_vec(&mut rng, m * k, 1.0);
            let bt = rand_vec(&mut rng, n * k, 1.0); // stored as [n, k], used transposed
            let b = MatRef::new(&bt, n, k).t();
            let want = naive(MatRef::new(&a, m, k), b);
            let mut got = vec![1.0; m * n];
            gemm(
                MatMut::new(&mut got, m, n),
                MatRef::new(&a, m, k),
                b,
                true,
                2.0,
            );
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - (1.0 + 2.0 * w)).abs() < 1e-9,
                    "{g} vs {}",
                    1.0 + 2.0 * w
                );
            }
        }
    }

    #[test]
    fn f32_skinny_path_matches_naive() {
        // f32 with m <= 8 and a transposed weight: the AVX2 kernel on x86 (all m = 1..8, k
        // with and without an 8-remainder), in parallel for the larger weight
        let mut rng = Lcg::new(11);
        for m in 1..=8 {
            for &(k, n) in &[(45, 19), (512, 300)] {
                let a = rand_vec::<f64>(&mut rng, m * k, 1.0);
                let bt = rand_vec::<f64>(&mut rng, n * k, 1.0);
                let want = naive(MatRef::new(&a, m, k), MatRef::new(&bt, n, k).t());
                let (a32, bt32): (Vec<f32>, Vec<f32>) = (
                    a.iter().map(|&x| x as f32).collect(),
                    bt.iter().map(|&x| x as f32).collect(),
                );
                let mut got = vec![0f32; m * n];
                gemm(
                    MatMut::new(&mut got, m, n),
                    MatRef::new(&a32, m, k),
                    MatRef::new(&bt32, n, k).t(),
                    false,
                    1.0,
                );
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (*g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "m {m} k {k}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn rows_independent_rows_equal_their_one_row_products_bitwise() {
        // skinny-able shapes (k >= 32, n >= 8, transposed weight) and others (short k, a
        // plain right operand), serial and parallel sizes; every row of an m-row product
        // must be bitwise the product of that row alone, which is also what it is outside
        // the mode
        let mut rng = Lcg::new(5);
        for &(k, n, transposed) in &[
            (64, 32, true),
            (300, 400, true),
            (16, 5, true),
            (40, 24, false),
        ] {
            let w = rand_vec::<f32>(&mut rng, n * k, 1.0);
            let b = if transposed {
                MatRef::new(&w, n, k).t()
            } else {
                MatRef::new(&w, k, n)
            };
            for m in [1, 3, 8, 9, 17, 40] {
                let a = rand_vec::<f32>(&mut rng, m * k, 1.0);
                let mut got = vec![0f32; m * n];
                rows_independent(|| {
                    gemm(
                        MatMut::new(&mut got, m, n),
                        MatRef::new(&a, m, k),
                        b,
                        false,
                        1.0,
                    )
                });
                for i in 0..m {
                    let mut one = vec![0f32; n];
                    gemm(
                        MatMut::new(&mut one, 1, n),
                        MatRef::new(&a[i * k..(i + 1) * k], 1, k),
                        b,
                        false,
                        1.0,
                    );
                    let row = &got[i * n..(i + 1) * n];
                    assert!(
                        row.iter()
                            .zip(&one)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "k {k} n {n} transposed {transposed} m {m} row {i}"
                    );
                }
            }
        }
        assert!(!ROWS_INDEPENDENT.with(|r| r.get()), "the mode is restored");
    }
}
