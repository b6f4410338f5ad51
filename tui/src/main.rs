//! aergo-top: the operator console dashboard.

fn main() {}
