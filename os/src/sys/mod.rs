//! Low-level system helpers shared by `aergo-init` and `aergo-image`: GPT partition tables
//! ([`gpt`]), UEFI boot variables ([`efi`]) and kernel module dependency resolution from `modules.dep` ([`modules`]).

pub mod efi;
pub mod gpt;
pub mod modules;
