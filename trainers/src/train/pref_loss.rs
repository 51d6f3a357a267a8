//! The preference losses of `stage: dpo` on per-example sequence log-probs, as LLaMA-Factory
//! 0.9.5's `CustomDPOTrainer.compute_preference_loss` defines them, with each `pref_loss`
//! computed as it is defined (LF with its pinned TRL silently computes `sigmoid` for `hinge`,
//! `ipo` and `kto_pair`; lmf does not copy that bug):
//!
//! With a reference model, `z = (π_c − π_r) − (ref_c − ref_r)` and (TRL's `dpo_loss`):
//! - sigmoid: `−(1−ε)·logσ(βz) − ε·logσ(−βz)` (ε = `dpo_label_smoothing`);
//! - hinge (SLiC): `relu(1 − βz)`;
//! - ipo: `(z − 1/(2β))²` (log-probs averaged over the response, see [`length_normalized`]);
//! - kto_pair (TRL ≤ 0.8, the HALOs paper eqn 7): with `KL_c = clamp(mean(π_c − ref_c), 0)`
//!   and `KL_r = clamp(mean(π_r − ref_r), 0)` over the batch, the `2B` losses
//!   `1 − σ(β((π_c − ref_c) − KL_r))` then `1 − σ(β(KL_c − (π_r − ref_r)))`;
//!
//! and rewards `β·(π − ref)`, detached. Without one (LF's own methods, length-averaged):
//! - orpo: `−c + β·(−logσ(log_odds))`, `log_odds = (c − r) − (log(1 − e^c) − log(1 − e^r))`;
//! - simpo: `−logσ(β(c − r) − γ)` (γ = `simpo_gamma`);
//!
//! and rewards `β·π`, detached. Every input is `[B]` (one sequence log-prob per example).

use lmf_autograd::{record1, Result, Tensor, Var};

use crate::args::finetuning::PrefLoss;

/// The settings of the preference loss (`pref_loss`, `pref_beta`, `dpo_label_smoothing`,
/// `simpo_gamma`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrefLossConfig {
    /// Which loss.
    pub loss: PrefLoss,
    /// β (`pref_beta`).
    pub beta: f64,
    /// ε of the sigmoid loss (`dpo_label_smoothing`).
    pub label_smoothing: f64,
    /// γ of SimPO (`simpo_gamma`).
    pub simpo_gamma: f64,
}

/// Per-example losses and the detached rewards LF logs (`rewards/chosen`, `rewards/rejected`).
pub struct PrefTerms {
    /// `[B]`, or `[2B]` for kto_pair (chosen half, then rejected half); the loss is their mean.
    pub losses: Var,
    /// `[B]`, no gradient.
    pub chosen_rewards: Var,
    /// `[B]`, no gradient.
    pub rejected_rewards: Var,
}

/// Whether the loss compares with a reference model (all but orpo and simpo).
pub fn uses_reference(loss: PrefLoss) -> bool {
    !matches!(loss, PrefLoss::Orpo | PrefLoss::Simpo)
}

/// Whether LF averages the sequence log-probs over the response tokens for this loss (ipo,
/// orpo, simpo) instead of summing them.
pub fn length_normalized(loss: PrefLoss) -> bool {
    matches!(loss, PrefLoss::Ipo | PrefLoss::Orpo | PrefLoss::Simpo)
}

