//! The row order of LLaMA-Factory's `streaming: true` datasets, as HF `datasets` 4.0.0 yields it.
//!
//! For a local file LLaMA-Factory 0.9.5 loads the rows (map-style), turns them into an
//! `IterableDataset` with `to_iterable_dataset(num_shards=1)` (one shard: the rows 0..n in file
//! order), and calls `shuffle(buffer_size=B, seed=S)`. With an integer `val_size` k it then
//! takes `eval = take(k)` and `train = skip(k)`. The Trainer calls `set_epoch(e)` on the train
//! dataset before every pass e = 0, 1, 2, ...
//!
//! What `datasets` does with that (`iterable_dataset.py`):
//!
//! - **Generator per epoch** (`IterableDataset._effective_generator`): epoch 0 uses
//!   `default_rng(S)` itself; epoch e > 0 uses `default_rng(X - e)` with
//!   `X = default_rng(S).integers(0, 1 << 63)` (that is, the first 64-bit draw shifted right by
//!   one). (The docstring's "seed + epoch" is wrong.) For a negative `X - e` the code adds
//!   `2^63`, which under numpy 2 raises OverflowError instead (odds about e / 2^63); lmf adds it.
//!   Each pass starts from a fresh copy, so iterating twice at one epoch repeats the order.
//! - **Shuffle buffer** (`BufferShuffledExamplesIterable.__iter__`): rows fill a buffer of B
//!   slots; once it is full, each further row r takes a random slot i, the slot's row is
//!   yielded and r takes its place. The slots come from `integers(0, B, size=1000)` drawn in
//!   batches of 1000 (lazily: a batch is drawn only when the first of its slots is needed, so a
//!   run with n ≤ B draws none). When the rows run out, the buffer left (min(n, B) rows) is
//!   shuffled with `Generator.shuffle` on the same generator and yielded in that order.
//! - **take / skip** after a shuffle are not frozen: `shuffle_data_sources` re-shuffles below them
//!   (`block_sources_order_when_shuffling` is false once shuffled), so `take(k)` / `skip(k)` at
//!   epoch e are the first k / all but the first k rows of epoch e's order. Their datasets start
//!   at epoch 0 whatever the parent's epoch was.
//! - **eval** is the `take(k)` dataset; the Trainer never calls `set_epoch` on it, and accelerate
//!   calls `set_epoch(0)` on each fresh eval DataLoader, so every evaluation sees epoch 0's first
//!   k rows, while the train rows of epoch e ≥ 1 are epoch e's order without its first k, which
//!   can hold eval rows and miss others. (With `dataloader_persistent_workers` the cached eval
//!   DataLoader counts its passes: evaluation j then sees epoch j.)
//! - A `.map(batched=True)` before or after the shuffle and iteration in a DataLoader worker
//!   (`num_workers=1`) leave the order unchanged.
//! - **Several sources** concatenated (`mix_strategy: concat`): each epoch first shuffles the
//!   list of sources with a copy of the epoch's generator, then the buffer shuffles their
//!   concatenation ([`concat_order`]).
//!
//! `TrainStream` is the training set of a streaming run built on these orders: the converted
//! rows, reordered and encoded again for each epoch (LF maps its processor over the shuffled
//! stream, so pt blocks and packing are cut from each epoch's order).
//!
//! Checked against `datasets` 4.0.0 / numpy 2.4 by `tests/fixtures/hf/data/make_stream_order.py`
//! (`trainers/tests/stream_order.rs`).

use super::encoder::{Encoder, StageRows};
use super::get::{Row, Sources};
use super::numpy_rng::NumpyRng;
use crate::args::finetuning::Stage;
use crate::args::DataArguments;
use crate::template::Template;
use crate::Result;
use lmf_models::Tokenizer;

/// How many slots `datasets` draws at once (`_iter_random_indices`' `random_batch_size`).
const RANDOM_BATCH: usize = 1000;

/// The generator `datasets` shuffles with at `epoch` (`_effective_generator`, see the module).
pub fn epoch_rng(seed: u64, epoch: u64) -> NumpyRng {
    let base = NumpyRng::new(seed);
    if epoch == 0 {
        return base;
    }
    let x = base.clone().integers_closed(0, i64::MAX, 1)[0] as i128; // integers(0, 1 << 63)
    let mut effective = x - epoch as i128;
    if effective < 0 {
        effective += 1 << 63;
    }
    NumpyRng::new(effective as u64)
}

/// The row indices (0..n of the single-shard stream) in the order
/// `to_iterable_dataset(num_shards=1).shuffle(buffer_size, seed)` yields them after
/// `set_epoch(epoch)`: a permutation of 0..n. Panics when `buffer_size` is 0 (`datasets` fails
/// on it too once a row arrives).
pub fn shuffled_order(n: usize, buffer_size: usize, seed: u64, epoch: u64) -> Vec<usize> {
    assert!(
        buffer_size > 0,
        "streaming shuffle buffer_size must be at least 1"
    );
    let mut rng = epoch_rng(seed, epoch);
    let mut out = Vec::with_capacity(n);
    let mut buffer = Vec::with_capacity(n.min(buffer_size));
    let mut slots: Vec<i64> = Vec::new();
    let mut next_slot = 0;
    for row in 0..n {
        if buffer.len() < buffer_size {
            buffer.push(row);
            continue;
        }
        if next_slot == slots.len() {
            slots = rng.integers(0, buffer_size as i64, RANDOM_BATCH);
            next_slot = 0;
        }
        let i = slots[next_slot] as usize;
        next_slot += 1;
        out.push(std::mem::replace(&mut buffer[i], row));
    }
    rng.shuffle(&mut buffer);
    out.extend(buffer);
    out
}

