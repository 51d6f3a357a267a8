//! The `predict_with_generate` text metrics of LLaMA-Factory 0.9.5 (`ComputeSimilarity` in
//! `llamafactory/train/sft/metric.py`), computed the same way, operation by operation.
//!
//! For every (prediction, label) pair of decoded strings LF records four numbers, each
//! `round(score * 100, 4)` (Python's `round`: the exact binary value rounded half-to-even):
//!
//! - `rouge-1`, `rouge-2`, `rouge-l`: the F-scores of the `rouge_chinese` package (1.0.3) on the
//!   jieba words of both strings joined by single spaces ([`rouge_f`]). When either string has no
//!   non-whitespace character all three are 0.
//! - `bleu-4`: nltk's (3.10) `sentence_bleu` on *characters*: one reference `list(label)`,
//!   hypothesis `list(pred)`, weights 0.25 x 4, `SmoothingFunction().method3` ([`sentence_bleu`]).
//!
//! The result is `{key: float(np.mean(rows))}` in the order rouge-1, rouge-2, rouge-l, bleu-4
//! ([`similarity_metrics`]); the mean itself is not rounded. HF's trainer then prefixes the keys
//! (`predict_rouge-1`, ...; `eval_` for evaluation).
//!
//! Word segmentation is Python jieba 0.42.1's `jieba.cut(text)` (accurate mode with the HMM for
//! unknown words, default dictionary), reproduced on top of the `jieba-rs` crate ([`jieba_cut`]).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use jieba_rs::Jieba;

/// The metric keys, in the order LF's `score_dict` (and so its result dict) has them.
pub const METRIC_NAMES: [&str; 4] = ["rouge-1", "rouge-2", "rouge-l", "bleu-4"];

/// One row's scores as LF records them: `round(score * 100, 4)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowScores {
    pub rouge_1: f64,
    pub rouge_2: f64,
    pub rouge_l: f64,
    pub bleu_4: f64,
}

impl RowScores {
    /// The four values in [`METRIC_NAMES`] order.
    pub fn values(&self) -> [f64; 4] {
        [self.rouge_1, self.rouge_2, self.rouge_l, self.bleu_4]
    }
}

/// LF's metric dict for the pairs `zip(preds, labels)` (the shorter list decides the row
/// count, as Python's `zip`): `[(name, mean over rows)]` in [`METRIC_NAMES`] order, without the
/// `predict_` / `eval_` prefix. No rows gives NaN means (numpy's mean of nothing).
pub fn similarity_metrics(preds: &[String], labels: &[String]) -> Vec<(String, f64)> {
    let rows: Vec<RowScores> = preds
        .iter()
        .zip(labels)
        .map(|(p, l)| row_scores(p, l))
        .collect();
    METRIC_NAMES
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let column: Vec<f64> = rows.iter().map(|r| r.values()[k]).collect();
            (name.to_string(), np_mean(&column))
        })
        .collect()
}

/// One row of LF's `ComputeSimilarity`: the decoded strings are used as they are (no strip).
pub fn row_scores(pred: &str, label: &str) -> RowScores {
    let [r1, r2, rl] = if has_text(pred) && has_text(label) {
        rouge_f(&jieba_cut(pred), &jieba_cut(label))
    } else {
        [0.0; 3]
    };
    let pred_chars: Vec<char> = pred.chars().collect();
    let label_chars: Vec<char> = label.chars().collect();
    let bleu = sentence_bleu(&label_chars, &pred_chars);
    RowScores {
        rouge_1: py_round4(r1 * 100.0),
        rouge_2: py_round4(r2 * 100.0),
        rouge_l: py_round4(rl * 100.0),
        bleu_4: py_round4(bleu * 100.0),
    }
}

// ---------------------------------------------------------------------------------------------
// Python string helpers
// ---------------------------------------------------------------------------------------------

/// Python's `str.isspace`: Rust's `char::is_whitespace` plus the separators U+001C..U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()`: the runs of non-whitespace.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_isspace).filter(|w| !w.is_empty())
}

/// LF's guard `len(" ".join(jieba.cut(s)).split()) > 0`, i.e. `s` has a non-space character.
fn has_text(s: &str) -> bool {
    s.chars().any(|c| !py_isspace(c))
}

