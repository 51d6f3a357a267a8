//! The GPTQ algorithm for one linear layer (Frantar et al. 2022, "GPTQ: Accurate
//! Post-Training Quantization for Generative Pre-trained Transformers", Alg. 1), step for step
//! as GPTQModel's `GPTQ.quantize` runs it (the implementation transformers' `GPTQConfig`
//! drives through optimum, which is what LLaMA-Factory's `export_quantization_bit` uses):
//!
//! 1. `H = 2/N · Σ XᵀX` over the N calibration rows that reached the layer (f32).
//! 2. Columns whose `H[i, i] = 0` never saw a nonzero input: `H[i, i] = 1`, `W[:, i] = 0`.
//! 3. With act-order, columns are visited by decreasing `H[i, i]`; without it, by default
//!    (GPTQModel's `act_group_aware`, on in transformers' `GPTQConfig`), whole groups are
//!    reordered by their largest `H[i, i]` and the columns inside each group by `H[i, i]`.
//! 4. `H += damp · mean(diag H) · I`, raising `damp` by `damp_auto_increment` until the
//!    Cholesky factorisation succeeds; `U = chol(H⁻¹)ᵀ` (upper).
//! 5. Column by column, in blocks of 128: quantize the column to the nearest grid point of
//!    its group, spread the error `(w − q) / U[i, i]` over the columns not yet quantized
//!    (inside the block at once, past the block as one product when the block ends).
//!
//! The grid of a group is fixed when the loop reaches the group's first column, from the
//! min/max of each row of `W` over the group's columns. `W` there is the matrix as it stood
//! at the start of the current block: updates made inside the block live in its working copy,
//! so a group that starts mid-block sees the pre-block values (the reference does this too).
//!
//! Arithmetic is f32 as in the reference, except the Cholesky factorisations and the inverse,
//! which run in f64 (faer) and are rounded to f32: the reference's LAPACK f32 result and ours
//! then differ only by the reference's own rounding.

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use lmf_kernels::cpu::gemm::{gemm, MatMut, MatRef};
use lmf_kernels::cpu::quant::torch_mean::{torch_mean_f32, TORCH_SUM_LANES};

/// How to quantize (transformers' `GPTQConfig` and GPTQModel's `fasterquant` arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct GptqParams {
    /// Bits per weight: 2, 3, 4 or 8.
    pub bits: u32,
    /// Input columns per group; `None` = one group per row (`group_size: -1`).
    pub group_size: Option<usize>,
    /// Symmetric grid (zero point in the middle) or min/max grid.
    pub sym: bool,
    /// Act-order: visit columns by decreasing Hessian diagonal.
    pub desc_act: bool,
    /// Group-aware reordering (GAR, GPTQModel's `act_group_aware`), when not `desc_act` and
    /// with groups: columns by decreasing diagonal inside each whole group, whole groups by
    /// their largest diagonal, a partial last group last. Groups keep their columns, so
    /// `g_idx` stays `i / group_size`.
    pub act_group_aware: bool,
    /// Dampening, as a fraction of the mean Hessian diagonal.
    pub damp_percent: f64,
    /// Added to `damp_percent` each time the Cholesky factorisation fails.
    pub damp_auto_increment: f64,
    /// Columns per lazy-update block.
    pub blocksize: usize,
}

impl Default for GptqParams {
    /// transformers' `GPTQConfig` defaults (what LLaMA-Factory's export passes) with
    /// GPTQModel's `fasterquant` defaults: 4 bits, groups of 128, symmetric, no act-order
    /// but group-aware reordering, damp 0.1 (+0.0015 per retry), blocks of 128.
    fn default() -> Self {
        GptqParams {
            bits: 4,
            group_size: Some(128),
            sym: true,
            desc_act: false,
            act_group_aware: true,
            damp_percent: 0.1,
            damp_auto_increment: 0.0015,
            blocksize: 128,
        }
    }
}

impl GptqParams {
    /// The largest code, `2^bits − 1`.
    pub fn maxq(&self) -> u32 {
        (1u32 << self.bits) - 1
    }
}

/// The running `Σ XᵀX` of the inputs one linear saw, `[cols, cols]` f32.
#[derive(Clone, Debug)]
pub struct Hessian {
    /// In features.
    pub cols: usize,
    /// `Σ XᵀX`, row-major.
    pub sum: Vec<f32>,
    /// Rows added so far (tokens).
    pub rows: usize,
}

impl Hessian {
    /// An empty accumulator for a linear with `cols` in features.
    pub fn new(cols: usize) -> Hessian {
        Hessian {
            cols,
            sum: vec![0.0; cols * cols],
            rows: 0,
        }
    }

