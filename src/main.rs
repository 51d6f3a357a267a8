//! The `lmf` command line.
fn main() {}
