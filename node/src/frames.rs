//! The one writer of client-protocol frames, used by both ends of a pipelined stream: every
//! value waiting in the queue is encoded into one buffer and written with one `write_all`.

use flotilla_transport_quic::FrameError;
use flotilla_transport_quic::frame::{self, FrameKind};
use quinn::SendStream;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

/// The most frames written in one `write_all`.
const BURST_MAX: usize = 256;

/// Writes what `queue` yields until it closes (then finishes the stream: `true`) or a write
/// fails (`false`). A value too large for a frame is handed to `too_large`, which may give a
/// replacement to send in its place.
pub(crate) async fn write_bursts<T: Serialize>(
    mut send: SendStream,
    mut queue: UnboundedReceiver<T>,
    frame_bytes_max: u32,
    too_large: impl Fn(&T, FrameError) -> Option<T>,
) -> bool {
    let mut values = Vec::with_capacity(BURST_MAX);
    let mut buf = Vec::new();
    while queue.recv_many(&mut values, BURST_MAX).await > 0 {
        // Tasks already woken (callers answered a moment ago, about to send again) run first,
        // so what they queue joins this write: fewer, fuller packets under load.
        tokio::task::yield_now().await;
        while values.len() < BURST_MAX {
            match queue.try_recv() {
                Ok(value) => values.push(value),
                Err(_) => break,
            }
        }
        buf.clear();
        for value in values.drain(..) {
            let kind = FrameKind::ClientMessage;
            if let Err(error) = frame::encode(kind, &value, frame_bytes_max, &mut buf)
                && let Some(replacement) = too_large(&value, error)
            {
                let _ = frame::encode(kind, &replacement, frame_bytes_max, &mut buf);
            }
        }
        if send.write_all(&buf).await.is_err() {
            return false;
        }
    }
    let _ = send.finish();
    true
}
