//! Gradient checkpointing: run a function without keeping its activations, record ONE node
//! that keeps only the inputs, and recompute the function during backward.
//!
//! The node's backward re-runs `f` on detached copies of the inputs with grad enabled and
//! the RNG cursor rewound to where the forward started (so dropout masks match), then
//! backpropagates the incoming output grads through that private sub-graph. The grads of
//! the detached inputs become the node's input grads; the grads of leaves that `f` closes
//! over (the layer's params) are accumulated straight into the running backward's store,
//! so they reach the outer `Grads` exactly as without checkpointing.
//!
//! `f` should close over leaves (params) only and take every activation through `inputs`:
//! a captured non-leaf would be backpropagated through its outer history from inside the
//! recompute as well (still correct, but that history is walked twice).

use crate::backward::{run, Grads};
use crate::grad_mode::{enable_grad, is_grad_enabled, no_grad};
use crate::rng::{rng_state, set_rng_state};
use crate::tape::{contract_error, record_node};
use crate::var::Var;
use lmf_runtime::{Result, Tensor};
use std::sync::Arc;

/// Runs `f(inputs)` as one checkpointed node: only `inputs` stay alive until backward,
/// where `f` is recomputed (see the module doc).
pub fn checkpoint<F>(f: F, inputs: &[Var]) -> Result<Vec<Var>>
where
    F: Fn(&[Var]) -> Result<Vec<Var>> + Send + Sync + 'static,
{
    let rng_at_forward = rng_state();
    let input_refs: Vec<&Var> = inputs.iter().collect();
    let outputs: Vec<Tensor> = if !is_grad_enabled() {
        return f(inputs);
    } else if inputs.iter().any(Var::requires_grad) {
        no_grad(|| f(inputs))?
            .into_iter()
            .map(Var::into_tensor)
            .collect()
    } else {
        // No input needs grad, but `f` may close over params (e.g. LoRA layers on frozen
        // activations): run it recording once to learn that, then drop its sub-graph.
        let outs = f(inputs)?;
        if !outs.iter().any(Var::requires_grad) {
            return Ok(outs);
        }
        outs.into_iter().map(Var::into_tensor).collect()
    };
    let saved: Vec<Tensor> = inputs.iter().map(|v| v.tensor().clone()).collect();
    let n_out = outputs.len();
    let f = Arc::new(f);
    let outs = record_node("checkpoint", &input_refs, outputs, saved, move |ctx| {
        let leaves: Vec<Var> = ctx
            .saved_all()
            .iter()
            .enumerate()
            .map(|(i, t)| Var::leaf(t.clone(), ctx.needs(i)))
            .collect();
        let now = rng_state();
        set_rng_state(rng_at_forward);
        let recomputed = enable_grad(|| f(&leaves));
        set_rng_state(now);
        let recomputed = recomputed?;
        if recomputed.len() != n_out {
            return Err(contract_error(
                "checkpoint",
                format!(
                    "recompute returned {} outputs, forward {n_out}",
                    recomputed.len()
                ),
            ));
        }
        let roots = recomputed
            .iter()
            .zip(ctx.grads())
            .filter(|(v, _)| v.requires_grad())
            .map(|(v, g)| (v.meta.clone(), g.clone()))
            .collect();
        let mut inner = Grads::new();
        run(roots, &mut inner)?;
        let input_grads = leaves.iter().map(|l| inner.remove(l)).collect();
        ctx.store().merge(inner)?;
        Ok(input_grads)
    });
    Ok(outs)
}
