//! Packing of supervised examples (LLaMA-Factory's `PackedSupervisedDatasetProcessor`): the
//! encoded rows of one preprocessing batch are grouped by a greedy knapsack over their lengths
//! into rows of `cutoff_len + 1` tokens (pad ids, labels −100, positions 0 after the last
//! sub-sequence), positions restarting at 0 for every sub-sequence.
//!
//! What the model sees (the `segments` of each [`Example`]): with plain `packing` LF hands the
//! model an all-ones 2-D attention mask plus restarting `position_ids`; transformers 5.6 only
//! derives sub-sequence boundaries from `position_ids` when the mask is `None`
//! (`masking_utils.find_packed_sequence_indices`), so on eager/sdpa attention every token attends
//! to all earlier tokens of the row, across sub-sequences: one segment per row. With
//! `neat_packing` LF's collator builds a block-diagonal 4-D mask: one segment per sub-sequence
//! (the padding is its own segment). `tests/fixtures/hf/data/encoded.json` (`attention`) proves
//! both on the tiny Llama: LF's plain-packing loss differs from the loss of each sub-sequence
//! run alone, the neat-packing loss equals it.

use super::example::{Example, IGNORE_INDEX};

/// LF's `greedy_knapsack`: sorts `lengths`, then fills knapsacks of `capacity` one by one, each
/// time taking the largest remaining length that still fits. Returns the lengths per knapsack
/// in the order they were taken.
pub fn greedy_knapsack(mut lengths: Vec<usize>, capacity: usize) -> Vec<Vec<usize>> {
    lengths.sort_unstable();
    let mut knapsacks = Vec::new();
    while !lengths.is_empty() {
        let mut knapsack = Vec::new();
        let mut remaining = capacity;
        loop {
            // bisect_right(lengths, remaining) - 1
            let fit = lengths.partition_point(|&l| l <= remaining);
            if fit == 0 {
                break;
            }
            let length = lengths.remove(fit - 1);
            remaining -= length;
            knapsack.push(length);
        }
        if knapsack.is_empty() {
            // only lengths above capacity remain: LF filters them before packing
            break;
        }
        knapsacks.push(knapsack);
    }
    knapsacks
}

/// Packs encoded `(input_ids, labels)` rows of one preprocessing batch into rows of
/// `cutoff_len + 1` tokens. Rows longer than `cutoff_len` are dropped with a warning, as LF does.
pub fn pack_supervised(
    rows: Vec<(Vec<u32>, Vec<i64>)>,
    cutoff_len: usize,
    pad_id: u32,
    neat_packing: bool,
) -> Vec<Example> {
    let mut kept = Vec::with_capacity(rows.len());
    let mut by_length: std::collections::HashMap<usize, Vec<usize>> = Default::default();
    for (ids, labels) in rows {
        if ids.len() > cutoff_len {
            eprintln!(
                "[WARNING] Dropped lengthy example with length {} > {cutoff_len}.",
                ids.len()
            );
            continue;
        }
        by_length.entry(ids.len()).or_default().push(kept.len());
        kept.push((ids, labels));
    }
    let lengths: Vec<usize> = kept.iter().map(|(ids, _)| ids.len()).collect();
    let mut out = Vec::new();
    for knapsack in greedy_knapsack(lengths, cutoff_len) {
        let mut ex = Example::default();
        for length in knapsack {
            // LF pops the last example of that length
            let Some(index) = by_length.get_mut(&length).and_then(|v| v.pop()) else {
                continue;
            };
            let (ids, labels) = &kept[index];
            ex.input_ids.extend_from_slice(ids);
            ex.labels.extend_from_slice(labels);
            ex.position_ids.extend(0..ids.len() as u32);
            ex.segments.push(ids.len());
        }
        let pad = cutoff_len + 1 - ex.input_ids.len();
        ex.input_ids.extend(std::iter::repeat_n(pad_id, pad));
        ex.labels.extend(std::iter::repeat_n(IGNORE_INDEX, pad));
        ex.position_ids.extend(std::iter::repeat_n(0, pad));
        ex.segments.push(pad);
        if !neat_packing {
            // attention crosses sub-sequences: one causal segment over the whole row
            ex.segments = vec![cutoff_len + 1];
        }
        out.push(ex);
    }
    out
}
