//! The broadcasting walk behind binary ops: `out[i] = f(a[ia(i)], b[ib(i)])` where `ia`, `ib`
//! follow strided (possibly stride-0, broadcast) layouts of the same shape.
//!
//! Dims are coalesced first (size-1 dims dropped, neighbours merged when every operand
//! steps through them as one), so a same-shape contiguous op is one flat loop and a bias
//! add `[n, d] + [d]` is rows of contiguous-plus-broadcast. The innermost loop is
//! specialised on the operand strides (1 or 0) so it vectorises.

use crate::layout::{Layout, StridedIndex};
use crate::storage::PAR_CHUNK;
use rayon::prelude::*;

/// A strided operand: its data and its layout, already broadcast to the output shape.
pub(crate) struct Operand<'a, T> {
    /// Backing data (a whole storage buffer or a gathered copy).
    pub data: &'a [T],
    /// Layout with the output's shape (stride 0 on broadcast dims).
    pub layout: Layout,
}

/// Coalesced walk: outer shape with per-operand strides, and the inner dim.
struct Plan {
    outer: Vec<usize>,
    outer_strides: [Vec<usize>; 2],
    offsets: [usize; 2],
    inner: usize,
    inner_strides: [usize; 2],
}

fn plan(shape: &[usize], la: &Layout, lb: &Layout) -> Plan {
    // Keep only dims of size > 1, then merge dim d into d+1 when both operands allow it.
    let mut dims: Vec<(usize, [usize; 2])> = Vec::new();
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let s = [la.strides()[d], lb.strides()[d]];
        if let Some(last) = dims.last_mut() {
            if last.1[0] == s[0] * n && last.1[1] == s[1] * n {
                *last = (last.0 * n, s);
                continue;
            }
        }
        dims.push((n, s));
    }
    let (inner, inner_strides) = dims.pop().unwrap_or((1, [0, 0]));
    Plan {
        outer: dims.iter().map(|d| d.0).collect(),
        outer_strides: [
            dims.iter().map(|d| d.1[0]).collect(),
            dims.iter().map(|d| d.1[1]).collect(),
        ],
        offsets: [la.offset(), lb.offset()],
        inner,
        inner_strides,
    }
}

/// One run of the innermost dim.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn run<A: Copy, B: Copy, O>(
    out: &mut [O],
    a: &[A],
    oa: usize,
    sa: usize,
    b: &[B],
    ob: usize,
    sb: usize,
    f: &impl Fn(A, B) -> O,
) {
    let n = out.len();
    match (sa, sb) {
        (1, 1) => {
            for ((o, &x), &y) in out.iter_mut().zip(&a[oa..oa + n]).zip(&b[ob..ob + n]) {
                *o = f(x, y);
            }
        }
        (1, 0) => {
            let y = b[ob];
            for (o, &x) in out.iter_mut().zip(&a[oa..oa + n]) {
                *o = f(x, y);
            }
        }
        (0, 1) => {
            let x = a[oa];
            for (o, &y) in out.iter_mut().zip(&b[ob..ob + n]) {
                *o = f(x, y);
            }
        }
        _ => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = f(a[oa + j * sa], b[ob + j * sb]);
            }
        }
    }
}

