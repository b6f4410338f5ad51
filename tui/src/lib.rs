//! `aergo-top`: the operator console dashboard of AERGO OS.
//!
//! - [`model`]: view models and [`model::Feed`] (last value + outage since when).
//! - [`app`]: UI state and key handling (no I/O).
//! - [`ui`]: rendering of the nine screens (pure; snapshot-tested).
//! - [`source`]: background data sources (node RPC, init control, AergoFS, procfs).
//! - [`run`]: the terminal event loop wiring them together.
//! - [`theme`], [`fmt`]: colours/glyphs and text formatting.

pub mod app;
pub mod fmt;
pub mod model;
pub mod run;
pub mod source;
pub mod theme;
pub mod ui;
