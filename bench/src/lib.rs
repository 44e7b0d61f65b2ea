//! Flotilla's benchmarks: a criterion suite with one file per layer (`benches/`), and the
//! side-by-side run against etcd (`side-by-side.sh`, the `etcd_load` and `plot` binaries).
//! The results file, its statistics and the workload's keys are `flotilla-node`'s, re-exported.
#![forbid(unsafe_code)]

pub mod in_memory;
pub mod local_nodes;

pub use flotilla_node::loadgen::{Results, Run};
pub use flotilla_node::workload::{Percentiles, key_of};
