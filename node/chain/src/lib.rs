//! The AERGO chain.
