//! lmf autograd: `Var`, the tape, `backward`, `no_grad`, `detach` and gradient checkpointing.