/// Python's `round(x, 4)`: the decimal nearest to the exact binary value of `x`, ties to even.
/// Rust's fixed-precision formatting rounds the same way; parsing back is correctly rounded.
pub fn py_round4(x: f64) -> f64 {
    format!("{x:.4}").parse().unwrap_or(x)
}

/// `float(np.mean(values))` for a float64 array: numpy's pairwise sum divided by the count.
pub fn np_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    np_pairwise_sum(values) / values.len() as f64
}

/// numpy's `add.reduce` over a contiguous float64 array:
/// - fewer than 8 values: a plain left-to-right sum;
/// - up to 128: eight running sums `r[j] += a[8i + j]`, combined as
///   `((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))`, then the leftover tail added in order;
/// - more: split at `n2 = n / 2` rounded down to a multiple of 8, and sum both halves so.
fn np_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(0.0, |acc, x| acc + x);
    }
    if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        for block in a[8..whole].chunks_exact(8) {
            for (acc, x) in r.iter_mut().zip(block) {
                *acc += x;
            }
        }
        let head = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        return a[whole..].iter().fold(head, |acc, x| acc + x);
    }
    let half = n / 2;
    let split = half - half % 8;
    np_pairwise_sum(&a[..split]) + np_pairwise_sum(&a[split..])
}

/// Python's `math.fsum`: the correctly rounded sum of finite values. The running total is kept
/// as a list of non-overlapping partial sums (each addition split into its rounded sum and the
/// exact error, Shewchuk's method); the partials are then added from the largest down, and a
/// result that sits exactly halfway between two floats is settled by the sign of what is left.
fn fsum(values: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for &v in values {
        let mut x = v;
        let mut kept = 0;
        for i in 0..partials.len() {
            let mut y = partials[i];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        partials.truncate(kept);
        partials.push(x);
    }
    let Some(mut hi) = partials.pop() else {
        return 0.0;
    };
    let mut lo = 0.0;
    while let Some(y) = partials.pop() {
        let x = hi;
        hi = x + y;
        lo = y - (hi - x);
        if lo != 0.0 {
            break;
        }
    }
    // Halfway case: `hi + lo` rounded to even, but the partials below push it one way.
    if let Some(&below) = partials.last() {
        if (lo < 0.0 && below < 0.0) || (lo > 0.0 && below > 0.0) {
            let twice = lo * 2.0;
            let x = hi + twice;
            if twice == x - hi {
                hi = x;
            }
        }
    }
    hi
}

// ---------------------------------------------------------------------------------------------
// jieba
// ---------------------------------------------------------------------------------------------

/// The shared segmenter: jieba-rs's default dictionary and HMM, plus one placeholder entry.
/// Python jieba 0.42.1's `dict.txt` lists `B超 3 n` twice and its loader adds both lines to the
/// total frequency (60101967); jieba-rs's copy lists it once (60101964). Every word's score is
/// `ln(freq) - ln(total)`, so the placeholder (frequency 3, a key that no dictionary block can
/// contain) restores the total.
fn segmenter() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(|| {
        let mut jieba = Jieba::new();
        jieba.add_word("\u{0}", Some(3), None);
        jieba
    })
}

