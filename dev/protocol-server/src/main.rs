//! Placeholder: the conformance server is being written.
fn main() {}
