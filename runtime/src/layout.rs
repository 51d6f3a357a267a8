//! Layout: shape + strides + offset (in elements) of a tensor view, the view arithmetic
//! (transpose, narrow, broadcast, ..) and strided offset iteration in row-major order.
//!
//! Strides are unsigned: views never flip, and a broadcast dim has stride 0.

use crate::error::{Error, Result};

/// Shape, strides and starting offset of a view into a storage buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

/// Row-major (C order) strides of `shape`.
pub fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for d in (0..shape.len()).rev() {
        strides[d] = acc;
        acc *= shape[d];
    }
    strides
}

/// The numpy broadcast of two shapes (aligned on the right; a dim of 1 stretches).
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("cannot broadcast {a:?} with {b:?}"),
                ));
            }
        };
    }
    Ok(out)
}

/// Checks `dim < rank`, naming the op and shape otherwise.
pub fn check_dim(op: &'static str, dim: usize, shape: &[usize]) -> Result<()> {
    if dim < shape.len() {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("dim {dim} out of range for shape {shape:?}"),
        ))
    }
}

impl Layout {
    /// A contiguous row-major layout starting at offset 0.
    pub fn contiguous(shape: &[usize]) -> Layout {
        Layout {
            shape: shape.to_vec(),
            strides: row_major_strides(shape),
            offset: 0,
        }
    }

    /// A layout from explicit parts (caller guarantees it stays inside its storage).
    pub fn new(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Layout {
        debug_assert_eq!(shape.len(), strides.len());
        Layout {
            shape,
            strides,
            offset,
        }
    }

    /// The dims.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements to skip per step along each dim.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Storage index of element [0, 0, ..].
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the elements are row-major and gap-free (dims of size 1 may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for d in (0..self.rank()).rev() {
            if self.shape[d] != 1 && self.strides[d] != acc {
                return false;
            }
            acc *= self.shape[d];
        }
        true
    }

    /// `Some(start..end)` storage range when contiguous.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        self.is_contiguous()
            .then(|| self.offset..self.offset + self.elem_count())
    }

    /// One past the largest storage index this view touches (0 when empty).
    pub fn storage_span(&self) -> usize {
        if self.elem_count() == 0 {
            return 0;
        }
        self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(&n, &s)| (n - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// Same elements with a new shape; only valid when contiguous.
    pub fn reshape(&self, op: &'static str, shape: &[usize]) -> Result<Layout> {
        let n: usize = shape.iter().product();
        if n != self.elem_count() {
            return Err(Error::shape(
                op,
                format!(
                    "cannot reshape {:?} ({} elements) to {shape:?} ({n} elements)",
                    self.shape,
                    self.elem_count()
                ),
            ));
        }
        debug_assert!(self.is_contiguous());
        Ok(Layout {
            shape: shape.to_vec(),
            strides: row_major_strides(shape),
            offset: self.offset,
        })
    }

    /// Swaps dims `d0` and `d1`.
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Layout> {
        check_dim("transpose", d0, &self.shape)?;
        check_dim("transpose", d1, &self.shape)?;
        let mut l = self.clone();
        l.shape.swap(d0, d1);
        l.strides.swap(d0, d1);
        Ok(l)
    }

    /// Reorders dims: new dim `i` is old dim `dims[i]`.
    pub fn permute(&self, dims: &[usize]) -> Result<Layout> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        let ok = dims.len() == rank
            && dims
                .iter()
                .all(|&d| d < rank && !std::mem::replace(&mut seen[d], true));
        if !ok {
            return Err(Error::shape(
                "permute",
                format!(
                    "{dims:?} is not a permutation of the dims of {:?}",
                    self.shape
                ),
            ));
        }
        Ok(Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        })
    }

