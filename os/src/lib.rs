//! `aergo-os`: the system layer every AERGO OS binary shares.
//!
//! This crate depends on no other crate of ours (see ARCHITECTURE.md). Modules:
//! - [`paths`]: well-known ports, paths and names.
//! - [`bundle`]: signed update bundles (format, ed25519 release keys, streaming verification).
//! - [`slots`]: A/B system slot bookkeeping and its state transitions.
//! - [`schedule`]: `--reboot-at HH:MM` (UTC) reboot times after an upgrade.
//! - [`config`]: the `aergo.toml` schema read by init, the node, AergoFS and the dashboard.
//! - [`io`]: the io_uring file I/O service with a std fallback.
//! - [`control`]: init's control-socket protocol (types, codec, blocking client).
//! - [`sys`]: GPT tables and kernel-module resolution for init and the image builder.
//! - [`sample`]: procfs resource sampling (CPU, memory, load, disks, network, filesystems).
//! - [`task`]: vital tokio tasks (a panic aborts the process so its supervisor restarts it).
//! - `http` (feature `http`): the hardened HTTP/1 server of the node's RPC and AergoFS
//!   (connection caps, header/idle/body timeouts, cross-site checks).

pub mod bundle;
pub mod config;
pub mod control;
#[cfg(feature = "http")]
pub mod http;
pub mod io;
pub mod paths;
pub mod sample;
pub mod schedule;
pub mod slots;
pub mod sys;
pub mod task;
