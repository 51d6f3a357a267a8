//! Global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_` (what the HF Trainer calls
//! with `max_grad_norm`): the 2-norm of all gradients together, then every gradient scaled by
//! `min(1, max_norm / (norm + 1e-6))`. The norm is returned before clipping (HF logs it).

use std::collections::HashMap;

/// Clips `grads` in place to a global 2-norm of at most `max_norm` and returns the norm they
/// had. Like torch, each gradient's norm is taken in fp32 and the total from those norms; the
/// scale is applied even when it is 1 (a no-op multiply). A non-finite norm is returned as is
/// (torch then multiplies by NaN; the caller reports it).
pub fn clip_grad_norm(grads: &mut HashMap<String, Vec<f32>>, max_norm: f64) -> f32 {
    let total = grad_norm(grads);
    if max_norm > 0.0 {
        let coef = (max_norm as f32 / (total + 1e-6)).min(1.0);
        for g in grads.values_mut() {
            g.iter_mut().for_each(|x| *x *= coef);
        }
    }
    total
}

/// The global 2-norm of `grads`: per-tensor norms (accumulated in f64, rounded to f32 like
/// torch's fp32 `_foreach_norm`), then the norm of those norms.
pub fn grad_norm(grads: &HashMap<String, Vec<f32>>) -> f32 {
    let mut norms: Vec<(&String, f32)> = grads
        .iter()
        .map(|(k, g)| {
            let s: f64 = g.iter().map(|&x| (x as f64) * (x as f64)).sum();
            (k, s.sqrt() as f32)
        })
        .collect();
    // A fixed order keeps the result independent of the map's iteration order.
    norms.sort_by(|a, b| a.0.cmp(b.0));
    let s: f64 = norms.iter().map(|(_, n)| (*n as f64) * (*n as f64)).sum();
    s.sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_to_max_norm_and_reports_the_norm_before() {
        let mut g: HashMap<String, Vec<f32>> = [
            ("a".to_string(), vec![3.0f32, 0.0]),
            ("b".to_string(), vec![4.0f32]),
        ]
        .into();
        let n = clip_grad_norm(&mut g, 1.0);
        assert!((n - 5.0).abs() < 1e-6);
        let after = grad_norm(&g);
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        assert!((g["a"][0] - 0.6).abs() < 1e-6);
    }

    #[test]
    fn small_gradients_are_untouched() {
        let mut g: HashMap<String, Vec<f32>> = [("a".to_string(), vec![0.3f32, 0.4])].into();
        let n = clip_grad_norm(&mut g, 1.0);
        assert!((n - 0.5).abs() < 1e-6);
        assert_eq!(g["a"], vec![0.3, 0.4]);
    }
}