    /// Adds one batch `x: [n, cols]`: its own `xᵀx` first, then into the sum (as the
    /// reference adds per-batch partials).
    pub fn add(&mut self, x: &[f32], n: usize) {
        let c = self.cols;
        assert_eq!(
            x.len(),
            n * c,
            "Hessian::add: [{n}, {c}] input of {}",
            x.len()
        );
        if n == 0 {
            return;
        }
        let mut xtx = vec![0f32; c * c];
        let xv = MatRef::new(x, n, c);
        gemm(MatMut::new(&mut xtx, c, c), xv.t(), xv, false, 1.0);
        self.sum.iter_mut().zip(&xtx).for_each(|(s, v)| *s += v);
        self.rows += n;
    }

    /// `H = 2/N · Σ XᵀX`.
    pub fn finish(&self) -> Vec<f32> {
        let k = (2.0 / self.rows.max(1) as f64) as f32;
        self.sum.iter().map(|v| v * k).collect()
    }
}

/// One quantized linear: integer codes with one scale and zero point per group and row.
#[derive(Clone, Debug)]
pub struct GptqLinear {
    /// Bits per code.
    pub bits: u32,
    /// Out features.
    pub rows: usize,
    /// In features.
    pub cols: usize,
    /// Codes `[rows, cols]`, each in `0..=maxq`.
    pub codes: Vec<u8>,
    /// Scales `[groups, rows]`.
    pub scales: Vec<f32>,
    /// Zero points `[groups, rows]`.
    pub zeros: Vec<u8>,
    /// Group of each input column `[cols]`.
    pub g_idx: Vec<u32>,
    /// Number of groups.
    pub groups: usize,
    /// The dequantized weight the algorithm settled on, `scale · (code − zero)`, `[rows, cols]`.
    pub weight: Vec<f32>,
    /// The dampening that made the Hessian factorisable.
    pub damp: f64,
    /// GPTQ's reconstruction loss `Σ (w − q)² / U[i, i]² / 2`, divided by the rows of input.
    pub avg_loss: f64,
}

/// One quantization grid per output row (GPTQModel's `Quantizer` after `find_params`).
#[derive(Clone, Debug)]
struct Grid {
    scale: Vec<f32>,
    zero: Vec<f32>,
}

impl Grid {
    /// The grid of the rows of `W` over columns `c0..c1`, with `Wt: [cols, rows]` (min and max
    /// taken with 0, a symmetric grid centred at `(maxq + 1) / 2`, an all-zero row given the
    /// range [−1, 1]).
    fn fit(wt: &[f32], rows: usize, c0: usize, c1: usize, p: &GptqParams) -> Grid {
        let maxq = p.maxq() as f32;
        let mut lo = vec![f32::INFINITY; rows];
        let mut hi = vec![f32::NEG_INFINITY; rows];
        for c in c0..c1 {
            let col = &wt[c * rows..(c + 1) * rows];
            for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(col) {
                *l = l.min(v);
                *h = h.max(v);
            }
        }
        let mut scale = vec![0f32; rows];
        let mut zero = vec![0f32; rows];
        for r in 0..rows {
            let mut xmin = lo[r].min(0.0);
            let mut xmax = hi[r].max(0.0);
            if p.sym {
                xmax = xmin.abs().max(xmax);
                if xmin < 0.0 {
                    xmin = -xmax;
                }
            }
            if xmin == 0.0 && xmax == 0.0 {
                xmin = -1.0;
                xmax = 1.0;
            }
            scale[r] = (xmax - xmin) / maxq;
            zero[r] = if p.sym {
                (maxq + 1.0) / 2.0
            } else {
                (-xmin / scale[r]).round_ties_even()
            };
        }
        Grid { scale, zero }
    }

    /// The code of `w` in row `r`: `clamp(round(w / scale) + zero, 0, maxq)`.
    #[inline]
    fn code(&self, r: usize, w: f32, maxq: f32) -> f32 {
        ((w / self.scale[r]).round_ties_even() + self.zero[r]).clamp(0.0, maxq)
    }

    /// The grid point of code `q` in row `r`.
    #[inline]
    fn value(&self, r: usize, q: f32) -> f32 {
        self.scale[r] * (q - self.zero[r])
    }
}

