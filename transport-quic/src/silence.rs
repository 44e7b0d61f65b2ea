//! Gives up a peer connection that went silent. Nodes send each peer a batch every heartbeat
//! interval, so a connection on which nothing arrived for `peer_silence_ms_max` is stalled or
//! its peer is gone. QUIC alone does not notice soon: after a cut, unacknowledged data fills
//! the congestion window and only probes leave, at exponentially growing intervals, so a
//! connection that lived through the cut stays deaf both ways long after the path is back,
//! until its idle timeout. Closing it lets the dialing side dial a fresh connection at once.

use crate::counters::Counters;
use crate::endpoint::CLOSE_SILENT;
use quinn::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// When a batch last arrived on one connection (shared by its stream readers).
#[derive(Debug)]
pub(crate) struct Heard {
    started: Instant,
    last_ms: AtomicU64,
}

impl Heard {
    /// Starts as if a batch had just arrived: a new connection gets a full silence period.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Records that batches arrived now.
    pub(crate) fn hear(&self) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Closes `connection` once nothing was heard on it for `silence`; returns when it closes.
pub(crate) async fn close_when_silent(
    connection: Connection,
    heard: Arc<Heard>,
    silence: Duration,
    counters: Arc<Counters>,
    peer: flotilla_raft::NodeId,
) {
    loop {
        let deadline = heard.last() + silence;
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            _ = connection.closed() => return,
        }
        if heard.last() + silence <= Instant::now() {
            Counters::bump(&counters.connections_silent);
            let silence_ms = silence.as_millis();
            tracing::info!(%peer, silence_ms, "giving up a silent peer connection");
            connection.close(CLOSE_SILENT.into(), b"silent");
            return;
        }
    }
}
