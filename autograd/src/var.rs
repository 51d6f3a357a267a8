//! `Var`: a tensor plus its identity on the tape (unique id, `requires_grad`, and a link to
//! the node that produced it). Leaves are made with `Var::param` / `Var::constant`.

use crate::tape::Node;
use lmf_runtime::{DType, Device, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Source of unique var ids (never reused, so `Grads` keyed by id cannot alias).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh unique id.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Where a non-leaf var came from: output `index` of `node`.
pub(crate) struct Origin {
    pub(crate) node: Arc<Node>,
    pub(crate) index: usize,
}

/// The graph identity of a var, without its data: nodes link to their inputs through this,
/// so the tape keeps an input's tensor alive only when an op explicitly saved it.
pub(crate) struct Meta {
    pub(crate) id: u64,
    pub(crate) requires_grad: bool,
    pub(crate) origin: Option<Origin>,
    /// Shape and dtype of the var's tensor (every grad flowing into it must match).
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
}

/// A tensor on the tape: data plus identity. Cloning is cheap and keeps the identity.
#[derive(Clone)]
pub struct Var {
    tensor: Tensor,
    pub(crate) meta: Arc<Meta>,
}

impl Var {
    /// A leaf with `requires_grad` chosen by the caller.
    pub fn leaf(tensor: Tensor, requires_grad: bool) -> Var {
        Var {
            meta: Arc::new(Meta {
                id: next_id(),
                requires_grad,
                origin: None,
                shape: tensor.shape().to_vec(),
                dtype: tensor.dtype(),
            }),
            tensor,
        }
    }

    /// A trainable leaf: `backward` produces its gradient.
    pub fn param(tensor: Tensor) -> Var {
        Var::leaf(tensor, true)
    }

    /// A constant leaf: no gradient flows into it.
    pub fn constant(tensor: Tensor) -> Var {
        Var::leaf(tensor, false)
    }

    /// Output `index` of `node` (the node records whether it needs grad).
    pub(crate) fn from_node(tensor: Tensor, node: Arc<Node>, index: usize) -> Var {
        Var {
            meta: Arc::new(Meta {
                id: next_id(),
                requires_grad: true,
                origin: Some(Origin { node, index }),
                shape: tensor.shape().to_vec(),
                dtype: tensor.dtype(),
            }),
            tensor,
        }
    }

    /// The data.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// The data, mutably (e.g. an optimizer step on a param). Tensors the tape saved keep
    /// their own storage (copy-on-write), so this never corrupts a pending backward.
    pub fn tensor_mut(&mut self) -> &mut Tensor {
        &mut self.tensor
    }

    /// Consumes the var, returning its data.
    pub fn into_tensor(self) -> Tensor {
        self.tensor
    }

    /// Same data, no history: a new constant leaf, so no gradient flows back through it.
    pub fn detach(&self) -> Var {
        Var::constant(self.tensor.clone())
    }

    /// Whether gradients flow into this var (a param, or computed from one with grad on).
    pub fn requires_grad(&self) -> bool {
        self.meta.requires_grad
    }

    /// Whether this var was made directly (`param`/`constant`/`leaf`), not by an op.
    pub fn is_leaf(&self) -> bool {
        self.meta.origin.is_none()
    }

    /// The unique id (`Grads` are keyed by it).
    pub fn id(&self) -> u64 {
        self.meta.id
    }

    /// The name of the op that produced this var (`None` for leaves).
    pub fn op_name(&self) -> Option<&'static str> {
        self.meta.origin.as_ref().map(|o| o.node.name)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.tensor.shape()
    }

    /// The number of dims.
    pub fn rank(&self) -> usize {
        self.tensor.rank()
    }

    /// The number of elements.
    pub fn elem_count(&self) -> usize {
        self.tensor.elem_count()
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.tensor.dtype()
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.tensor.device()
    }
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Var#{}[{:?}, {}, grad={}, op={}]",
            self.meta.id,
            self.tensor.shape(),
            self.tensor.dtype(),
            self.meta.requires_grad,
            self.op_name().unwrap_or("leaf")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vars (and with them whole graphs) may move across threads, e.g. into rayon tasks.
    #[test]
    fn var_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Var>();
        check::<crate::Grads>();
    }

    #[test]
    fn ids_are_unique_and_kept_by_clone() {
        let t = Tensor::zeros(&[2], DType::F32, Device::Cpu).unwrap();
        let (a, b) = (Var::param(t.clone()), Var::param(t));
        assert_ne!(a.id(), b.id());
        assert_eq!(a.clone().id(), a.id());
        assert!(a.is_leaf() && a.requires_grad() && a.op_name().is_none());
        assert!(format!("{a:?}").contains("leaf"));
    }
}
