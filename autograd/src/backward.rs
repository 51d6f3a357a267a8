//! `backward`: walks the graph behind a var in reverse topological order, calling each
//! node's backward once all its output grads are summed, and accumulates leaf grads into
//! `Grads` (summed when a leaf is used several times, broadcasting ops reduce with `sum_to`).

use crate::tape::{contract_error, BackwardCtx, Node};
use crate::var::{Meta, Var};
use lmf_runtime::{Error, Result, Tensor};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Gradients of the leaves that require grad, keyed by var id.
#[derive(Clone, Debug, Default)]
pub struct Grads {
    map: HashMap<u64, Tensor>,
}

impl Grads {
    /// An empty store.
    pub fn new() -> Grads {
        Grads::default()
    }

    /// The gradient of `var` (`None` when no gradient reached it).
    pub fn get(&self, var: &Var) -> Option<&Tensor> {
        self.map.get(&var.id())
    }

    /// The gradient of the var with id `id`.
    pub fn get_id(&self, id: u64) -> Option<&Tensor> {
        self.map.get(&id)
    }

    /// Takes the gradient of `var` out of the store.
    pub fn remove(&mut self, var: &Var) -> Option<Tensor> {
        self.map.remove(&var.id())
    }

    /// Sets the gradient of `var`, replacing any previous one.
    pub fn insert(&mut self, var: &Var, grad: Tensor) {
        self.map.insert(var.id(), grad);
    }

    /// Adds `grad` to the gradient of the var with id `id`.
    pub fn accumulate(&mut self, id: u64, grad: Tensor) -> Result<()> {
        match self.map.remove(&id) {
            Some(prev) => self.map.insert(id, prev.add(&grad)?),
            None => self.map.insert(id, grad),
        };
        Ok(())
    }

    /// Adds every gradient of `other` into this store.
    pub fn merge(&mut self, other: Grads) -> Result<()> {
        for (id, g) in other.map {
            self.accumulate(id, g)?;
        }
        Ok(())
    }

    /// The number of vars with a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no var got a gradient.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `(var id, gradient)` pairs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Tensor)> {
        self.map.iter().map(|(&id, g)| (id, g))
    }
}

impl Var {
    /// Gradients of this scalar (one element) loss with respect to every leaf that requires
    /// grad, seeding `d loss = 1`.
    pub fn backward(&self) -> Result<Grads> {
        self.walk(&self.loss_seed()?, false)
    }

    /// [`Var::backward`] that frees each node's saved tensors (and its backward) as soon as
    /// the node has run, as torch's default `retain_graph=False` does: a training step's
    /// activations are released layer by layer while its gradients are made, instead of
    /// living until the loss var drops. The graph behind this var cannot be walked again: a
    /// second backward through it is an error.
    pub fn backward_releasing(&self) -> Result<Grads> {
        self.walk(&self.loss_seed()?, true)
    }

    /// Gradients when this var's own gradient is `grad` (same shape): for non-scalar outputs.
    pub fn backward_with(&self, grad: &Tensor) -> Result<Grads> {
        self.walk(grad, false)
    }

    /// `d loss = 1` for this var, which must be a scalar (one element).
    fn loss_seed(&self) -> Result<Tensor> {
        if self.elem_count() != 1 {
            return Err(Error::shape(
                "backward",
                format!(
                    "loss must be a scalar (one element), got shape {:?}; use backward_with",
                    self.shape()
                ),
            ));
        }
        Tensor::ones(self.shape(), self.dtype(), self.device())
    }

    /// Backpropagates `grad` from this var (releasing the graph with `release`).
    fn walk(&self, grad: &Tensor, release: bool) -> Result<Grads> {
        if !self.requires_grad() {
            return Err(Error::invalid(
                "backward",
                "the output does not require grad: no param reaches it (or it was built under no_grad)",
            ));
        }
        let mut grads = Grads::new();
        run_with(vec![(self.meta.clone(), grad.clone())], &mut grads, release)?;
        Ok(grads)
    }
}

/// Gradients of several outputs at once, each with its own incoming grad; contributions to
/// a shared leaf are summed. Outputs that do not require grad are skipped.
pub fn backward_multi(roots: &[(&Var, Tensor)]) -> Result<Grads> {
    let mut grads = Grads::new();
    let roots = roots
        .iter()
        .filter(|(v, _)| v.requires_grad())
        .map(|(v, g)| (v.meta.clone(), g.clone()))
        .collect();
    run(roots, &mut grads)?;
    Ok(grads)
}

/// Map key of a node.
fn key(node: &Arc<Node>) -> *const Node {
    Arc::as_ptr(node)
}

