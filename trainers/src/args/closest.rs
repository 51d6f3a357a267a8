//! "Did you mean": the known key closest to a mistyped one, by edit distance.

/// Levenshtein distance between `a` and `b` (insert, delete, substitute: cost 1 each).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `key`, if it is close enough to be a likely typo (at most a third
/// of the key's length, and at least 1, edits away); ties go to the first candidate.
pub fn closest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (key.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(key, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_single_edits() {
        assert_eq!(edit_distance("lora_rank", "lora_rank"), 0);
        assert_eq!(edit_distance("lora_rnak", "lora_rank"), 2);
        assert_eq!(edit_distance("temperatur", "temperature"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn closest_picks_the_nearest_within_limit() {
        let keys = ["temperature", "top_p", "top_k"];
        assert_eq!(closest("temprature", keys), Some("temperature".into()));
        assert_eq!(closest("zzzzzzzz", keys), None);
    }
}
