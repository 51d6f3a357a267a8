//! The tape: one `Node` per recorded op, holding the tensors its backward needs and the
//! backward itself (output grads -> input grads).
//!
//! Design: there is no global tape. Each op's output vars point (through `Arc`) at their
//! node, and each node points at its inputs' graph identities (`Meta`, no data). `backward`
//! walks these links from the loss and sorts the reachable nodes topologically. Why:
//! - memory follows ownership: when the last var of a sub-graph drops, its nodes and saved
//!   tensors are freed at once (no tape to clear, nothing leaks across steps);
//! - a node keeps only what its op explicitly saved, never its inputs' data by default;
//! - gradient checkpointing is one ordinary node whose backward builds and walks a private
//!   sub-graph; independent graphs on different threads never share state.

use crate::backward::Grads;
use crate::grad_mode::is_grad_enabled;
use crate::var::{Meta, Var};
use lmf_runtime::{DType, Device, Error, Result, Tensor};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// A node's backward: reads the output grads and saved tensors from the context, returns
/// one optional grad per input (`None`: no gradient, e.g. the input does not need one).
pub type BackwardFn =
    Box<dyn Fn(&mut BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// One recorded op.
pub(crate) struct Node {
    /// The op's name (for errors and debugging).
    pub(crate) name: &'static str,
    /// Graph identities of the inputs, in the order the backward returns their grads.
    pub(crate) inputs: Vec<Arc<Meta>>,
    /// Tensors kept for the backward (counted by `tape_stats`), with the backward itself
    /// (which may hold tensors of its own). A releasing backward
    /// ([`Var::backward_releasing`]) takes both out once the node has run, so a step's
    /// activations are freed while its backward proceeds.
    pub(crate) work: Mutex<NodeWork>,
    /// Shape, dtype and device of each output (to zero-fill outputs that got no grad).
    pub(crate) outputs: Vec<(Vec<usize>, DType, Device)>,
}

/// What a node's backward needs: gone (`backward: None`) after a releasing backward ran it.
pub(crate) struct NodeWork {
    pub(crate) saved: Vec<Tensor>,
    pub(crate) backward: Option<BackwardFn>,
}

impl Node {
    /// The node's saved tensors and backward (a poisoned lock only means another backward
    /// panicked; the data is still whole).
    pub(crate) fn work(&self) -> MutexGuard<'_, NodeWork> {
        self.work.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Node {
    /// Frees a long chain iteratively: the default recursive drop (node -> input meta ->
    /// its node -> ...) could overflow the stack on a deep graph.
    fn drop(&mut self) {
        let mut stack: Vec<Arc<Meta>> = std::mem::take(&mut self.inputs);
        while let Some(meta) = stack.pop() {
            let Ok(mut meta) = Arc::try_unwrap(meta) else {
                continue;
            };
            if let Some(origin) = meta.origin.take() {
                if let Ok(mut node) = Arc::try_unwrap(origin.node) {
                    stack.append(&mut node.inputs);
                }
            }
        }
    }
}

/// What a backward sees: the grads of the node's outputs, its saved tensors, which inputs
/// need a grad, and the backward's grad store (for leaves reached outside the inputs, as
/// in a checkpoint's recompute).
pub struct BackwardCtx<'a> {
    pub(crate) grads: &'a [Tensor],
    pub(crate) saved: &'a [Tensor],
    pub(crate) needs: &'a [bool],
    pub(crate) store: &'a mut Grads,
}

impl BackwardCtx<'_> {
    /// The grad of output `i` (zeros when that output received none).
    pub fn grad(&self, i: usize) -> &Tensor {
        &self.grads[i]
    }

    /// The grads of all outputs.
    pub fn grads(&self) -> &[Tensor] {
        self.grads
    }

    /// Saved tensor `i`.
    pub fn saved(&self, i: usize) -> &Tensor {
        &self.saved[i]
    }

    /// All saved tensors.
    pub fn saved_all(&self) -> &[Tensor] {
        self.saved
    }

    /// Whether input `i` needs a grad (skip computing it otherwise).
    pub fn needs(&self, i: usize) -> bool {
        self.needs[i]
    }

    /// The grad store of the running backward: grads of leaves that are not inputs of this
    /// node (a checkpointed function's closed-over params) are accumulated here.
    pub fn store(&mut self) -> &mut Grads {
        self.store
    }
}

