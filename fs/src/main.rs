//! AergoFS: Haystack-style volume store with an HTTP API.

fn main() {}
