//! HTTPS on the HTTP listener's port: a connection whose first byte opens a TLS handshake is
//! served over TLS with the node's certificate (re-read on SIGHUP); the client certificate, if
//! one was sent, is checked against the cluster CA and the deny-list in the handshake and
//! names the caller of every request on the connection.

use super::Access;
use crate::server::Caller;
use flotilla_transport_quic::{PeerIdentity, Revocations, TlsError, TlsSetup};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

/// The first byte of a TLS record carrying a handshake (RFC 8446 §5.1, `ContentType`
/// `handshake`): what a client's first flight starts with. No HTTP request starts with it.
const TLS_HANDSHAKE: u8 = 0x16;

/// The listener's current TLS configuration.
#[derive(Debug)]
pub(crate) struct Https {
    config: RwLock<Arc<ServerConfig>>,
}

impl Https {
    /// HTTPS with `tls`'s certificate, refusing the client certificates `revoked` names.
    ///
    /// # Errors
    /// rustls refused the certificate or key.
    pub(crate) fn new(tls: &TlsSetup, revoked: Arc<Revocations>) -> Result<Self, TlsError> {
        Ok(Self {
            config: RwLock::new(Arc::new(tls.https_server_config(revoked)?)),
        })
    }

    /// Serves new connections with `tls`'s certificate and deny-list; open ones keep theirs.
    ///
    /// # Errors
    /// rustls refused the certificate or key; the previous configuration stays.
    pub(crate) fn replace(
        &self,
        tls: &TlsSetup,
        revoked: Arc<Revocations>,
    ) -> Result<(), TlsError> {
        let config = Arc::new(tls.https_server_config(revoked)?);
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// The TLS handshake on `stream`, within `timeout`; `None` if it failed or took longer.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Option<(TlsStream<TcpStream>, Access)> {
        let config = Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner));
        let handshake = TlsAcceptor::from(config).accept(stream);
        let stream = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%error, "an HTTPS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!("an HTTPS handshake took over http.header_read_timeout_ms");
                return None;
            }
        };
        let access = caller(stream.get_ref().1);
        Some((stream, access))
    }
}

/// Who is on a TLS connection: the identity of its verified client certificate, if any.
fn caller(connection: &tokio_rustls::rustls::ServerConnection) -> Access {
    let Some(certificate) = connection.peer_certificates().and_then(<[_]>::first) else {
        return Access::NoCertificate;
    };
    // The handshake verified it; a certificate without a Flotilla identity could not pass.
    match PeerIdentity::from_certificate(certificate) {
        Ok(identity) => {
            let serial = flotilla_transport_quic::der::serial_number(certificate);
            Access::Certificate(Caller::new(identity, serial.map(<[u8]>::to_vec)))
        }
        Err(_) => Access::NoCertificate,
    }
}

/// Whether the connection opens with a TLS handshake: waits for its first byte (without taking
/// it) for at most `timeout`; `None` when none came (closed, failed or silent).
pub(crate) async fn starts_tls(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let mut first = [0_u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first == [TLS_HANDSHAKE]),
        _ => None,
    }
}
