//! Refused inbound connections: each one counted under its reason, and logged at most once per
//! reason per `refusal_log_interval_ms`, the line saying how many refusals went unlogged since
//! the last. A flood of bad handshakes (4,000 certificate-less ones wrote 780 kB of log in 6 s)
//! then costs the log a line per reason per interval, and the counters still tell how many.

use crate::alert::TlsAlert;
use crate::counters::Counters;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Why an inbound connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The peer presented no certificate (TLS alert `certificate_required`).
    NoCertificate,
    /// The peer's certificate was not issued by the cluster CA (`unknown_ca`).
    UnknownCa,
    /// The peer's certificate has expired or is not yet valid (`certificate_expired`).
    CertificateExpired,
    /// The peer's certificate was refused for another reason (another cluster, no Flotilla
    /// identity, not valid for its use...).
    BadCertificate,
    /// The handshake failed without a TLS alert (a protocol error, a reset, quinn's timeout).
    HandshakeFailed,
    /// The handshake did not finish within `handshake_timeout_ms`.
    HandshakeTimeout,
    /// The certificate, accepted by TLS, names no identity of this cluster.
    WrongIdentity,
    /// The identity may not speak the protocol it asked for (a client on the Raft protocol), or
    /// no known protocol was negotiated.
    WrongProtocol,
    /// The queue of client connections waiting for the application is full.
    ClientQueueFull,
    /// `handshakes_max` handshakes were in progress: refused before any cryptography.
    HandshakesBusy,
    /// The node serves `client_connections_max` clients, or the client's name holds
    /// `client_connections_per_identity_max` connections.
    ClientsFull,
    /// The peer's certificate is on the access deny-list (`certificate_revoked`).
    Revoked,
}

/// How many reasons there are: the rate limiter keeps one slot each.
const REASON_COUNT: usize = 12;

impl Refusal {
    /// The reason a failed handshake gives: its TLS alert, if one ended it.
    #[must_use]
    pub fn of_handshake(alert: Option<TlsAlert>) -> Self {
        match alert.map(|alert| alert.code) {
            None => Self::HandshakeFailed,
            Some(116) => Self::NoCertificate,
            Some(48) => Self::UnknownCa,
            Some(45) => Self::CertificateExpired,
            Some(44) => Self::Revoked,
            Some(_) => Self::BadCertificate,
        }
    }

    /// The counter that counts this reason.
    #[must_use]
    pub fn counter(self, counters: &Counters) -> &AtomicU64 {
        match self {
            Self::NoCertificate => &counters.refused_no_certificate,
            Self::UnknownCa => &counters.refused_unknown_ca,
            Self::CertificateExpired => &counters.refused_certificate_expired,
            Self::BadCertificate => &counters.refused_bad_certificate,
            Self::HandshakeFailed => &counters.refused_handshake_failed,
            Self::HandshakeTimeout => &counters.refused_handshake_timeout,
            Self::WrongIdentity => &counters.refused_wrong_identity,
            Self::WrongProtocol => &counters.refused_wrong_protocol,
            Self::ClientQueueFull => &counters.refused_client_queue_full,
            Self::HandshakesBusy => &counters.refused_handshakes_busy,
            Self::ClientsFull => &counters.refused_clients_full,
            Self::Revoked => &counters.refused_revoked,
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

const _: () = assert!(Refusal::Revoked as usize + 1 == REASON_COUNT);

/// At most one log line per reason per interval. Pure: the caller passes the time.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    slots: [Slot; REASON_COUNT],
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    /// A limiter allowing one line per reason per `interval` (zero: every refusal is logged).
    #[must_use]
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            slots: [Slot::default(); REASON_COUNT],
        }
    }

    /// Whether a refusal for `reason` at `now` gets a log line: `Some(n)` with the refusals of
    /// that reason left unlogged since its last line, or `None` (this one is left unlogged).
    pub fn admit(&mut self, reason: Refusal, now: Instant) -> Option<u64> {
        let interval = self.interval;
        // In bounds: the const assert above ties the last reason to `REASON_COUNT`.
        let slot = &mut self.slots[reason.slot()];
        let due = slot
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= interval);
        if !due {
            slot.unlogged += 1;
            return None;
        }
        slot.logged_at = Some(now);
        Some(std::mem::take(&mut slot.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertSender;

    #[test]
    fn one_line_per_reason_per_interval_and_it_counts_the_unlogged() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(log.admit(Refusal::NoCertificate, at(0)), Some(0));
        for ms in 1..=4_000 {
            assert_eq!(log.admit(Refusal::NoCertificate, at(ms)), None);
        }
        // Another reason has its own slot.
        assert_eq!(log.admit(Refusal::UnknownCa, at(5_000)), Some(0));
        assert_eq!(log.admit(Refusal::NoCertificate, at(9_999)), None);
        assert_eq!(log.admit(Refusal::NoCertificate, at(10_000)), Some(4_001));
        assert_eq!(log.admit(Refusal::NoCertificate, at(20_000)), Some(0));
    }

    #[test]
    fn a_zero_interval_logs_every_refusal() {
        let mut log = RefusalLog::new(Duration::ZERO);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(log.admit(Refusal::WrongProtocol, now), Some(0));
        }
    }

    #[test]
    fn a_handshake_is_sorted_by_its_alert() {
        let alert = |code| {
            Some(TlsAlert {
                code,
                sender: AlertSender::Local,
            })
        };
        assert_eq!(Refusal::of_handshake(alert(116)), Refusal::NoCertificate);
        assert_eq!(Refusal::of_handshake(alert(48)), Refusal::UnknownCa);
        assert_eq!(Refusal::of_handshake(alert(44)), Refusal::Revoked);
        assert_eq!(
            Refusal::of_handshake(alert(45)),
            Refusal::CertificateExpired
        );
        assert_eq!(Refusal::of_handshake(alert(42)), Refusal::BadCertificate);
        assert_eq!(Refusal::of_handshake(None), Refusal::HandshakeFailed);
    }
}
