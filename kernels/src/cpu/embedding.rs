//! (placeholder: filled in by its kernel change)
