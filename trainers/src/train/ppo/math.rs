//! The arithmetic of TRL 0.9.6's classic `PPOTrainer.step` on plain per-sequence vectors (the
//! response tokens of each sequence; TRL's padded tensors with a response mask hold the same
//! numbers): KL-penalised per-token rewards, GAE advantages and returns, masked whitening,
//! the adaptive KL controller and the running score moments. Computed in f64; TRL computes in
//! the model's dtype (f32 on the CPU), which agrees to ~1e-7.

/// Mean over every token of every sequence (TRL `masked_mean` with the response mask).
pub fn masked_mean(xs: &[Vec<f64>]) -> f64 {
    let (sum, n) = xs
        .iter()
        .flatten()
        .fold((0.0, 0usize), |(s, n), &x| (s + x, n + 1));
    sum / n.max(1) as f64
}

/// TRL `masked_var(unbiased=True)`: the masked mean of squared deviations times n/(n−1).
pub fn masked_var(xs: &[Vec<f64>]) -> f64 {
    let mean = masked_mean(xs);
    let centered: Vec<Vec<f64>> = xs
        .iter()
        .map(|r| r.iter().map(|&x| (x - mean) * (x - mean)).collect())
        .collect();
    let n = xs.iter().map(Vec::len).sum::<usize>() as f64;
    masked_mean(&centered) * n / (n - 1.0)
}

/// TRL `masked_whiten`: `(x − mean) / √(var + 1e-8)`, the mean added back unless
/// `shift_mean`.
pub fn masked_whiten(xs: &[Vec<f64>], shift_mean: bool) -> Vec<Vec<f64>> {
    let (mean, var) = (masked_mean(xs), masked_var(xs));
    let inv = 1.0 / (var + 1e-8).sqrt();
    xs.iter()
        .map(|r| {
            r.iter()
                .map(|&x| (x - mean) * inv + if shift_mean { 0.0 } else { mean })
                .collect()
        })
        .collect()
}

/// Per-token rewards of one sequence (TRL `compute_rewards` with `kl_penalty: kl`):
/// `−kl_coef · (logp − ref_logp)`, plus `score` on the last response token. Returns
/// (rewards, non-score rewards, kls).
pub fn token_rewards(
    score: f64,
    logprobs: &[f64],
    ref_logprobs: &[f64],
    kl_coef: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let kls: Vec<f64> = logprobs
        .iter()
        .zip(ref_logprobs)
        .map(|(a, b)| a - b)
        .collect();
    let non_score: Vec<f64> = kls.iter().map(|k| -kl_coef * k).collect();
    let mut rewards = non_score.clone();
    if let Some(last) = rewards.last_mut() {
        *last += score;
    }
    (rewards, non_score, kls)
}

