//! lmf bench: shared helpers for the criterion benches in `benches/` (one per kernel) and,
//! later, the end-to-end throughput/memory harness.
