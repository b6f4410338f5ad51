//! aergo CLI.

fn main() {}
