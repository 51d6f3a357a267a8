//! lmf ffi: the C ABI over runtime / autograd / models (a cdylib with a generated header) so
//! other programs can link lmf as a library, and vendor bindings (Ascend ACL) behind features.
//! Filled in by its own issue.
