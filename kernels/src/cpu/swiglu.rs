//! Gated linear unit activation of the MLP: `out = act(gate) · up`, elementwise over the
//! flattened `[n]` buffers. `act` is SiLU (Llama's SwiGLU) or tanh-approximated GELU
//! (Gemma's GeGLU, torch `gelu_pytorch_tanh`).

use rayon::prelude::*;

use crate::Real;

/// Elements per parallel task: big enough that rayon overhead is negligible.
const CHUNK: usize = 1 << 14;

/// sqrt(2 / pi), the tanh-GELU input scale.
const GELU_K: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of tanh-GELU.
const GELU_C: f64 = 0.044715;

/// The activation applied to `gate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GluActivation {
    /// `silu(g) = g · sigmoid(g)` (SwiGLU: Llama, Qwen, Mistral).
    Silu,
    /// `0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g³)))` (GeGLU: Gemma).
    GeluTanh,
}

/// `(act(g), act'(g))` for one element.
#[inline(always)]
fn act_and_grad<T: Real>(act: GluActivation, g: T) -> (T, T) {
    let one = T::one();
    match act {
        GluActivation::Silu => {
            // 1/(1+e^-g) saturates cleanly: e^-g = inf gives s = 0, never NaN.
            let s = (one + (-g).exp()).recip();
            (g * s, s * (one + g * (one - s)))
        }
        GluActivation::GeluTanh => {
            let (k, c, half) = (T::of(GELU_K), T::of(GELU_C), T::of(0.5));
            let g2 = g * g;
            let t = (k * g * (one + c * g2)).tanh();
            let f = half * g * (one + t);
            // d/dg: 0.5 (1 + t) + 0.5 g (1 - t²) · k (1 + 3c g²)
            let df = half * (one + t) + half * g * (one - t * t) * k * (one + T::of(3.0) * c * g2);
            (f, df)
        }
    }
}

/// GLU forward: `out[i] = act(gate[i]) · up[i]`, all `[n]`.
pub fn glu_forward<T: Real>(act: GluActivation, gate: &[T], up: &[T], out: &mut [T]) {
    assert!(
        gate.len() == up.len() && out.len() == gate.len(),
        "glu: gate/up/out length"
    );
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK))
        .zip(up.par_chunks(CHUNK))
        .for_each(|((o, g), u)| {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = act_and_grad(act, g).0 * u;
            }
        });
}