/// `out[i] = f(a[i], b[i])` over the broadcast shape `shape` (row-major output).
pub(crate) fn zip_map<A, B, O>(
    shape: &[usize],
    a: &Operand<'_, A>,
    b: &Operand<'_, B>,
    f: impl Fn(A, B) -> O + Sync,
) -> Vec<O>
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Copy + Send + Default,
{
    let n: usize = shape.iter().product();
    let mut out = vec![O::default(); n];
    if n == 0 {
        return out;
    }
    let p = plan(shape, &a.layout, &b.layout);
    let (inner, [sa, sb]) = (p.inner, p.inner_strides);
    let index =
        |k: usize, row: usize| StridedIndex::new(&p.outer, &p.outer_strides[k], p.offsets[k], row);
    // Rows [row0, ..) of the coalesced output into `chunk` (a whole number of rows).
    let rows = |row0: usize, chunk: &mut [O]| {
        let (mut ia, mut ib) = (index(0, row0), index(1, row0));
        for row in chunk.chunks_mut(inner) {
            let (oa, ob) = (ia.next().unwrap_or(0), ib.next().unwrap_or(0));
            run(row, a.data, oa, sa, b.data, ob, sb, &f);
        }
    };
    if n < 2 * PAR_CHUNK {
        rows(0, &mut out);
    } else if inner < PAR_CHUNK {
        let per = PAR_CHUNK.div_ceil(inner);
        out.par_chunks_mut(per * inner)
            .enumerate()
            .for_each(|(c, chunk)| rows(c * per, chunk));
    } else {
        // Few long rows: split each row into column chunks.
        out.par_chunks_mut(inner).enumerate().for_each(|(r, row)| {
            let (oa, ob) = (
                index(0, r).next().unwrap_or(0),
                index(1, r).next().unwrap_or(0),
            );
            row.par_chunks_mut(PAR_CHUNK)
                .enumerate()
                .for_each(|(c, part)| {
                    let j = c * PAR_CHUNK;
                    run(part, a.data, oa + j * sa, sa, b.data, ob + j * sb, sb, &f);
                });
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(shape: &[usize], a: &Operand<'_, f64>, b: &Operand<'_, f64>) -> Vec<f64> {
        let ia = a.layout.offsets();
        let ib = b.layout.offsets();
        let _ = shape;
        ia.zip(ib)
            .map(|(i, j)| a.data[i] * 10.0 + b.data[j])
            .collect()
    }

    #[test]
    fn walks_match_the_odometer_on_many_layouts() {
        let data: Vec<f64> = (0..300_000).map(|x| x as f64).collect();
        let cases: Vec<(Vec<usize>, Layout, Layout)> = vec![
            (
                vec![3, 4],
                Layout::contiguous(&[3, 4]),
                Layout::contiguous(&[4]).broadcast_as(&[3, 4]).unwrap(),
            ),
            (
                vec![3, 4],
                Layout::contiguous(&[3, 1]).broadcast_as(&[3, 4]).unwrap(),
                Layout::contiguous(&[3, 4]),
            ),
            (
                vec![4, 3],
                Layout::contiguous(&[3, 4]).transpose(0, 1).unwrap(),
                Layout::contiguous(&[4, 3]),
            ),
            (vec![], Layout::contiguous(&[]), Layout::contiguous(&[])),
            (
                vec![2, 1, 5],
                Layout::contiguous(&[2, 1, 5]),
                Layout::contiguous(&[1, 1, 1])
                    .broadcast_as(&[2, 1, 5])
                    .unwrap(),
            ),
            // large: parallel row chunks, and long rows split into column chunks
            (
                vec![300, 1000],
                Layout::contiguous(&[300, 1000]),
                Layout::contiguous(&[300, 1])
                    .broadcast_as(&[300, 1000])
                    .unwrap(),
            ),
            (
                vec![2, 100_000],
                Layout::contiguous(&[2, 100_000]),
                Layout::contiguous(&[100_000])
                    .broadcast_as(&[2, 100_000])
                    .unwrap(),
            ),
            (
                vec![250, 300],
                Layout::contiguous(&[300, 250]).transpose(0, 1).unwrap(),
                Layout::contiguous(&[250, 300]),
            ),
        ];
        for (shape, la, lb) in cases {
            let a = Operand {
                data: &data,
                layout: la,
            };
            let b = Operand {
                data: &data,
                layout: lb,
            };
            let got = zip_map(&shape, &a, &b, |x, y| x * 10.0 + y);
            assert_eq!(got, reference(&shape, &a, &b), "shape {shape:?}");
        }
    }
}