    /// Elements `start..start + len` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        check_dim("narrow", dim, &self.shape)?;
        if start + len > self.shape[dim] {
            return Err(Error::shape(
                "narrow",
                format!(
                    "range {start}..{} out of bounds for dim {dim} of {:?}",
                    start + len,
                    self.shape
                ),
            ));
        }
        let mut l = self.clone();
        l.shape[dim] = len;
        if len > 0 {
            l.offset += start * self.strides[dim];
        }
        Ok(l)
    }

    /// A view stretched to `shape` by numpy rules (stride 0 on stretched dims).
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Layout> {
        let err = || {
            Error::shape(
                "broadcast_as",
                format!("cannot broadcast {:?} to {shape:?}", self.shape),
            )
        };
        if shape.len() < self.rank() {
            return Err(err());
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for d in 0..self.rank() {
            let (have, want) = (self.shape[d], shape[lead + d]);
            strides[lead + d] = if have == want {
                self.strides[d]
            } else if have == 1 {
                0
            } else {
                return Err(err());
            };
        }
        Ok(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// Inserts a dim of size 1 at `dim` (`dim == rank` appends).
    pub fn unsqueeze(&self, dim: usize) -> Result<Layout> {
        if dim > self.rank() {
            return Err(Error::shape(
                "unsqueeze",
                format!("dim {dim} out of range for shape {:?}", self.shape),
            ));
        }
        let mut l = self.clone();
        // Any stride works for a size-1 dim; this one keeps contiguous views contiguous.
        let stride = if dim < self.rank() {
            self.strides[dim] * self.shape[dim]
        } else {
            1
        };
        l.shape.insert(dim, 1);
        l.strides.insert(dim, stride);
        Ok(l)
    }

    /// Removes `dim` if its size is 1 (like torch, a no-op otherwise).
    pub fn squeeze(&self, dim: usize) -> Result<Layout> {
        check_dim("squeeze", dim, &self.shape)?;
        let mut l = self.clone();
        if self.shape[dim] == 1 {
            l.shape.remove(dim);
            l.strides.remove(dim);
        }
        Ok(l)
    }

    /// Storage offsets of the elements in row-major order, starting at linear element `start`.
    pub fn offsets_from(&self, start: usize) -> StridedIndex<'_> {
        StridedIndex::new(&self.shape, &self.strides, self.offset, start)
    }

    /// Storage offsets of all elements in row-major order.
    pub fn offsets(&self) -> StridedIndex<'_> {
        self.offsets_from(0)
    }
}

/// Row-major walk over the storage offsets of a strided view (an odometer over the dims).
pub struct StridedIndex<'a> {
    shape: &'a [usize],
    strides: &'a [usize],
    index: Vec<usize>,
    next: usize,
    remaining: usize,
}

impl<'a> StridedIndex<'a> {
    /// Starts the walk of (shape, strides, offset) at linear element `start`.
    pub fn new(shape: &'a [usize], strides: &'a [usize], offset: usize, start: usize) -> Self {
        let total: usize = shape.iter().product();
        let start = start.min(total);
        let mut index = vec![0; shape.len()];
        let mut next = offset;
        let mut rest = start;
        for d in (0..shape.len()).rev() {
            if shape[d] > 0 {
                index[d] = rest % shape[d];
                rest /= shape[d];
                next += index[d] * strides[d];
            }
        }
        StridedIndex {
            shape,
            strides,
            index,
            next,
            remaining: total - start,
        }
    }
}

impl Iterator for StridedIndex<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        let out = self.next;
        self.remaining -= 1;
        for d in (0..self.shape.len()).rev() {
            self.index[d] += 1;
            if self.index[d] < self.shape[d] {
                self.next += self.strides[d];
                break;
            }
            self.next -= (self.shape[d] - 1) * self.strides[d];
            self.index[d] = 0;
        }
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedIndex<'_> {}