/// `log σ(x)` of a small `[n]` (or scalar) variable, elementwise and without overflow:
/// `min(x, 0) − ln(1 + e^{−|x|})`, with the exact gradient `σ(−x)` (also at `x = 0`, where a
/// composition of `relu`s would give 0 and stall a DPO step whose policy equals its
/// reference). Computed on the host in f64: the inputs are per-sequence values.
pub fn log_sigmoid(x: &Var) -> Result<Var> {
    let t = x.tensor();
    let (dtype, device, shape) = (t.dtype(), t.device(), t.shape().to_vec());
    let xs = t.to_vec::<f64>()?;
    let ys: Vec<f64> = xs
        .iter()
        .map(|&v| v.min(0.0) - (-v.abs()).exp().ln_1p())
        .collect();
    let out = Tensor::from_vec(ys, &shape, device)?.to_dtype(dtype)?;
    Ok(record1(
        "log_sigmoid",
        &[x],
        out,
        vec![t.clone()],
        move |ctx| {
            let g = ctx.grad(0).to_vec::<f64>()?;
            let xs = ctx.saved(0).to_vec::<f64>()?;
            let dx: Vec<f64> = g
                .iter()
                .zip(&xs)
                .map(|(g, &v)| g / (1.0 + v.exp())) // σ(−x) = 1 / (1 + e^x)
                .collect();
            let shape = ctx.saved(0).shape().to_vec();
            let dx = Tensor::from_vec(dx, &shape, device)?.to_dtype(dtype)?;
            Ok(vec![Some(dx)])
        },
    ))
}

/// The losses and rewards of `cfg.loss` for policy log-probs `chosen`, `rejected` and, for the
/// losses that use one, the reference model's `ref_chosen`, `ref_rejected` (constants).
pub fn preference_losses(
    cfg: &PrefLossConfig,
    chosen: &Var,
    rejected: &Var,
    reference: Option<(&Var, &Var)>,
) -> Result<PrefTerms> {
    let beta = cfg.beta;
    if !uses_reference(cfg.loss) {
        let losses = match cfg.loss {
            PrefLoss::Orpo => {
                // log(1 − e^p) of a (negative) mean log-prob p.
                let log1m = |p: &Var| p.exp()?.affine(-1.0, 1.0)?.log();
                let log_odds = chosen
                    .sub(rejected)?
                    .sub(&log1m(chosen)?.sub(&log1m(rejected)?)?)?;
                chosen.neg()?.add(&log_sigmoid(&log_odds)?.scale(-beta)?)?
            }
            _ => {
                let logits = chosen.sub(rejected)?.affine(beta, -cfg.simpo_gamma)?;
                log_sigmoid(&logits)?.neg()?
            }
        };
        return Ok(PrefTerms {
            losses,
            chosen_rewards: chosen.detach().scale(beta)?,
            rejected_rewards: rejected.detach().scale(beta)?,
        });
    }
    let Some((ref_c, ref_r)) = reference else {
        return Err(lmf_runtime::Error::invalid(
            "preference_losses",
            format!(
                "pref_loss {} needs the reference model's log-probs",
                cfg.loss.as_str()
            ),
        ));
    };
    let ratio_c = chosen.sub(ref_c)?; // π_c − ref_c: [B]
    let ratio_r = rejected.sub(ref_r)?;
    let z = ratio_c.sub(&ratio_r)?;
    let losses = match cfg.loss {
        PrefLoss::Sigmoid => {
            let eps = cfg.label_smoothing;
            let pos = log_sigmoid(&z.scale(beta)?)?.scale(-(1.0 - eps))?;
            if eps == 0.0 {
                pos
            } else {
                pos.sub(&log_sigmoid(&z.scale(-beta)?)?.scale(eps)?)?
            }
        }
        PrefLoss::Hinge => z.affine(-beta, 1.0)?.relu()?,
        PrefLoss::Ipo => z.affine(1.0, -1.0 / (2.0 * beta))?.sqr()?,
        _ => {
            // kto_pair: each half's KL is estimated on the other half (not detached, as TRL).
            let kl_c = ratio_c.mean_all()?.clamp(0.0, f64::INFINITY)?;
            let kl_r = ratio_r.mean_all()?.clamp(0.0, f64::INFINITY)?;
            let b = ratio_c.shape()[0];
            let one_minus_sigmoid = |x: &Var| x.scale(beta)?.sigmoid()?.affine(-1.0, 1.0);
            let c = one_minus_sigmoid(&ratio_c.sub(&kl_r.broadcast_as(&[b])?)?)?;
            let r = one_minus_sigmoid(&kl_c.broadcast_as(&[b])?.sub(&ratio_r)?)?;
            Var::cat(&[&c, &r], 0)?
        }
    };
    Ok(PrefTerms {
        losses,
        chosen_rewards: ratio_c.detach().scale(beta)?,
        rejected_rewards: ratio_r.detach().scale(beta)?,
    })
}