/// GLU backward: from `dout: [n]` writes `dgate = dout · up · act'(gate)` and
/// `dup = dout · act(gate)` (overwritten, not accumulated).
pub fn glu_backward<T: Real>(
    act: GluActivation,
    dout: &[T],
    gate: &[T],
    up: &[T],
    dgate: &mut [T],
    dup: &mut [T],
) {
    let n = gate.len();
    assert!(
        up.len() == n && dout.len() == n && dgate.len() == n && dup.len() == n,
        "glu: backward lengths"
    );
    dgate
        .par_chunks_mut(CHUNK)
        .zip(dup.par_chunks_mut(CHUNK))
        .zip(dout.par_chunks(CHUNK))
        .zip(gate.par_chunks(CHUNK))
        .zip(up.par_chunks(CHUNK))
        .for_each(|((((dg, du), d), g), u)| {
            for ((((dg, du), &d), &g), &u) in dg.iter_mut().zip(du).zip(d).zip(g).zip(u) {
                let (a, da) = act_and_grad(act, g);
                *dg = d * u * da;
                *du = d * a;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, Lcg};

    const N: usize = 101;
    const ACTS: [GluActivation; 2] = [GluActivation::Silu, GluActivation::GeluTanh];

    fn loss(act: GluActivation, gate: &[f64], up: &[f64], wts: &[f64]) -> f64 {
        let mut out = vec![0.0; gate.len()];
        glu_forward(act, gate, up, &mut out);
        out.iter().zip(wts).map(|(a, b)| a * b).sum()
    }

    #[test]
    fn forward_matches_definition() {
        let mut rng = Lcg::new(1);
        let gate: Vec<f64> = rand_vec(&mut rng, N, 4.0);
        let up: Vec<f64> = rand_vec(&mut rng, N, 2.0);
        let mut out = vec![0.0; N];
        glu_forward(GluActivation::Silu, &gate, &up, &mut out);
        let want: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        assert_close("silu", &out, &want, 1e-14, 1e-13);
        glu_forward(GluActivation::GeluTanh, &gate, &up, &mut out);
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let want: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| 0.5 * g * (1.0 + (k * (g + 0.044715 * g * g * g)).tanh()) * u)
            .collect();
        assert_close("gelu_tanh", &out, &want, 1e-14, 1e-13);
        // Known values: silu(1) = 0.7310585786, gelu_tanh(1) = 0.8411919906.
        let mut o = [0f64];
        glu_forward(GluActivation::Silu, &[1.0], &[1.0], &mut o);
        assert!((o[0] - 0.731_058_578_6).abs() < 1e-9);
        glu_forward(GluActivation::GeluTanh, &[1.0], &[1.0], &mut o);
        assert!((o[0] - 0.841_191_990_6).abs() < 1e-9);
    }

    #[test]
    fn grad_check_both_activations() {
        for (i, act) in ACTS.into_iter().enumerate() {
            let mut rng = Lcg::new(10 + i as u64);
            let gate: Vec<f64> = rand_vec(&mut rng, N, 4.0);
            let up: Vec<f64> = rand_vec(&mut rng, N, 2.0);
            let wts: Vec<f64> = rand_vec(&mut rng, N, 1.0);
            let (mut dg, mut du) = (vec![0.0; N], vec![0.0; N]);
            glu_backward(act, &wts, &gate, &up, &mut dg, &mut du);
            check_grad("dgate", &gate, &dg, |g| loss(act, g, &up, &wts));
            check_grad("dup", &up, &du, |u| loss(act, &gate, u, &wts));
        }
    }

    #[test]
    fn saturates_without_nan_f32() {
        let gate = [-1e4f32, -100.0, 100.0, 1e4];
        let up = [1.0f32; 4];
        for act in ACTS {
            let mut out = [0f32; 4];
            glu_forward(act, &gate, &up, &mut out);
            let (mut dg, mut du) = ([0f32; 4], [0f32; 4]);
            glu_backward(act, &up, &gate, &up, &mut dg, &mut du);
            assert!(out.iter().chain(&dg).all(|v| v.is_finite()), "{act:?}");
            assert!(
                out[0].abs() < 1e-6 && (out[3] - 1e4).abs() < 1e-2,
                "{act:?}"
            );
            assert!(dg[0].abs() < 1e-6 && (dg[3] - 1.0).abs() < 1e-6, "{act:?}");
        }
    }

    #[test]
    fn large_parallel_matches_f64() {
        // n spans several chunks (and a ragged tail).
        let n = 3 * CHUNK + 17;
        let mut rng = Lcg::new(4);
        let gate: Vec<f64> = rand_vec(&mut rng, n, 5.0);
        let up: Vec<f64> = rand_vec(&mut rng, n, 1.0);
        for act in ACTS {
            let mut out = vec![0.0; n];
            glu_forward(act, &gate, &up, &mut out);
            let gf: Vec<f32> = gate.iter().map(|&v| v as f32).collect();
            let uf: Vec<f32> = up.iter().map(|&v| v as f32).collect();
            let mut of = vec![0f32; n];
            glu_forward(act, &gf, &uf, &mut of);
            let of: Vec<f64> = of.iter().map(|&v| v as f64).collect();
            assert_close("glu f32", &of, &out, 1e-6, 1e-5);
            assert_eq!(out[n - 1], act_and_grad(act, gate[n - 1]).0 * up[n - 1]);
        }
    }
}
