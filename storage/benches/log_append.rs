//! Placeholder until the log append benchmark lands.
fn main() {}
