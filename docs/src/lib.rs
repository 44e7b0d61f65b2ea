//! Flotilla's documentation: one module per chapter, each the Markdown file beside it, compiled
//! by rustdoc so that it stays in the build.
#![forbid(unsafe_code)]

/// The chapter at `path` under `docs/`, as `build.rs` copied it with its images inlined, so
/// that they show in `target/doc` as they do beside the Markdown file.
macro_rules! chapter {
    ($path:literal) => {
        include_str!(concat!(env!("OUT_DIR"), "/", $path))
    };
}

/// The architecture on one page, with the design decisions.
pub mod architecture {
    #![doc = chapter!("architecture.md")]
}

/// Designs we rejected, and why.
pub mod decisions {
    #![doc = chapter!("decisions/README.md")]

    /// The engine of applied range data: fjall, measured against redb.
    pub mod state_machine_engine {
        #![doc = chapter!("decisions/state-machine-engine.md")]
    }
    /// Merges: a frozen neighbour's state carried in the left range's log.
    pub mod merge {
        #![doc = chapter!("decisions/merge.md")]
    }
}

/// The Raft protocol as Flotilla implements it.
pub mod protocol {
    /// Leader election, pre-vote, check-quorum, terms and leadership transfer.
    pub mod election {
        #![doc = chapter!("protocol/election.md")]
    }
    /// Log replication, heartbeats, commitment and the persistence contract.
    pub mod replication {
        #![doc = chapter!("protocol/replication.md")]
    }
    /// Snapshots and log compaction.
    pub mod snapshots {
        #![doc = chapter!("protocol/snapshots.md")]
    }
    /// Membership changes by joint consensus, with learners.
    pub mod membership {
        #![doc = chapter!("protocol/membership.md")]
    }
    /// Linearizable reads: ReadIndex and leases.
    pub mod reads {
        #![doc = chapter!("protocol/reads.md")]
    }
    /// Client sessions: each write applied exactly once.
    pub mod sessions {
        #![doc = chapter!("protocol/sessions.md")]
    }
    /// The sans-IO node core, its driver, and the whole-cluster simulator that runs it.
    pub mod node_core {
        #![doc = chapter!("protocol/node-core.md")]
    }
    /// The placement driver: rules, limits, the state machine of a move, failures mid-move.
    pub mod placement {
        #![doc = chapter!("protocol/placement.md")]
    }
    /// Splitting ranges: the command, the bounds each range holds, and the failure cases.
    pub mod split_merge {
        #![doc = chapter!("protocol/split-merge.md")]
    }
    /// MultiRaft: coalesced heartbeats and quiescence.
    pub mod heartbeat_coalescing {
        #![doc = chapter!("protocol/heartbeat-coalescing.md")]
    }
}

/// On-disk and in-memory data and their invariants.
pub mod data {
    /// The order of the log pointers.
    pub mod log_pointers {
        #![doc = chapter!("data/log-pointers.md")]
    }
    /// The write-ahead log format, byte by byte, and its crash assumptions.
    pub mod wal_format {
        #![doc = chapter!("data/wal-format.md")]
    }
    /// Applied range data in the engine: keys, values, invariants, recovery rules.
    pub mod engine_layout {
        #![doc = chapter!("data/engine-layout.md")]
    }
}

/// The QUIC transport: connections, streams, frames, TLS identity.
pub mod transport {
    #![doc = chapter!("transport.md")]
}

/// Security: what each certificate may do, and how a leaked one is shut out.
pub mod security {
    #![doc = chapter!("security.md")]
}

/// Running a cluster by hand: certificates, configuration, start, observe, recover.
pub mod operations {
    #![doc = chapter!("operations.md")]
}

/// The HTTP/JSON API: HTTPS with client certificates on the HTTP listener, calls, statuses and
/// limits.
pub mod http_api {
    #![doc = chapter!("http-api.md")]
}

/// Limits: sizes, counts, memory per replica, disk per node, and where each figure comes from.
pub mod limits {
    #![doc = chapter!("limits.md")]
}

/// Measured figures, with the commands that produce them.
pub mod benchmarks {
    #![doc = chapter!("benchmarks.md")]

    /// The write-ahead log.
    pub mod storage {
        #![doc = chapter!("bench/storage.md")]
    }
    /// The QUIC transport.
    pub mod transport {
        #![doc = chapter!("bench/transport.md")]
    }
}