/// LLaMA-Factory's streaming validation split at `epoch`: `(take(val), skip(val))` of the
/// shuffled stream, both after `set_epoch(epoch)`: the first `min(val, n)` rows of
/// [`shuffled_order`] and the rest. The Trainer iterates the eval half at epoch 0 only (see the
/// module), so pass 0 for it and the training epoch for the train half.
pub fn split_orders(
    n: usize,
    buffer_size: usize,
    seed: u64,
    val: usize,
    epoch: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut order = shuffled_order(n, buffer_size, seed, epoch);
    let train = order.split_off(val.min(n));
    (order, train)
}

/// The order of a stream of concatenated sources (`lengths[i]` rows each, one shard each) at
/// `epoch`: `VerticallyConcatenatedMultiSourcesExamplesIterable.shuffle_data_sources` first
/// shuffles the list of sources with a copy of the epoch's generator (`Generator.shuffle`), then
/// the buffer shuffles the concatenation in that source order with its own copy
/// ([`shuffled_order`]). Indices are into the sources concatenated in their given order.
pub fn concat_order(lengths: &[usize], buffer_size: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut sources: Vec<usize> = (0..lengths.len()).collect();
    epoch_rng(seed, epoch).shuffle(&mut sources);
    let starts: Vec<usize> = lengths
        .iter()
        .scan(0, |at, &n| {
            let s = *at;
            *at += n;
            Some(s)
        })
        .collect();
    let stream: Vec<usize> = sources
        .iter()
        .flat_map(|&k| starts[k]..starts[k] + lengths[k])
        .collect();
    shuffled_order(stream.len(), buffer_size, seed, epoch)
        .into_iter()
        .map(|i| stream[i])
        .collect()
}

/// The training set of a `streaming: true` run: the converted rows, re-read in each epoch's
/// order and encoded again, as LLaMA-Factory's map over the shuffled `IterableDataset` does
/// (its preprocessing batches, and so pt / `packing` blocks, are cut from the shuffled stream).
pub(crate) struct TrainStream(Box<RowStream>);

#[derive(Clone)]
struct RowStream {
    rows: Vec<Row>,
    lengths: Vec<usize>,
    buffer_size: usize,
    seed: u64,
    /// `val_size` rows taken off the front of each epoch's order (LF's `skip`).
    skip: usize,
    template: Template,
    tok: Tokenizer,
    data_args: DataArguments,
    stage: Stage,
    sources: Sources,
    add_bos_token: bool,
}

impl TrainStream {
    /// The stream of `rows` (sources of `lengths` rows, concatenated) shuffled through a
    /// buffer of `buffer_size` with `seed`, without its first `skip` rows, encoded as `enc`.
    pub(crate) fn new(
        rows: Vec<Row>,
        lengths: Vec<usize>,
        buffer_size: usize,
        seed: u64,
        skip: usize,
        enc: &Encoder,
    ) -> TrainStream {
        TrainStream(Box::new(RowStream {
            rows,
            lengths,
            buffer_size,
            seed,
            skip,
            template: enc.template.clone(),
            tok: enc.tok.clone(),
            data_args: enc.data_args.clone(),
            stage: enc.stage,
            sources: enc.sources.clone(),
            add_bos_token: enc.add_bos_token,
        }))
    }

    /// The encoded training rows of `epoch`.
    pub(crate) fn epoch<R: StageRows>(&self, epoch: u64) -> Result<Vec<R>> {
        let s = &self.0;
        let order = concat_order(&s.lengths, s.buffer_size, s.seed, epoch);
        let rows: Vec<Row> = order
            .iter()
            .skip(s.skip)
            .map(|&i| s.rows[i].clone())
            .collect();
        let enc = Encoder {
            template: &s.template,
            tok: &s.tok,
            data_args: &s.data_args,
            stage: s.stage,
            sources: &s.sources,
            add_bos_token: s.add_bos_token,
        };
        enc.encode_set(&rows, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_a_permutation() {
        for (n, b) in [(0, 1), (1, 1), (10, 3), (10, 10), (10, 20), (2500, 7)] {
            let mut o = shuffled_order(n, b, 42, 1);
            o.sort_unstable();
            assert_eq!(o, (0..n).collect::<Vec<_>>(), "n={n} b={b}");
        }
    }

    #[test]
    fn buffer_of_one_keeps_file_order() {
        assert_eq!(shuffled_order(6, 1, 3, 2), (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn split_is_a_prefix_and_the_rest() {
        let all = shuffled_order(50, 8, 7, 2);
        let (eval, train) = split_orders(50, 8, 7, 10, 2);
        assert_eq!([eval.as_slice(), train.as_slice()].concat(), all);
        assert_eq!(eval.len(), 10);
        let (eval, train) = split_orders(5, 8, 7, 10, 0);
        assert_eq!((eval.len(), train.len()), (5, 0));
    }
}
