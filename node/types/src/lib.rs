//! AERGO chain primitives.
