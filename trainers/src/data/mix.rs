//! Several datasets → one (LLaMA-Factory's `merge_dataset`), and the validation split
//! (`split_dataset` with `val_size`).
//!
//! - `concat`: one after another.
//! - `interleave_under` / `interleave_over` without `interleave_probs`: exactly HF
//!   `interleave_datasets` on map-style datasets — round robin, stopping when the shortest is
//!   used up (under), or running `max(len)` rounds with shorter datasets restarting (over).
//! - with `interleave_probs`: HF draws sources from numpy's `default_rng(seed).choice(k, p)`;
//!   [`NumpyRng`] makes the same draws, so the rows come in LF's order.
//! - `interleave_once`: HF refuses it for map-style datasets; so does lmf.
//! - `val_size`: HF `train_test_split(test_size, seed)`: `default_rng(seed).permutation(n)`, the
//!   first `n_test` rows (`ceil(val_size * n)` for a fraction, the count when `val_size > 1`)
//!   are the validation set, the rest the training set, both in permutation order — the same
//!   rows as LF through [`NumpyRng`].

use super::numpy_rng::{cdf, NumpyRng};
use crate::args::data::MixStrategy;
use crate::{Error, Result};

/// Merges the datasets (each already converted) as `mix_strategy` says.
pub fn merge<T: Clone>(
    mut datasets: Vec<Vec<T>>,
    strategy: MixStrategy,
    probs: Option<&[f64]>,
    seed: u64,
) -> Result<Vec<T>> {
    if datasets.len() == 1 {
        return Ok(datasets.pop().unwrap_or_default());
    }
    let over = match strategy {
        MixStrategy::Concat => return Ok(datasets.into_iter().flatten().collect()),
        MixStrategy::InterleaveUnder => false,
        MixStrategy::InterleaveOver => true,
        MixStrategy::InterleaveOnce => {
            return Err(Error::Msg(
                "mix_strategy `interleave_once` is not implemented for local (map-style) datasets, as in HF datasets; use interleave_under or interleave_over".into(),
            ))
        }
    };
    let lengths: Vec<usize> = datasets.iter().map(Vec::len).collect();
    let mut out = Vec::new();
    match probs {
        None => {
            let rounds = if over {
                lengths.iter().copied().max().unwrap_or(0)
            } else {
                lengths.iter().copied().min().unwrap_or(0)
            };
            for r in 0..rounds {
                for d in &datasets {
                    if d.is_empty() {
                        return Err(Error::Msg("cannot interleave an empty dataset".into()));
                    }
                    out.push(d[r % d.len()].clone());
                }
            }
        }
        Some(p) => {
            if p.len() != datasets.len() {
                return Err(Error::Msg(
                    "`interleave_probs` must have one probability per dataset".into(),
                ));
            }
            if lengths.contains(&0) {
                return Err(Error::Msg("cannot interleave an empty dataset".into()));
            }
            let mut rng = NumpyRng::new(seed);
            let cdf = cdf(p);
            let mut current = vec![0usize; datasets.len()];
            let mut exhausted = vec![false; datasets.len()];
            loop {
                let done = if over {
                    exhausted.iter().all(|&e| e)
                } else {
                    exhausted.iter().any(|&e| e)
                };
                if done {
                    break;
                }
                let s = rng.choice(&cdf);
                out.push(datasets[s][current[s]].clone());
                current[s] += 1;
                if current[s] >= lengths[s] {
                    exhausted[s] = true;
                    current[s] = 0;
                }
            }
        }
    }
    Ok(out)
}

/// Splits `rows` into (train, validation) with `val_size` (a fraction, or a count when > 1).
pub fn train_test_split<T>(rows: Vec<T>, val_size: f64, seed: u64) -> Result<(Vec<T>, Vec<T>)> {
    let n = rows.len();
    let n_test = if val_size > 1.0 {
        val_size as usize
    } else {
        (val_size * n as f64).ceil() as usize
    };
    if n_test == 0 || n_test >= n {
        return Err(Error::Msg(format!(
            "val_size {val_size} leaves no train or no validation rows out of {n}"
        )));
    }
    let order = NumpyRng::new(seed).permutation(n);
    let mut slots: Vec<Option<T>> = rows.into_iter().map(Some).collect();
    let mut take =
        |idx: &[usize]| -> Vec<T> { idx.iter().filter_map(|&i| slots[i].take()).collect() };
    let test = take(&order[..n_test]);
    let train = take(&order[n_test..]);
    Ok((train, test))
}
