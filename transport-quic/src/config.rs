//! Every limit of the transport in one struct, checked by `validate()` before anything starts.

use crate::backoff::BackoffPolicy;
use crate::error::ConfigError;
use crate::frame::HEADER_BYTES;
use std::time::Duration;

/// The largest frame any configuration may allow: a frame is buffered whole before decoding.
pub const FRAME_BYTES_LIMIT: u32 = 1 << 30;
/// The largest queue any configuration may ask for.
pub const QUEUE_LENGTH_LIMIT: usize = 1 << 20;

/// The most concurrent streams a client may be allowed: each may hold a request being read.
pub const CLIENT_STREAMS_LIMIT: u32 = 1024;

/// The most packets a peer may be asked to receive before acknowledging.
pub const ACK_EVERY_PACKETS_LIMIT: u32 = 100;
/// The longest acknowledgement delay a peer may be asked for: QUIC's default `max_ack_delay`.
/// At least 1 ms, quinn's timer granularity (the `min_ack_delay` it announces).
pub const ACK_DELAY_MS_LIMIT: u64 = 25;
/// The longest `refusal_log_interval_ms` any configuration may ask for: an hour.
pub const REFUSAL_LOG_INTERVAL_MS_LIMIT: u64 = 3_600_000;

const _: () = assert!(HEADER_BYTES < 64);
const _: () = assert!(FRAME_BYTES_LIMIT as u64 <= u32::MAX as u64);

/// The transport's limits, in bytes, counts and milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// The largest frame accepted or sent, header included; checked before allocating.
    pub frame_bytes_max: u32,
    /// Batches queued per peer and per stream class before new ones are dropped.
    pub outbound_queue_batches: usize,
    /// Snapshot chunk bytes queued per peer (batches being written included) before new
    /// snapshot batches are dropped; an empty queue takes one batch whatever its size.
    pub outbound_snapshot_queue_bytes: u64,
    /// Batches received but not yet taken by the node; a full queue pushes back on peers.
    pub inbound_queue_batches: usize,
    /// Accepted client connections waiting for the application; more are refused.
    pub client_queue_connections: usize,
    /// How long a QUIC + TLS handshake may take.
    pub handshake_timeout_ms: u64,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout_ms: u64,
    /// Keep-alive interval; must be well under `idle_timeout_ms`.
    pub keep_alive_interval_ms: u64,
    /// Concurrent unidirectional streams a peer may open (Raft + snapshot + slack).
    pub peer_uni_streams_max: u32,
    /// Concurrent bidirectional streams a client may open (a client pipelines its requests
    /// on one stream per node; each stream may buffer up to `client_request_bytes_max`).
    pub client_bidi_streams_max: u32,
    /// The largest request frame a node reads on a client stream, header included. A larger
    /// header ends the stream before any of its payload is buffered.
    pub client_request_bytes_max: u32,
    /// Once a frame's header has arrived on a client stream, its payload must follow within
    /// this long; a client that trickles (or stops) mid-frame loses the stream.
    pub frame_read_timeout_ms: u64,
    /// Client connections a node serves at once; more are refused at the handshake's end.
    pub client_connections_max: usize,
    /// Client connections one identity (one certificate name) may hold at once.
    pub client_connections_per_identity_max: usize,
    /// Incoming handshakes in progress at once; more are refused before any cryptography.
    pub handshakes_max: usize,
    /// Either side gives up a peer connection on which no batch arrived for this long, and
    /// the dialing side dials a new one. The node sends every peer a batch (an empty one when
    /// it has nothing to say) each heartbeat interval, so such silence means the connection
    /// is stalled or the peer is gone. Without this, a connection that lived through a cut
    /// shorter than the idle timeout sat in QUIC's exponential probe backoff after the heal,
    /// deaf both ways, until that timeout (issue 25).
    pub peer_silence_ms_max: u64,
    /// A dial whose peer has not answered its first packet within this long is abandoned and
    /// retried after the reconnect delay. A peer that answered gets the whole
    /// `handshake_timeout_ms`: this bounds only the time lost on a path that is down.
    pub dial_answer_timeout_ms: u64,
    /// The first reconnect delay.
    pub reconnect_delay_ms_base: u64,
    /// The longest reconnect delay. With `dial_answer_timeout_ms` it bounds how long a pair
    /// whose path came back waits for the next dial (`reconnect_gap_ms_max`).
    pub reconnect_delay_ms_max: u64,
    /// Up to this percentage of each delay is removed at random, so peers do not redial in step.
    pub reconnect_jitter_percent: u8,
    /// Seed of the jitter sequence (mixed with the node id).
    pub reconnect_jitter_seed: u64,
    /// QUIC ACK frequency (the ACK_FREQUENCY extension, which quinn speaks on both ends): the
    /// peer is asked to acknowledge once per this many ack-eliciting packets, or once
    /// `ack_delay_ms_max` passed. QUIC's default is 2. Raft traffic flows both ways, so
    /// acknowledgements mostly ride on data packets; a packet sent only to acknowledge is a
    /// system call and a wake-up on each end.
    pub ack_every_packets: u32,
    /// The longest the peer may hold an acknowledgement back (also added to the time before
    /// a probe timeout resends).
    pub ack_delay_ms_max: u64,
    /// Refused inbound connections are counted each (`Counters::refused_*`) but logged at most
    /// once per reason per this interval, the line saying how many went unlogged; 0 logs
    /// every refusal.
    pub refusal_log_interval_ms: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            frame_bytes_max: 16 << 20,
            outbound_queue_batches: 1024,
            outbound_snapshot_queue_bytes: 64 << 20,
            inbound_queue_batches: 4096,
            client_queue_connections: 64,
            handshake_timeout_ms: 5_000,
            idle_timeout_ms: 10_000,
            keep_alive_interval_ms: 2_000,
            peer_uni_streams_max: 8,
            client_bidi_streams_max: 4,
            client_request_bytes_max: 3 << 20,
            frame_read_timeout_ms: 10_000,
            client_connections_max: 1024,
            client_connections_per_identity_max: 64,
            handshakes_max: 256,
            peer_silence_ms_max: 500,
            dial_answer_timeout_ms: 250,
            reconnect_delay_ms_base: 50,
            reconnect_delay_ms_max: 250,
            reconnect_jitter_percent: 25,
            reconnect_jitter_seed: 0x5eed,
            ack_every_packets: 10,
            ack_delay_ms_max: 2,
            refusal_log_interval_ms: 10_000,
        }
    }
}