/// Generalised advantage estimation over one sequence's response tokens (TRL
/// `compute_advantages` before whitening): `δ_t = r_t + γ·V_{t+1} − V_t` (`V` after the last
/// token is 0), `A_t = δ_t + γλ·A_{t+1}`, with `tail` the advantage entering after the last
/// token (0 but for TRL's whitened rewards, see [`advantages_and_returns`]); returns
/// `(advantages, returns = A + V)`.
pub fn gae(
    values: &[f64],
    rewards: &[f64],
    gamma: f64,
    lam: f64,
    tail: f64,
) -> (Vec<f64>, Vec<f64>) {
    let n = values.len();
    let mut adv = vec![0.0; n];
    let mut last = tail;
    for t in (0..n).rev() {
        let next = if t + 1 < n { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * next - values[t];
        last = delta + gamma * lam * last;
        adv[t] = last;
    }
    let returns = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

/// Advantages (whitened over the batch) and returns of every sequence, TRL's way:
/// `whiten_rewards` first whitens the rewards (mean kept), then GAE per sequence, then the
/// advantages are whitened (mean removed).
///
/// TRL whitens the rewards of its right-padded `[batch, width]` tensor, so the zero reward of
/// every position outside the response becomes `c = mean − mean/std` and the `pad_after[i]`
/// positions after response `i` (the row's padding up to the batch's longest query + response)
/// feed `c·Σ_k (γλ)^k` into its last advantages. That is reproduced here, so the numbers are
/// TRL's; without `whiten_rewards`, `c` is 0 and padding plays no part.
pub fn advantages_and_returns(
    values: &[Vec<f64>],
    rewards: &[Vec<f64>],
    gamma: f64,
    lam: f64,
    whiten_rewards: bool,
    pad_after: &[usize],
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (rewards, c) = if whiten_rewards {
        let (mean, var) = (masked_mean(rewards), masked_var(rewards));
        let c = -mean / (var + 1e-8).sqrt() + mean;
        (masked_whiten(rewards, false), c)
    } else {
        (rewards.to_vec(), 0.0)
    };
    let (adv, ret): (Vec<_>, Vec<_>) = values
        .iter()
        .zip(&rewards)
        .zip(pad_after)
        .map(|((v, r), &pad)| {
            let tail = (0..pad).rev().fold(0.0, |acc, _| c + gamma * lam * acc);
            gae(v, r, gamma, lam, tail)
        })
        .unzip();
    (masked_whiten(&adv, true), ret)
}

/// The KL coefficient: TRL's `AdaptiveKLController` (Ziegler et al.) or a fixed one.
#[derive(Clone, Debug, PartialEq)]
pub struct KlController {
    /// The current coefficient.
    pub value: f64,
    /// The KL target (`ppo_target`); `None`: fixed.
    pub target: Option<f64>,
    /// Horizon of the adaptive update.
    pub horizon: f64,
}

impl KlController {
    /// `value *= 1 + clip(kl / target − 1, ±0.2) · n_steps / horizon` (adaptive only).
    pub fn update(&mut self, kl: f64, n_steps: usize) {
        if let Some(target) = self.target {
            let err = (kl / target - 1.0).clamp(-0.2, 0.2);
            self.value *= 1.0 + err * n_steps as f64 / self.horizon;
        }
    }
}

/// TRL's `RunningMoments`: running mean and (unbiased) std of the scores, for
/// `ppo_score_norm`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningMoments {
    /// Running mean.
    pub mean: f64,
    /// Running std (unbiased).
    pub std: f64,
    /// Running variance (biased).
    pub var: f64,
    /// Scores seen (plus a 1e-24 prior).
    pub count: f64,
}

impl Default for RunningMoments {
    fn default() -> Self {
        RunningMoments {
            mean: 0.0,
            std: 1.0,
            var: 1.0,
            count: 1e-24,
        }
    }
}

impl RunningMoments {
    /// Folds in a batch of scores (Chan et al.'s parallel update, as TRL).
    pub fn update(&mut self, xs: &[f64]) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let delta = mean - self.mean;
        let tot = self.count + n;
        let old_sum = self.var * self.count + delta * delta * self.count * n / tot;
        self.mean += delta * n / tot;
        self.var = (old_sum + var * n) / tot;
        self.std = (self.var * tot / (tot - 1.0)).sqrt();
        self.count = tot;
    }

    /// `ppo_score_norm` (TRL's `use_score_scaling` + `use_score_norm`): updates the moments
    /// with `scores`, then returns `(score − mean) / (std + ε_f32)`.
    pub fn normalize(&mut self, scores: &[f64]) -> Vec<f64> {
        self.update(scores);
        let eps = f32::EPSILON as f64;
        scores
            .iter()
            .map(|s| (s - self.mean) / (self.std + eps))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gae_with_lambda_one_is_the_discounted_return_minus_value() {
        let v = [0.5, -0.25, 1.0];
        let r = [0.1, 0.2, 1.5];
        let (adv, ret) = gae(&v, &r, 1.0, 1.0, 0.0);
        // λ = γ = 1: A_t = Σ_{k≥t} r_k − V_t, returns = Σ_{k≥t} r_k
        let tail = [1.8, 1.7, 1.5];
        for t in 0..3 {
            assert!((ret[t] - tail[t]).abs() < 1e-12);
            assert!((adv[t] - (tail[t] - v[t])).abs() < 1e-12);
        }
        // λ = 0: one-step TD errors
        let (adv0, _) = gae(&v, &r, 1.0, 0.0, 0.0);
        assert!((adv0[0] - (0.1 + -0.25 - 0.5)).abs() < 1e-12);
        assert!((adv0[2] - (1.5 - 1.0)).abs() < 1e-12);
    }

    #[test]
    fn whitening_is_over_all_tokens_with_bessel() {
        let xs = vec![vec![1.0, 2.0], vec![3.0, 4.0, 5.0]];
        assert_eq!(masked_mean(&xs), 3.0);
        assert!((masked_var(&xs) - 2.5).abs() < 1e-12);
        let w = masked_whiten(&xs, true);
        assert!(masked_mean(&w).abs() < 1e-12);
        assert!((masked_var(&w) - 2.5 / (2.5 + 1e-8)).abs() < 1e-9);
        let kept = masked_whiten(&xs, false);
        assert!((masked_mean(&kept) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn score_goes_on_the_last_token() {
        let (r, ns, kl) = token_rewards(2.0, &[-1.0, -2.0], &[-1.5, -1.0], 0.1);
        assert_eq!(kl, vec![0.5, -1.0]);
        assert_eq!(ns, vec![-0.05, 0.1]);
        assert_eq!(r, vec![-0.05, 2.1]);
    }

    #[test]
    fn adaptive_kl_moves_toward_the_target() {
        let mut kl = KlController {
            value: 0.2,
            target: Some(6.0),
            horizon: 10000.0,
        };
        kl.update(12.0, 4); // error clipped to 0.2
        assert!((kl.value - 0.2 * (1.0 + 0.2 * 4.0 / 10000.0)).abs() < 1e-15);
        let before = kl.value;
        kl.update(3.0, 4); // error −0.5 clipped to −0.2
        assert!((kl.value - before * (1.0 - 0.2 * 4.0 / 10000.0)).abs() < 1e-15);
        let mut fixed = KlController {
            value: 0.2,
            target: None,
            horizon: 10000.0,
        };
        fixed.update(100.0, 4);
        assert_eq!(fixed.value, 0.2);
    }

    #[test]
    fn running_moments_match_the_batch_statistics() {
        let mut m = RunningMoments::default();
        m.update(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m.mean - 2.5).abs() < 1e-12);
        // unbiased std of the four values (the 1e-24 prior count is negligible)
        assert!((m.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-9);
        m.update(&[10.0, 12.0]);
        let all = [1.0, 2.0, 3.0, 4.0, 10.0, 12.0];
        let mean = all.iter().sum::<f64>() / 6.0;
        let var = all.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 5.0;
        assert!((m.mean - mean).abs() < 1e-12);
        assert!((m.std - var.sqrt()).abs() < 1e-9);
    }
}