/// Python `list(jieba.cut(text))` (jieba 0.42.1, `cut_all=False`, `HMM=True`).
///
/// jieba-rs 0.11 follows Python jieba except in two places, both undone here:
/// - its dictionary blocks also take U+9FD6..U+9FFF and the CJK extension blocks, where Python's
///   block class is `[\u4E00-\u9FD5a-zA-Z0-9+#&._%-]`: Python yields each such character on
///   its own, so the text is cut at them and they are emitted alone;
/// - in the runs its HMM handles, jieba-rs keeps `a-b`, `a_b`, `1.2.3` together; Python's
///   `[a-zA-Z0-9]+(?:\.\d+)?%?` pieces apart ([`python_skip_pieces`]). No dictionary word
///   contains `.`, `_` or `-`, so only such HMM tokens are re-split.
pub fn jieba_cut(text: &str) -> Vec<&str> {
    let jieba = segmenter();
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if is_wide_han_only(c) {
            cut_segment(jieba, &text[start..i], &mut out);
            out.push(&text[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    cut_segment(jieba, &text[start..], &mut out);
    out
}

/// jieba-rs's `cut(segment, hmm = true)`, each token re-split as Python's HMM stage would.
fn cut_segment<'a>(jieba: &Jieba, segment: &'a str, out: &mut Vec<&'a str>) {
    if segment.is_empty() {
        return;
    }
    for token in jieba.cut(segment, true) {
        python_skip_pieces(token.word, out);
    }
}

/// Characters jieba-rs puts in dictionary blocks but Python jieba does not.
fn is_wide_han_only(c: char) -> bool {
    matches!(c,
        '\u{9FD6}'..='\u{9FFF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{2A6DF}'
        | '\u{2A700}'..='\u{2B73F}'
        | '\u{2B740}'..='\u{2B81F}'
        | '\u{2B820}'..='\u{2CEAF}'
        | '\u{2CEB0}'..='\u{2EBEF}'
        | '\u{2F800}'..='\u{2FA1F}')
}

/// Python jieba's non-Chinese split inside an HMM run: `re.split("([a-zA-Z0-9]+(?:\.\d+)?%?)")`
/// keeping the matches and the non-empty gaps between them. Tokens without `.`, `_` or `-`
/// already are such pieces and pass through.
fn python_skip_pieces<'a>(token: &'a str, out: &mut Vec<&'a str>) {
    if !token.contains(['.', '_', '-']) {
        out.push(token);
        return;
    }
    let b = token.as_bytes();
    let mut gap = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        if gap < i {
            out.push(&token[gap..i]);
        }
        let start = i;
        i = skip_while(b, i, u8::is_ascii_alphanumeric);
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i = skip_while(b, i + 1, u8::is_ascii_digit);
        }
        if i < b.len() && b[i] == b'%' {
            i += 1;
        }
        out.push(&token[start..i]);
        gap = i;
    }
    if gap < b.len() {
        out.push(&token[gap..]);
    }
}

/// The first index at or after `i` whose byte fails `keep`.
fn skip_while(b: &[u8], mut i: usize, keep: fn(&u8) -> bool) -> usize {
    while i < b.len() && keep(&b[i]) {
        i += 1;
    }
    i
}

// ---------------------------------------------------------------------------------------------
// ROUGE (rouge_chinese 1.0.3, `Rouge().get_scores(hyp, ref)[0][m]["f"]`)
// ---------------------------------------------------------------------------------------------

/// The ROUGE-1, ROUGE-2 and ROUGE-L F-scores (0..1) of the jieba words of a hypothesis against
/// those of a reference, as `rouge_chinese.Rouge().get_scores(" ".join(hyp), " ".join(ref))`.
///
/// Each side becomes one word list ([`rouge_words`]); with `P = overlap / hyp_count`,
/// `R = overlap / ref_count` (0 when the count is 0), every score is
/// `F = 2 * ((P * R) / (P + R + 1e-8))`:
/// - ROUGE-N counts *distinct* n-grams (sets, so repeats count once), overlap = shared n-grams;
///   n-grams run across sentence boundaries;
/// - ROUGE-L ("summary level" in name only): the counts are the word-list lengths and the
///   overlap is the length of the longest common subsequence of the two whole lists.
pub fn rouge_f(hyp_tokens: &[&str], ref_tokens: &[&str]) -> [f64; 3] {
    let hyp_text = mark_sentences(&hyp_tokens.join(" "));
    let ref_text = mark_sentences(&ref_tokens.join(" "));
    let hyp = rouge_words(&hyp_text);
    let refs = rouge_words(&ref_text);
    if hyp.is_empty() || refs.is_empty() {
        // rouge_chinese raises here; LF's has_text guard keeps it from happening.
        return [0.0; 3];
    }
    [
        rouge_n(&hyp, &refs, 1),
        rouge_n(&hyp, &refs, 2),
        rouge_l(&hyp, &refs),
    ]
}

/// `F = 2 * ((P * R) / (P + R + 1e-8))`, rouge_chinese's F1 with its epsilon.
fn f_score(precision: f64, recall: f64) -> f64 {
    2.0 * ((precision * recall) / (precision + recall + 1e-8))
}

/// `count == 0 ? 0 : overlap / count`.
fn ratio(overlap: usize, count: usize) -> f64 {
    if count == 0 {
        0.0
    } else {
        overlap as f64 / count as f64
    }
}

