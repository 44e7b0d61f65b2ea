//! Flotilla's documentation: one module per chapter, each the Markdown file beside it, compiled
//! by rustdoc so that it stays in the build.
#![forbid(unsafe_code)]

/// The architecture on one page, with the design decisions.
pub mod architecture {
    #![doc = include_str!("../architecture.md")]
}

/// Designs we rejected, and why.
pub mod decisions {
    #![doc = include_str!("../decisions/README.md")]
}

/// The Raft protocol as Flotilla implements it.
pub mod protocol {
    /// Leader election, pre-vote, check-quorum, terms and leadership transfer.
    pub mod election {
        #![doc = include_str!("../protocol/election.md")]
    }
    /// Log replication, heartbeats, commitment and the persistence contract.
    pub mod replication {
        #![doc = include_str!("../protocol/replication.md")]
    }
    /// Snapshots and log compaction.
    pub mod snapshots {
        #![doc = include_str!("../protocol/snapshots.md")]
    }
    /// Membership changes by joint consensus, with learners.
    pub mod membership {
        #![doc = include_str!("../protocol/membership.md")]
    }
    /// Linearizable reads: ReadIndex and leases.
    pub mod reads {
        #![doc = include_str!("../protocol/reads.md")]
    }
    /// Client sessions: each write applied exactly once.
    pub mod sessions {
        #![doc = include_str!("../protocol/sessions.md")]
    }
    /// The sans-IO node core, its driver, and the whole-cluster simulator that runs it.
    pub mod node_core {
        #![doc = include_str!("../protocol/node-core.md")]
    }
    /// The placement driver: rules, limits, the state machine of a move, failures mid-move.
    pub mod placement {
        #![doc = include_str!("../protocol/placement.md")]
    }
    /// MultiRaft: coalesced heartbeats and quiescence.
    pub mod heartbeat_coalescing {
        #![doc = include_str!("../protocol/heartbeat-coalescing.md")]
    }
}

/// On-disk and in-memory data and their invariants.
pub mod data {
    /// The order of the log pointers.
    pub mod log_pointers {
        #![doc = include_str!("../data/log-pointers.md")]
    }
    /// The write-ahead log format, byte by byte, and its crash assumptions.
    pub mod wal_format {
        #![doc = include_str!("../data/wal-format.md")]
    }
}

/// The QUIC transport: connections, streams, frames, TLS identity.
pub mod transport {
    #![doc = include_str!("../transport.md")]
}

/// Security: what each certificate may do, and how a leaked one is shut out.
pub mod security {
    #![doc = include_str!("../security.md")]
}

/// Running a cluster by hand: certificates, configuration, start, observe, recover.
pub mod operations {
    #![doc = include_str!("../operations.md")]
}

/// Measured figures, with the commands that produce them.
pub mod benchmarks {
    #![doc = include_str!("../benchmarks.md")]

    /// The write-ahead log.
    pub mod storage {
        #![doc = include_str!("../bench/storage.md")]
    }
    /// The QUIC transport.
    pub mod transport {
        #![doc = include_str!("../bench/transport.md")]
    }
}