/// Copies the elements of a strided view of `data` into a new row-major vector, converting
/// each with `f`. Runs of the innermost dim with stride 1 are walked as slices.
pub fn gather_map<S: Copy, T>(data: &[S], layout: &Layout, f: impl Fn(S) -> T) -> Vec<T> {
    if let Some(r) = layout.contiguous_range() {
        return data[r].iter().map(|&x| f(x)).collect();
    }
    let n = layout.elem_count();
    let mut out = Vec::with_capacity(n);
    let rank = layout.rank();
    if n == 0 {
        return out;
    }
    let (inner, inner_stride) = (layout.shape[rank - 1], layout.strides[rank - 1]);
    // Walk the outer dims with the odometer; the inner dim is a tight loop.
    let outer = Layout {
        shape: layout.shape[..rank - 1].to_vec(),
        strides: layout.strides[..rank - 1].to_vec(),
        offset: layout.offset,
    };
    for o in outer.offsets() {
        if inner_stride == 1 {
            out.extend(data[o..o + inner].iter().map(|&x| f(x)));
        } else {
            out.extend((0..inner).map(|j| f(data[o + j * inner_stride])));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_and_contiguity() {
        let l = Layout::contiguous(&[2, 3, 4]);
        assert_eq!(l.strides(), &[12, 4, 1]);
        assert!(l.is_contiguous());
        let t = l.transpose(1, 2).unwrap();
        assert_eq!((t.shape(), t.strides()), (&[2, 4, 3][..], &[12, 1, 4][..]));
        assert!(!t.is_contiguous());
        // A narrow along dim 0 stays contiguous, with an offset.
        let n = l.narrow(0, 1, 1).unwrap();
        assert!(n.is_contiguous());
        assert_eq!(n.contiguous_range(), Some(12..24));
        assert!(!l.narrow(2, 1, 2).unwrap().is_contiguous());
    }

    #[test]
    fn offsets_walk_row_major_from_any_start() {
        let l = Layout::contiguous(&[2, 3]).transpose(0, 1).unwrap(); // [3, 2], strides [1, 3]
        let all: Vec<usize> = l.offsets().collect();
        assert_eq!(all, vec![0, 3, 1, 4, 2, 5]);
        let tail: Vec<usize> = l.offsets_from(3).collect();
        assert_eq!(tail, vec![4, 2, 5]);
        let scalar = Layout::contiguous(&[]);
        assert_eq!(scalar.offsets().collect::<Vec<_>>(), vec![0]);
        let empty = Layout::contiguous(&[2, 0]);
        assert_eq!(empty.offsets().count(), 0);
    }

    #[test]
    fn broadcasting_rules() {
        assert_eq!(
            broadcast_shape("add", &[3, 1, 5], &[4, 1]).unwrap(),
            vec![3, 4, 5]
        );
        assert_eq!(broadcast_shape("add", &[], &[2]).unwrap(), vec![2]);
        let e = broadcast_shape("add", &[3, 2], &[3])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("add") && e.contains("[3, 2]") && e.contains("[3]"),
            "{e}"
        );
        let b = Layout::contiguous(&[3, 1])
            .broadcast_as(&[2, 3, 4])
            .unwrap();
        assert_eq!(b.strides(), &[0, 1, 0]);
        assert!(Layout::contiguous(&[3]).broadcast_as(&[3, 2]).is_err());
    }

    #[test]
    fn permute_squeeze_unsqueeze() {
        let l = Layout::contiguous(&[2, 3, 4]);
        let p = l.permute(&[2, 0, 1]).unwrap();
        assert_eq!((p.shape(), p.strides()), (&[4, 2, 3][..], &[1, 12, 4][..]));
        assert!(l.permute(&[0, 0, 1]).is_err());
        let u = l.unsqueeze(1).unwrap();
        assert_eq!(u.shape(), &[2, 1, 3, 4]);
        assert!(u.is_contiguous());
        assert_eq!(u.squeeze(1).unwrap(), l);
        assert_eq!(l.squeeze(0).unwrap(), l); // size 2: no-op
        assert!(l.unsqueeze(3).is_ok() && l.unsqueeze(4).is_err());
    }

    #[test]
    fn gather_strided_views() {
        let data: Vec<i32> = (0..24).collect();
        let l = Layout::contiguous(&[2, 3, 4])
            .narrow(2, 1, 2)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        // [3, 2, 2]: element (i, j, k) = data[j*12 + i*4 + 1 + k]
        let got = gather_map(&data, &l, |x| x);
        assert_eq!(got, vec![1, 2, 13, 14, 5, 6, 17, 18, 9, 10, 21, 22]);
        assert_eq!(got.len(), l.offsets().len());
    }
}