/// rouge_chinese's word list of a text marked by [`mark_sentences`]: `text.rstrip()`, split at
/// `\n` into sentences, the empty ones dropped, each normalised to `" ".join(s.split())` and
/// split again on `" "`, all chained. A sentence of only whitespace so gives one empty word `""`.
fn rouge_words(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for sentence in text.trim_end_matches(py_isspace).split('\n') {
        if sentence.is_empty() {
            continue;
        }
        let before = words.len();
        words.extend(py_split(sentence));
        if words.len() == before {
            words.push("");
        }
    }
    words
}

/// ROUGE-N F-score over distinct n-grams.
fn rouge_n(hyp: &[&str], refs: &[&str], n: usize) -> f64 {
    let hyp_grams: HashSet<&[&str]> = hyp.windows(n).collect();
    let ref_grams: HashSet<&[&str]> = refs.windows(n).collect();
    let overlap = hyp_grams.intersection(&ref_grams).count();
    f_score(
        ratio(overlap, hyp_grams.len()),
        ratio(overlap, ref_grams.len()),
    )
}

/// ROUGE-L F-score: P = LCS / |hyp|, R = LCS / |ref| (both lists non-empty).
fn rouge_l(hyp: &[&str], refs: &[&str]) -> f64 {
    let lcs = lcs_len(refs, hyp);
    f_score(ratio(lcs, hyp.len()), ratio(lcs, refs.len()))
}

