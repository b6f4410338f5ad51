//! aergo-init: PID 1 and service supervisor of AERGO OS.

fn main() {}
