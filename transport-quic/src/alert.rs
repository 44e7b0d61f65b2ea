//! The TLS alert that ended a handshake, read back from the QUIC error that carried it.
//!
//! QUIC has no TLS alert records: a TLS failure closes the connection with transport error
//! `CRYPTO_ERROR` = 0x100 + the alert's code (RFC 9001 §4.8). The side that refuses sees it as
//! its own `TransportError`; the other side receives it in a `CONNECTION_CLOSE`. In TLS 1.3 a
//! client finishes its handshake before the server has judged the client's certificate, so a
//! client often learns of its refusal only when its first stream fails: it must look at the
//! connection's close reason to tell a refused certificate from a lost answer.
//! TLS alerts end handshakes only: a connection closed with one never carried application data.

use quinn::ConnectionError;
use std::fmt;

/// The first `CRYPTO_ERROR` transport error code; the alert is the low byte.
const CRYPTO_ERROR_FIRST: u64 = 0x100;
/// One past the last `CRYPTO_ERROR` code.
const CRYPTO_ERROR_END: u64 = 0x200;

/// Which end of the connection sent an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertSender {
    /// The other end refused (it closed the connection with the alert).
    Peer,
    /// This end refused what the other end presented.
    Local,
}

/// A TLS alert that ended a handshake, and who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsAlert {
    /// The alert's code (RFC 8446 §6).
    pub code: u8,
    /// Who sent it.
    pub sender: AlertSender,
}

impl TlsAlert {
    /// The alert that closed a connection with `error`, if a TLS alert did.
    #[must_use]
    pub fn of(error: &ConnectionError) -> Option<Self> {
        let (code, sender) = match error {
            ConnectionError::ConnectionClosed(close) => (close.error_code, AlertSender::Peer),
            ConnectionError::TransportError(error) => (error.code, AlertSender::Local),
            _ => return None,
        };
        let code = u64::from(code);
        if !(CRYPTO_ERROR_FIRST..CRYPTO_ERROR_END).contains(&code) {
            return None;
        }
        let code = u8::try_from(code - CRYPTO_ERROR_FIRST).ok()?;
        Some(Self { code, sender })
    }

    /// The alert's name as RFC 8446 spells it (`unknown_ca`), or rustls' name for a rare one.
    #[must_use]
    pub fn name(&self) -> String {
        match alert_meaning(self.code) {
            Some((name, _)) => name.to_owned(),
            None => format!("{:?}", rustls::AlertDescription::from(self.code)),
        }
    }
}

impl fmt::Display for TlsAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.sender {
            AlertSender::Peer => "the peer",
            AlertSender::Local => "this end",
        };
        let meaning = alert_meaning(self.code).map_or("it refused the handshake", |(_, m)| m);
        write!(
            f,
            "{who} sent TLS alert {} ({}): {meaning}",
            self.name(),
            self.code
        )
    }
}

/// The name and meaning, for the side that receives it, of the alerts a certificate check
/// sends (rustls' mapping of certificate errors to alerts).
fn alert_meaning(code: u8) -> Option<(&'static str, &'static str)> {
    let meaning = match code {
        40 => (
            "handshake_failure",
            "it found no acceptable handshake parameters",
        ),
        42 => (
            "bad_certificate",
            "the certificate presented to it is bad (for instance, it names another cluster or no Flotilla identity)",
        ),
        43 => (
            "unsupported_certificate",
            "the certificate presented to it is not valid for this use",
        ),
        44 => (
            "certificate_revoked",
            "the certificate presented to it was revoked",
        ),
        45 => (
            "certificate_expired",
            "the certificate presented to it has expired or is not yet valid",
        ),
        46 => (
            "certificate_unknown",
            "it refused the certificate presented to it",
        ),
        48 => (
            "unknown_ca",
            "the certificate presented to it was not issued by a CA it trusts",
        ),
        49 => (
            "access_denied",
            "the identity presented to it is not allowed",
        ),
        51 => (
            "decrypt_error",
            "a signature presented to it did not verify (a certificate from another CA of the same name?)",
        ),
        116 => (
            "certificate_required",
            "it requires a certificate and none was presented",
        ),
        120 => (
            "no_application_protocol",
            "it speaks none of the protocols offered",
        ),
        _ => return None,
    };
    Some(meaning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_proto::{TransportError, TransportErrorCode};

    fn local(code: TransportErrorCode) -> ConnectionError {
        ConnectionError::TransportError(TransportError {
            code,
            frame: None,
            reason: "invalid peer certificate".into(),
        })
    }

    #[test]
    fn a_crypto_error_is_read_as_its_alert_and_other_errors_are_not() {
        let alert = TlsAlert::of(&local(TransportErrorCode::crypto(48)));
        assert_eq!(
            alert,
            Some(TlsAlert {
                code: 48,
                sender: AlertSender::Local
            })
        );
        assert_eq!(
            alert.map(|alert| alert.to_string()).unwrap_or_default(),
            "this end sent TLS alert unknown_ca (48): the certificate presented to it was not issued by a CA it trusts"
        );
        assert_eq!(
            TlsAlert::of(&local(TransportErrorCode::PROTOCOL_VIOLATION)),
            None
        );
        assert_eq!(TlsAlert::of(&ConnectionError::TimedOut), None);
    }

    #[test]
    fn a_rare_alert_still_has_a_name() {
        let alert = TlsAlert {
            code: 70,
            sender: AlertSender::Peer,
        };
        assert_eq!(alert.name(), "ProtocolVersion");
        assert!(alert.to_string().starts_with("the peer sent TLS alert"));
    }
}
