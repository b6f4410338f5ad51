//! Low-level system helpers shared by `aergo-init` and `aergo-image`: GPT partition tables
//! ([`gpt`]) and kernel module dependency resolution from `modules.dep` ([`modules`]).

pub mod gpt;
pub mod modules;