impl TransportConfig {
    /// Checks every limit and every relation between limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.frame_bytes_max as usize > HEADER_BYTES,
            "frame_bytes_max must exceed the frame header",
        )?;
        check(
            self.frame_bytes_max <= FRAME_BYTES_LIMIT,
            "frame_bytes_max must be at most 1 GiB",
        )?;
        check_queue(self.outbound_queue_batches, "outbound_queue_batches")?;
        check(
            self.outbound_snapshot_queue_bytes > 0,
            "outbound_snapshot_queue_bytes must be positive",
        )?;
        check_queue(self.inbound_queue_batches, "inbound_queue_batches")?;
        check_queue(self.client_queue_connections, "client_queue_connections")?;
        check(
            self.handshake_timeout_ms > 0,
            "handshake_timeout_ms must be positive",
        )?;
        check(
            self.keep_alive_interval_ms > 0 && self.keep_alive_interval_ms < self.idle_timeout_ms,
            "keep_alive_interval_ms must be positive and below idle_timeout_ms",
        )?;
        check(
            self.peer_uni_streams_max >= 2,
            "peer_uni_streams_max must allow the Raft and snapshot streams",
        )?;
        check(
            (1..=CLIENT_STREAMS_LIMIT).contains(&self.client_bidi_streams_max),
            &format!("client_bidi_streams_max must be between 1 and {CLIENT_STREAMS_LIMIT}"),
        )?;
        check(
            self.client_request_bytes_max as usize > HEADER_BYTES
                && self.client_request_bytes_max <= self.frame_bytes_max,
            "client_request_bytes_max must exceed the frame header and be at most frame_bytes_max",
        )?;
        check(
            self.frame_read_timeout_ms > 0,
            "frame_read_timeout_ms must be positive",
        )?;
        check_queue(self.client_connections_max, "client_connections_max")?;
        check(
            (1..=self.client_connections_max).contains(&self.client_connections_per_identity_max),
            "client_connections_per_identity_max must be between 1 and client_connections_max",
        )?;
        check_queue(self.handshakes_max, "handshakes_max")?;
        check(
            self.peer_silence_ms_max > 0 && self.peer_silence_ms_max < self.idle_timeout_ms,
            "peer_silence_ms_max must be positive and below idle_timeout_ms",
        )?;
        check(
            self.dial_answer_timeout_ms > 0
                && self.dial_answer_timeout_ms <= self.handshake_timeout_ms,
            "dial_answer_timeout_ms must be positive and at most handshake_timeout_ms",
        )?;
        check(
            self.reconnect_delay_ms_base > 0,
            "reconnect_delay_ms_base must be positive",
        )?;
        check(
            self.reconnect_delay_ms_base <= self.reconnect_delay_ms_max,
            "reconnect_delay_ms_base must not exceed reconnect_delay_ms_max",
        )?;
        check(
            self.reconnect_jitter_percent <= 100,
            "reconnect_jitter_percent must be at most 100",
        )?;
        check(
            (1..=ACK_EVERY_PACKETS_LIMIT).contains(&self.ack_every_packets),
            &format!("ack_every_packets must be between 1 and {ACK_EVERY_PACKETS_LIMIT}"),
        )?;
        check(
            (1..=ACK_DELAY_MS_LIMIT).contains(&self.ack_delay_ms_max),
            &format!("ack_delay_ms_max must be between 1 and {ACK_DELAY_MS_LIMIT}"),
        )?;
        check(
            self.refusal_log_interval_ms <= REFUSAL_LOG_INTERVAL_MS_LIMIT,
            &format!(
                "refusal_log_interval_ms must be at most {REFUSAL_LOG_INTERVAL_MS_LIMIT} (an hour)"
            ),
        )
    }

    /// The longest a peer pair that can talk again waits before its link is back: a stalled
    /// connection is given up after `peer_silence_ms_max`, and while the peer is unreachable a
    /// dial starts at least every `dial_answer_timeout_ms + reconnect_delay_ms_max`. (The
    /// handshake's own round trips come on top.)
    #[must_use]
    pub fn reconnect_gap_ms_max(&self) -> u64 {
        self.peer_silence_ms_max
            .max(self.dial_answer_timeout_ms + self.reconnect_delay_ms_max)
    }

    /// The reconnect policy these limits describe.
    #[must_use]
    pub fn backoff(&self) -> BackoffPolicy {
        BackoffPolicy {
            delay_base: Duration::from_millis(self.reconnect_delay_ms_base),
            delay_max: Duration::from_millis(self.reconnect_delay_ms_max),
            jitter_percent: self.reconnect_jitter_percent,
        }
    }
}

