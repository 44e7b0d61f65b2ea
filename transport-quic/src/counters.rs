//! Transport counters: lock-free atomics updated on the hot path, read as one snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// The live counters of one transport; every field only grows.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// The counters at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CounterSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Counters {
            /// Reads every counter (each read is atomic; the set is not one atomic cut).
            #[must_use]
            pub fn snapshot(&self) -> CounterSnapshot {
                CounterSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl CounterSnapshot {
            /// Every counter as its field's name, its doc and its value, in declaration order
            /// (what a metrics exporter lists, so a counter added here is exported without a
            /// second list to keep).
            #[must_use]
            pub fn named(&self) -> Vec<NamedCounter> {
                vec![$(NamedCounter {
                    name: stringify!($name),
                    doc: concat!($($doc),*).trim(),
                    value: self.$name,
                },)*]
            }
        }
    };
}

counters!(
    /// Batches written to a peer's stream (or handed to a peer's inbound queue in memory).
    batches_sent,
    /// Batches accepted from peers and queued for the node.
    batches_received,
    /// Batches dropped because the peer's outbound queue was full (slow or down peer).
    dropped_queue_full,
    /// Batches dropped because their destination was not a known peer or was down.
    dropped_unreachable,
    /// Batches dropped because their `from` was not the node named by the peer's certificate.
    dropped_bad_sender,
    /// Batches dropped because their `to` was not this node.
    dropped_misaddressed,
    /// Batches lost because the stream failed while writing them.
    dropped_connection_lost,
    /// Batches dropped because they encode to more than `frame_bytes_max`.
    dropped_oversized,
    /// Malformed or oversized frames received; each closed its connection.
    frames_malformed,
    /// Inbound connections refused (failed handshake, wrong certificate, wrong protocol); the
    /// `refused_*` counters split it by reason (`refusals::Refusal`).
    connections_refused,
    /// Refused: the peer presented no certificate.
    refused_no_certificate,
    /// Refused: the peer's certificate was not issued by the cluster CA.
    refused_unknown_ca,
    /// Refused: the peer's certificate has expired or is not yet valid.
    refused_certificate_expired,
    /// Refused: the peer's certificate was refused for another reason (another cluster...).
    refused_bad_certificate,
    /// Refused: the handshake failed without a TLS alert.
    refused_handshake_failed,
    /// Refused: the handshake did not finish within `handshake_timeout_ms`.
    refused_handshake_timeout,
    /// Refused: the certificate names no identity of this cluster.
    refused_wrong_identity,
    /// Refused: the identity may not speak the protocol it asked for, or spoke none known.
    refused_wrong_protocol,
    /// Refused: the queue of client connections waiting for the application was full.
    refused_client_queue_full,
    /// Connections established with peers, in either direction.
    connections_established,
    /// Outbound connection attempts that failed.
    connect_failures,
    /// Peer connections given up because no batch arrived on them for `peer_silence_ms_max`.
    connections_silent,
    /// Incoming handshakes refused unstarted because `handshakes_max` were in progress.
    refused_handshakes_busy,
    /// Client connections refused because the node or the client's identity was at its
    /// connection limit.
    refused_clients_full,
    /// Connections refused because the peer's certificate is on the access deny-list.
    refused_revoked,
);

/// One counter of a [`CounterSnapshot`], named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedCounter {
    /// The field's name (`dropped_queue_full`).
    pub name: &'static str,
    /// The field's doc, in one line.
    pub doc: &'static str,
    /// Its value.
    pub value: u64,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl CounterSnapshot {
    /// Every batch dropped, for any reason.
    #[must_use]
    pub fn dropped_total(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_unreachable
            + self.dropped_bad_sender
            + self.dropped_misaddressed
            + self.dropped_connection_lost
            + self.dropped_oversized
    }
}