/// `U` with `Uᵀ·U = (H + damp·mean(diag H)·I)⁻¹`, upper triangular `[n, n]` row-major f32, and
/// the dampening used. Retries as the reference does: `damp += damp_auto_increment` while
/// `damp < 1`; then up to six times with the diagonal raised by `10^k · 1e-6 · max|diag|`.
fn inverse_cholesky(h: &[f32], n: usize, p: &GptqParams) -> Option<(Vec<f32>, f64)> {
    let orig: Vec<f32> = (0..n).map(|i| h[i * n + i]).collect();
    let mut base = orig.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    if !base.is_finite() || base == 0.0 {
        base = 1.0;
    }
    for attempt in 0..=6 {
        let diag: Vec<f32> = if attempt == 0 {
            orig.clone()
        } else {
            let floor = (base * 1e-6 * 10f64.powi(attempt - 1)) as f32;
            orig.iter().map(|&d| (d + floor).max(floor)).collect()
        };
        let mean = torch_mean_f32(&diag, TORCH_SUM_LANES);
        let mut damp = p.damp_percent;
        while 0.0 < damp && damp < 1.0 {
            let add = damp as f32 * mean;
            let a = Mat::<f64>::from_fn(n, n, |i, j| {
                if i == j {
                    (diag[i] + add) as f64
                } else {
                    h[i * n + j] as f64
                }
            });
            if let Ok(llt) = a.llt(Side::Lower) {
                let inv = llt.inverse();
                if let Ok(l2) = inv.llt(Side::Lower) {
                    // U = L2ᵀ: U[i, j] = L2[j, i] for j ≥ i
                    let l = l2.L();
                    let mut u = vec![0f32; n * n];
                    for i in 0..n {
                        for j in i..n {
                            u[i * n + j] = l[(j, i)] as f32;
                        }
                    }
                    return Some((u, damp));
                }
            }
            if p.damp_auto_increment == 0.0 {
                break;
            }
            damp += p.damp_auto_increment;
        }
    }
    None
}