/// The KTO loss of `stage: kto` (TRL's `KTOTrainer.kto_loss`, `loss_type: kto`, which
/// LLaMA-Factory 0.9.5 calls), its rewards and the KL estimate.
pub struct KtoTerms {
    /// `[n_desirable + n_undesirable]`: the weighted desirable losses, then the undesirable
    /// ones; the loss is their mean.
    pub losses: Var,
    /// `β·(π − ref)` of the desirable rows, detached (`None` when the batch has none).
    pub chosen_rewards: Option<Var>,
    /// `β·(π − ref)` of the undesirable rows, detached (`None` when the batch has none).
    pub rejected_rewards: Option<Var>,
    /// `clamp(mean(π_KL − ref_KL), 0)`, detached.
    pub kl: f64,
}

/// The KTO settings (`pref_beta`, `kto_chosen_weight`, `kto_rejected_weight`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KtoConfig {
    /// β.
    pub beta: f64,
    /// Weight of the desirable rows' losses.
    pub desirable_weight: f64,
    /// Weight of the undesirable rows' losses.
    pub undesirable_weight: f64,
}

/// KTO on sequence log-probs: `chosen` / `rejected` are the policy's log-probs of the
/// desirable / undesirable rows (`None` for an empty side), `ref_*` the reference model's
/// (constants), and `kl` the (policy, reference) log-probs of the mismatched KL rows.
/// `KL = clamp(mean(π_KL − ref_KL), 0)`, detached; desirable: `w_d·(1 − σ(β((π − ref) − KL)))`;
/// undesirable: `w_u·(1 − σ(β(KL − (π − ref))))`.
pub fn kto_losses(
    cfg: &KtoConfig,
    chosen: Option<(&Var, &Var)>,
    rejected: Option<(&Var, &Var)>,
    kl: (&Var, &Var),
) -> Result<KtoTerms> {
    let kl_est = kl.0.sub(kl.1)?.detach().mean_all()?;
    let kl_value = kl_est.tensor().to_scalar::<f64>()?.max(0.0);
    let beta = cfg.beta;
    let mut parts = Vec::new();
    let mut side = |pair: Option<(&Var, &Var)>, desirable: bool| -> Result<Option<Var>> {
        let Some((policy, reference)) = pair else {
            return Ok(None);
        };
        let ratio = policy.sub(reference)?;
        // 1 − σ(β(ratio − KL)) for desirable rows, 1 − σ(β(KL − ratio)) for undesirable ones.
        let (sign, weight) = if desirable {
            (1.0, cfg.desirable_weight)
        } else {
            (-1.0, cfg.undesirable_weight)
        };
        let arg = ratio.affine(sign * beta, -sign * beta * kl_value)?;
        parts.push(arg.sigmoid()?.affine(-weight, weight)?);
        Ok(Some(ratio.detach().scale(beta)?))
    };
    let chosen_rewards = side(chosen, true)?;
    let rejected_rewards = side(rejected, false)?;
    let refs: Vec<&Var> = parts.iter().collect();
    let losses = match refs.len() {
        0 => {
            return Err(lmf_runtime::Error::invalid(
                "kto_losses",
                "a batch needs desirable or undesirable rows",
            ))
        }
        1 => parts[0].clone(),
        _ => Var::cat(&refs, 0)?,
    };
    Ok(KtoTerms {
        losses,
        chosen_rewards,
        rejected_rewards,
        kl: kl_value,
    })
}