/// Length of the longest common subsequence, row by row:
/// `t[i][j] = x[i-1] == y[j-1] ? t[i-1][j-1] + 1 : max(t[i-1][j], t[i][j-1])`.
fn lcs_len(x: &[&str], y: &[&str]) -> usize {
    let mut prev = vec![0usize; y.len() + 1];
    let mut cur = vec![0usize; y.len() + 1];
    for xi in x {
        for (j, yj) in y.iter().enumerate() {
            cur[j + 1] = if xi == yj {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[y.len()]
}

/// The line breaks of rouge_chinese's `cut_sent`: four substitutions applied one after the
/// other, each a left-to-right, non-overlapping `re.sub`. With `Q = [。！？?]`, `C = ”’`:
/// 1. `(Q)([^C])` -> `\1\n\2`
/// 2. `(\.{6})([^C])` -> `\1\n\2`
/// 3. `(…{2})([^C])` -> `\1\n\2`
/// 4. `(Q[C])([^，。！？?])` -> `\1\n\2`
///
/// (`cut_sent` then returns `text.rstrip().split("\n")`, done in [`rouge_words`].)
fn mark_sentences(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let chars = break_after(&chars, |s| is_stop(s[0]).then_some(1), not_close_quote);
    let chars = break_after(&chars, |s| repeated(s, '.', 6), not_close_quote);
    let chars = break_after(&chars, |s| repeated(s, '…', 2), not_close_quote);
    let chars = break_after(
        &chars,
        |s| (s.len() >= 2 && is_stop(s[0]) && is_close_quote(s[1])).then_some(2),
        |c| !matches!(c, '，' | '。' | '！' | '？' | '?'),
    );
    chars.into_iter().collect()
}

/// `re.sub("(HEAD)(NEXT)", r"\1\n\2", s)` for a fixed-length HEAD: `head(rest)` is its length
/// when it matches at the start of `rest`.
fn break_after(
    s: &[char],
    head: impl Fn(&[char]) -> Option<usize>,
    next: impl Fn(char) -> bool,
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + 8);
    let mut i = 0;
    while i < s.len() {
        if let Some(k) = head(&s[i..]) {
            if i + k < s.len() && next(s[i + k]) {
                out.extend_from_slice(&s[i..i + k]);
                out.push('\n');
                out.push(s[i + k]);
                i += k + 1;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// `Some(n)` when `s` starts with `n` copies of `c`.
fn repeated(s: &[char], c: char, n: usize) -> Option<usize> {
    (s.len() >= n && s[..n].iter().all(|&x| x == c)).then_some(n)
}

fn is_stop(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '?')
}

fn is_close_quote(c: char) -> bool {
    matches!(c, '”' | '’')
}

fn not_close_quote(c: char) -> bool {
    !is_close_quote(c)
}

// ---------------------------------------------------------------------------------------------
// BLEU (nltk 3.10 `sentence_bleu([reference], hypothesis, smoothing_function=method3)`)
// ---------------------------------------------------------------------------------------------

/// Sentence BLEU-4 (0..1) of `hypothesis` against the one `reference`, both token sequences
/// (LF passes characters), with nltk's uniform weights and `SmoothingFunction().method3`.
///
/// For n = 1..4 the clipped precision is `m_n / d_n`: `m_n` = sum over the hypothesis n-grams
/// of `min(count in hypothesis, count in reference)`, `d_n = max(1, number of hypothesis
/// n-grams)`. No unigram match at all gives 0. Otherwise, with `c = |hypothesis|`,
/// `r = |reference|`:
///
/// ```text
/// p_n  = m_n / d_n                    if m_n > 0
///      = 1 / (2^k * d_n)              else; k = 1, 2, .. counting the zero orders (method3)
/// BP   = 1 if c > r, else exp(1 - r / c)
/// BLEU = BP * exp(fsum(0.25 * ln p_n))
/// ```
pub fn sentence_bleu<T: Eq + std::hash::Hash>(reference: &[T], hypothesis: &[T]) -> f64 {
    let orders: Vec<(usize, usize)> = (1..=4)
        .map(|n| modified_precision(reference, hypothesis, n))
        .collect();
    if orders[0].0 == 0 {
        return 0.0;
    }
    let mut zero_orders = 0;
    let log_terms: Vec<f64> = orders
        .iter()
        .map(|&(matches, total)| {
            let p = if matches > 0 {
                matches as f64 / total as f64
            } else {
                zero_orders += 1;
                1.0 / ((1usize << zero_orders) * total) as f64
            };
            0.25 * p.ln()
        })
        .collect();
    brevity_penalty(reference.len(), hypothesis.len()) * fsum(&log_terms).exp()
}

/// `(clipped matches, max(1, hypothesis n-gram count))` for order `n`.
fn modified_precision<T: Eq + std::hash::Hash>(
    reference: &[T],
    hypothesis: &[T],
    n: usize,
) -> (usize, usize) {
    let hyp_counts = ngram_counts(hypothesis, n);
    let ref_counts = ngram_counts(reference, n);
    let matches = hyp_counts
        .iter()
        .map(|(gram, &count)| count.min(ref_counts.get(gram).copied().unwrap_or(0)))
        .sum();
    let total = hyp_counts.values().sum::<usize>().max(1);
    (matches, total)
}

/// How often each n-gram occurs (none when the sequence is shorter than `n`).
fn ngram_counts<T: Eq + std::hash::Hash>(seq: &[T], n: usize) -> HashMap<&[T], usize> {
    let mut counts = HashMap::new();
    for gram in seq.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

/// nltk's brevity penalty with one reference: 1 when the hypothesis is longer, 0 when it is
/// empty, else `exp(1 - r / c)`.
fn brevity_penalty(ref_len: usize, hyp_len: usize) -> f64 {
    if hyp_len > ref_len {
        1.0
    } else if hyp_len == 0 {
        0.0
    } else {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_ties_to_even_on_exact_values() {
        assert_eq!(py_round4(0.03125), 0.0312);
        assert_eq!(py_round4(0.15625), 0.1562);
        assert_eq!(py_round4(57.142857142857146), 57.1429);
    }

    #[test]
    fn fsum_is_exact() {
        assert_eq!(fsum(&[1e100, 1.0, -1e100, 1e-100]), 1.0);
        assert_eq!(fsum(&[0.1; 10]), 1.0);
        assert_eq!(fsum(&[]), 0.0);
    }

    #[test]
    fn numpy_pairwise_mean() {
        let v: Vec<f64> = (0..300).map(|i| (i as f64) * 0.1).collect();
        assert!((np_mean(&v) - 14.95).abs() < 1e-12);
        assert!(np_mean(&[]).is_nan());
    }

    #[test]
    fn jieba_python_splits() {
        assert_eq!(
            jieba_cut("我来到北京清华大学"),
            ["我", "来到", "北京", "清华大学"]
        );
        assert_eq!(
            jieba_cut("well-known v1.2.3"),
            ["well", "-", "known", " ", "v1.2", ".", "3"]
        );
        assert_eq!(jieba_cut("𠀀𠀁"), ["𠀀", "𠀁"]);
        assert_eq!(jieba_cut("a\r\nb"), ["a", "\r\n", "b"]);
    }

    #[test]
    fn bleu_one_character() {
        // p = 1, 1/2, 1/4, 1/8 -> 64^-1/4
        let s = sentence_bleu(&['好'], &['好']);
        assert!((s - 64f64.powf(-0.25)).abs() < 1e-15);
    }
}