fn check(holds: bool, reason: &str) -> Result<(), ConfigError> {
    if holds {
        Ok(())
    } else {
        Err(ConfigError {
            reason: reason.to_owned(),
        })
    }
}

fn check_queue(length: usize, name: &str) -> Result<(), ConfigError> {
    check(
        length > 0 && length <= QUEUE_LENGTH_LIMIT,
        &format!("{name} must be between 1 and {QUEUE_LENGTH_LIMIT}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(TransportConfig::default().validate(), Ok(()));
    }

    /// The simulator's `LinkPolicy::NOW` (raft/tests/multi/links.rs) models these defaults and
    /// shows that a healed pair is back within 500 ms.
    #[test]
    fn a_healed_peer_pair_waits_at_most_half_a_second_by_default() {
        assert_eq!(TransportConfig::default().reconnect_gap_ms_max(), 500);
    }

    #[test]
    fn each_broken_limit_is_refused_with_a_sentence() {
        let broken: Vec<fn(&mut TransportConfig)> = vec![
            |c| c.frame_bytes_max = 3,
            |c| c.frame_bytes_max = FRAME_BYTES_LIMIT + 1,
            |c| c.outbound_queue_batches = 0,
            |c| c.outbound_snapshot_queue_bytes = 0,
            |c| c.inbound_queue_batches = QUEUE_LENGTH_LIMIT + 1,
            |c| c.client_queue_connections = 0,
            |c| c.handshake_timeout_ms = 0,
            |c| c.keep_alive_interval_ms = c.idle_timeout_ms,
            |c| c.peer_uni_streams_max = 1,
            |c| c.client_bidi_streams_max = 0,
            |c| c.client_bidi_streams_max = CLIENT_STREAMS_LIMIT + 1,
            |c| c.client_request_bytes_max = c.frame_bytes_max + 1,
            |c| c.client_request_bytes_max = 4,
            |c| c.frame_read_timeout_ms = 0,
            |c| c.client_connections_max = 0,
            |c| c.client_connections_per_identity_max = 0,
            |c| c.client_connections_per_identity_max = c.client_connections_max + 1,
            |c| c.handshakes_max = 0,
            |c| c.peer_silence_ms_max = 0,
            |c| c.peer_silence_ms_max = c.idle_timeout_ms,
            |c| c.dial_answer_timeout_ms = 0,
            |c| c.dial_answer_timeout_ms = c.handshake_timeout_ms + 1,
            |c| c.reconnect_delay_ms_base = 0,
            |c| c.reconnect_delay_ms_max = c.reconnect_delay_ms_base - 1,
            |c| c.reconnect_jitter_percent = 101,
            |c| c.ack_every_packets = 0,
            |c| c.ack_every_packets = ACK_EVERY_PACKETS_LIMIT + 1,
            |c| c.ack_delay_ms_max = 0,
            |c| c.ack_delay_ms_max = ACK_DELAY_MS_LIMIT + 1,
            |c| c.refusal_log_interval_ms = REFUSAL_LOG_INTERVAL_MS_LIMIT + 1,
        ];
        for (case, breaker) in broken.iter().enumerate() {
            let mut config = TransportConfig::default();
            breaker(&mut config);
            let error = config
                .validate()
                .expect_err("a broken limit must be refused");
            assert!(error.reason.contains("must"), "case {case}: {error}");
        }
    }
}
