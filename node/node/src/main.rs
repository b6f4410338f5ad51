//! aergo-node.

fn main() {}