/// Quantizes `w: [rows, cols]` (row-major f32) with the Hessian `h: [cols, cols]` of its inputs
/// (see [`Hessian::finish`]) seen over `tokens` rows. Errors when no dampening makes the
/// Hessian positive definite.
pub fn gptq_quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    mut h: Vec<f32>,
    tokens: usize,
    p: &GptqParams,
) -> Result<GptqLinear, String> {
    assert_eq!(w.len(), rows * cols, "gptq_quantize: weight size");
    assert_eq!(h.len(), cols * cols, "gptq_quantize: Hessian size");
    if !(2..=8).contains(&p.bits) {
        return Err(format!("{} bits: GPTQ takes 2 to 8 bits", p.bits));
    }
    let maxq = p.maxq() as f32;
    let gs = p.group_size.unwrap_or(cols).max(1);
    // Wt: [cols, rows], so that a column of W is a contiguous slice.
    let mut wt = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            wt[c * rows + r] = w[r * cols + c];
        }
    }
    // The per-row grid over all columns, fitted before dead columns are cleared (used when
    // there are no groups).
    let mut grid = Grid::fit(&wt, rows, 0, cols, p);
    for i in 0..cols {
        if h[i * cols + i] == 0.0 {
            h[i * cols + i] = 1.0;
            wt[i * rows..(i + 1) * rows].fill(0.0);
        }
    }
    // column k of the loop is input column perm[k]; with GAR, loop group k is input group
    // group_order[k] (the partial last group stays last)
    let diag: Vec<f32> = (0..cols).map(|i| h[i * cols + i]).collect();
    let by_diag = |idx: &mut [usize]| idx.sort_by(|&a, &b| diag[b].total_cmp(&diag[a]));
    let mut group_order: Option<Vec<usize>> = None;
    let perm: Vec<usize> = if p.desc_act {
        let mut idx: Vec<usize> = (0..cols).collect();
        by_diag(&mut idx);
        idx
    } else if p.act_group_aware && p.group_size.is_some() {
        let whole = cols / gs;
        let mut local: Vec<Vec<usize>> = (0..whole)
            .map(|g| (g * gs..(g + 1) * gs).collect())
            .collect();
        local.iter_mut().for_each(|l| by_diag(l));
        let mut order: Vec<usize> = (0..whole).collect();
        order.sort_by(|&a, &b| diag[local[b][0]].total_cmp(&diag[local[a][0]]));
        let idx = order
            .iter()
            .flat_map(|&g| local[g].iter().copied())
            .chain(whole * gs..cols)
            .collect();
        group_order = Some(order);
        idx
    } else {
        (0..cols).collect()
    };
    if perm.iter().enumerate().any(|(k, &c)| k != c) {
        let hp: Vec<f32> = (0..cols * cols)
            .map(|k| h[perm[k / cols] * cols + perm[k % cols]])
            .collect();
        let mut wp = vec![0f32; rows * cols];
        for (k, &c) in perm.iter().enumerate() {
            wp[k * rows..(k + 1) * rows].copy_from_slice(&wt[c * rows..(c + 1) * rows]);
        }
        h = hp;
        wt = wp;
    }
    let (u, damp) = inverse_cholesky(&h, cols, p).ok_or_else(|| {
        "the Hessian stayed singular after every dampening retry (too few or degenerate \
         calibration inputs)"
            .to_string()
    })?;
    drop(h);

    let mut qt = vec![0f32; rows * cols]; // quantized columns, [cols, rows]
    let mut codes_t = vec![0u8; rows * cols];
    let mut scales: Vec<Vec<f32>> = vec![];
    let mut zeros: Vec<Vec<f32>> = vec![];
    let mut loss = 0f64;
    let bs = p.blocksize.max(1);
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + bs).min(cols);
        let count = i2 - i1;
        let mut w1 = wt[i1 * rows..i2 * rows].to_vec(); // [count, rows]
        let mut err1 = vec![0f32; count * rows];
        for i in 0..count {
            let c = i1 + i;
            if p.group_size.is_some() && c % gs == 0 {
                grid = Grid::fit(&wt, rows, c, (c + gs).min(cols), p);
                scales.push(grid.scale.clone());
                zeros.push(grid.zero.clone());
            }
            let d = u[c * cols + c];
            let (done, rest) = w1.split_at_mut((i + 1) * rows);
            let col = &done[i * rows..];
            let e = &mut err1[i * rows..(i + 1) * rows];
            for r in 0..rows {
                let wv = col[r];
                let q = grid.code(r, wv, maxq);
                let qv = grid.value(r, q);
                codes_t[c * rows + r] = q as u8;
                qt[c * rows + r] = qv;
                loss += ((wv - qv) * (wv - qv) / (d * d)) as f64;
                e[r] = (wv - qv) / d;
            }
            // W1[:, j] −= err · U[c, j] for the later columns j of the block
            for (j, wj) in rest.chunks_mut(rows).enumerate() {
                let hij = u[c * cols + c + 1 + j];
                for (x, &ev) in wj.iter_mut().zip(e.iter()) {
                    *x -= ev * hij;
                }
            }
        }
        if i2 < cols {
            // Wt[i2.., :] −= U[i1..i2, i2..]ᵀ · Err1   ([cols − i2, count] · [count, rows])
            let n_rest = cols - i2;
            let uv = MatRef {
                data: &u[i1 * cols + i2..],
                rows: count,
                cols: n_rest,
                rs: cols,
                cs: 1,
            };
            gemm(
                MatMut::new(&mut wt[i2 * rows..], n_rest, rows),
                uv.t(),
                MatRef::new(&err1, count, rows),
                true,
                -1.0,
            );
        }
        i1 = i2;
    }
    if scales.is_empty() {
        scales.push(grid.scale.clone());
        zeros.push(grid.zero.clone());
    }
    if let Some(order) = &group_order {
        // loop group k is input group order[k]: put the grids back in input order
        let mut s2 = scales.clone();
        let mut z2 = zeros.clone();
        for (k, &g) in order.iter().enumerate() {
            s2[g] = scales[k].clone();
            z2[g] = zeros[k].clone();
        }
        scales = s2;
        zeros = z2;
    }
    let groups = scales.len();
    // back to input-column order
    let mut inv = vec![0usize; cols];
    for (k, &c) in perm.iter().enumerate() {
        inv[c] = k;
    }
    let mut codes = vec![0u8; rows * cols];
    let mut weight = vec![0f32; rows * cols];
    let mut g_idx = vec![0u32; cols];
    for c in 0..cols {
        let k = inv[c];
        g_idx[c] = match (p.group_size, &group_order) {
            (None, _) => 0,
            (Some(_), Some(_)) => (c / gs) as u32,
            (Some(_), None) => (k / gs) as u32,
        };
        for r in 0..rows {
            codes[r * cols + c] = codes_t[k * rows + r];
            weight[r * cols + c] = qt[k * rows + r];
        }
    }
    Ok(GptqLinear {
        bits: p.bits,
        rows,
        cols,
        codes,
        scales: scales.concat(),
        zeros: zeros.concat().into_iter().map(|z| z as u8).collect(),
        g_idx,
        groups,
        weight,
        damp,
        avg_loss: if tokens > 0 {
            loss / 2.0 / tokens as f64
        } else {
            0.0
        },
    })
}
