//! lmf runtime: `Tensor` (shape, strides, dtype, device), storage, dispatch to kernels, RNG.