/// `Some(f())` when `need`, else `None`: the usual shape of a per-input grad.
pub fn grad_if(need: bool, f: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
    if need {
        f().map(Some)
    } else {
        Ok(None)
    }
}

/// Whether an op on `inputs` would be recorded (grad mode on and some input needs grad);
/// ops use it to skip work that only the backward needs.
pub fn will_record(inputs: &[&Var]) -> bool {
    is_grad_enabled() && inputs.iter().any(|v| v.requires_grad())
}

/// Records one op with several outputs: returns the output vars, linked to a new node when
/// `will_record(inputs)`, else plain constants (the saved tensors are dropped at once).
pub fn record(
    name: &'static str,
    inputs: &[&Var],
    outputs: Vec<Tensor>,
    saved: Vec<Tensor>,
    backward: impl Fn(&mut BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Vec<Var> {
    if !will_record(inputs) {
        return outputs.into_iter().map(Var::constant).collect();
    }
    record_node(name, inputs, outputs, saved, backward)
}

/// Records a node unconditionally (the caller decided that its outputs need grad).
pub(crate) fn record_node(
    name: &'static str,
    inputs: &[&Var],
    outputs: Vec<Tensor>,
    saved: Vec<Tensor>,
    backward: impl Fn(&mut BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Vec<Var> {
    let node = Arc::new(Node {
        name,
        inputs: inputs.iter().map(|v| v.meta.clone()).collect(),
        work: Mutex::new(NodeWork {
            saved,
            backward: Some(Box::new(backward)),
        }),
        outputs: outputs
            .iter()
            .map(|t| (t.shape().to_vec(), t.dtype(), t.device()))
            .collect(),
    });
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, t)| Var::from_node(t, node.clone(), i))
        .collect()
}

/// Records one op with a single output (see [`record`]).
pub fn record1(
    name: &'static str,
    inputs: &[&Var],
    output: Tensor,
    saved: Vec<Tensor>,
    backward: impl Fn(&mut BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Var {
    let mut out = record(name, inputs, vec![output], saved, backward);
    out.pop().expect("record returns one var per output")
}

/// What the graph behind some vars holds alive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapeStats {
    /// Recorded nodes reachable from the vars.
    pub nodes: usize,
    /// Distinct storages saved by those nodes.
    pub saved_tensors: usize,
    /// Bytes of those storages (each counted once, even if saved by several nodes).
    pub saved_bytes: usize,
}

/// Counts the nodes and saved-tensor bytes reachable from `roots` (what a backward from
/// them would keep alive until the vars drop).
pub fn tape_stats(roots: &[&Var]) -> TapeStats {
    let mut seen_nodes: HashSet<*const Node> = HashSet::new();
    let mut seen_storage: HashSet<*const lmf_runtime::Storage> = HashSet::new();
    let mut stats = TapeStats::default();
    let mut stack: Vec<&Arc<Node>> = roots
        .iter()
        .filter_map(|v| v.meta.origin.as_ref().map(|o| &o.node))
        .collect();
    while let Some(node) = stack.pop() {
        if !seen_nodes.insert(Arc::as_ptr(node)) {
            continue;
        }
        stats.nodes += 1;
        for t in &node.work().saved {
            if seen_storage.insert(t.storage() as *const _) {
                stats.saved_tensors += 1;
                stats.saved_bytes += t.storage().len() * t.dtype().size_in_bytes();
            }
        }
        stack.extend(
            node.inputs
                .iter()
                .filter_map(|m| m.origin.as_ref().map(|o| &o.node)),
        );
    }
    stats
}

/// The error for a backward that broke its own contract (an autograd bug, not a user's).
pub(crate) fn contract_error(name: &'static str, msg: String) -> Error {
    Error::invalid("backward", format!("op {name}: {msg}"))
}