/// Nodes reachable from `roots` through inputs that require grad, in post-order (every
/// node after all the nodes it consumes). Iterative, so deep graphs cannot overflow.
fn post_order(roots: &[(Arc<Meta>, Tensor)]) -> Vec<Arc<Node>> {
    let mut seen: HashSet<*const Node> = HashSet::new();
    let mut order = Vec::new();
    let mut stack: Vec<(Arc<Node>, usize)> = Vec::new();
    for (meta, _) in roots {
        let Some(origin) = &meta.origin else { continue };
        if !seen.insert(key(&origin.node)) {
            continue;
        }
        stack.push((origin.node.clone(), 0));
        while let Some((node, next)) = stack.last_mut() {
            if let Some(input) = node.inputs.get(*next) {
                *next += 1;
                if let (true, Some(o)) = (input.requires_grad, &input.origin) {
                    if seen.insert(key(&o.node)) {
                        let child = o.node.clone();
                        stack.push((child, 0));
                    }
                }
            } else {
                let (node, _) = stack.pop().expect("stack is non-empty");
                order.push(node);
            }
        }
    }
    order
}

/// Grads of nodes' outputs waiting for their node to run.
type Pending = HashMap<*const Node, Vec<Option<Tensor>>>;

/// Routes `grad` to `meta`: into its producing node's pending output grads, or into the
/// leaf store. Checks the grad matches the var's shape and dtype.
fn deliver(
    meta: &Meta,
    grad: Tensor,
    pending: &mut Pending,
    store: &mut Grads,
    from: &'static str,
) -> Result<()> {
    if grad.shape() != meta.shape.as_slice() || grad.dtype() != meta.dtype {
        return Err(contract_error(
            from,
            format!(
                "grad {:?} {} for a var of shape {:?} {}",
                grad.shape(),
                grad.dtype(),
                meta.shape,
                meta.dtype
            ),
        ));
    }
    match &meta.origin {
        None => store.accumulate(meta.id, grad),
        Some(o) => {
            let slot = pending
                .entry(key(&o.node))
                .or_insert_with(|| vec![None; o.node.outputs.len()]);
            let g = &mut slot[o.index];
            *g = Some(match g.take() {
                Some(prev) => prev.add(&grad)?,
                None => grad,
            });
            Ok(())
        }
    }
}

/// The engine: backpropagates `roots` (output identity, incoming grad) and accumulates the
/// leaf grads into `store`. Output grads are dropped as soon as their node has run.
pub(crate) fn run(roots: Vec<(Arc<Meta>, Tensor)>, store: &mut Grads) -> Result<()> {
    run_with(roots, store, false)
}

/// [`run`]; with `release`, each node's saved tensors and backward are dropped once it ran.
fn run_with(roots: Vec<(Arc<Meta>, Tensor)>, store: &mut Grads, release: bool) -> Result<()> {
    let order = post_order(&roots);
    let mut pending = Pending::new();
    for (meta, g) in &roots {
        deliver(meta, g.clone(), &mut pending, store, "root")?;
    }
    for node in order.iter().rev() {
        let Some(out_grads) = pending.remove(&key(node)) else {
            continue; // no gradient reached any of its outputs
        };
        let grads = out_grads
            .into_iter()
            .zip(&node.outputs)
            .map(|(g, (shape, dtype, device))| match g {
                Some(g) => Ok(g),
                None => Tensor::zeros(shape, *dtype, *device),
            })
            .collect::<Result<Vec<_>>>()?;
        let needs: Vec<bool> = node.inputs.iter().map(|m| m.requires_grad).collect();
        let mut work = node.work();
        let Some(backward) = work.backward.as_ref() else {
            return Err(Error::invalid(
                "backward",
                format!(
                    "op {}: its graph was already walked by a releasing backward \
                     (Var::backward_releasing frees it)",
                    node.name
                ),
            ));
        };
        let mut ctx = BackwardCtx {
            grads: &grads,
            saved: &work.saved,
            needs: &needs,
            store,
        };
        let in_grads = backward(&mut ctx)?;
        // the activations (and the closure's captures) are dropped after the lock is
        let released = release.then(|| (std::mem::take(&mut work.saved), work.backward.take()));
        drop(work);
        drop((released, grads));
        if in_grads.len() != node.inputs.len() {
            return Err(contract_error(
                node.name,
                format!(
                    "returned {} grads for {} inputs",
                    in_grads.len(),
                    node.inputs.len()
                ),
            ));
        }
        for (meta, g) in node.inputs.iter().zip(in_grads) {
            if let (true, Some(g)) = (meta.requires_grad, g) {
                deliver(meta, g, &mut pending, store, node.name)?;
            }
        }
    }
    // Leaf grads may be broadcast or narrowed views: hand out plain row-major tensors.
    for g in store.map.values_mut() {
        if !g.is_contiguous() {
            *g = g.contiguous()?;
        }
    }
    Ok(())
}
