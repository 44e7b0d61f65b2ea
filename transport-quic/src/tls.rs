//! rustls mutual TLS for QUIC: the cluster CA as the only root, TLS 1.3 only, no 0-RTT, two ALPNs.
//!
//! Every node's endpoint serves both protocols: `flotilla-raft/1` (node to node, node
//! certificates only) and `flotilla-client/1` (client requests). The server requires a client
//! certificate on both.

use crate::certs::Identity;
use crate::config::TransportConfig;
use crate::error::TlsError;
use crate::identity::{ClusterId, PeerIdentity};
use crate::verifier::ClusterClientVerifier;
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::Duration;

/// ALPN of the node-to-node Raft protocol.
pub const ALPN_RAFT: &[u8] = b"flotilla-raft/1";
/// ALPN of the client request protocol.
pub const ALPN_CLIENT: &[u8] = b"flotilla-client/1";

/// The TLS material of one node or client: its cluster, the cluster CA and its own identity.
#[derive(Clone, Debug)]
pub struct TlsSetup {
    /// The cluster this endpoint belongs to.
    pub cluster: ClusterId,
    /// The cluster CA: the only trust root.
    pub ca: CertificateDer<'static>,
    /// This endpoint's certificate and key.
    pub identity: Identity,
}

impl TlsSetup {
    /// The quinn server configuration of a node: requires a CA-signed client certificate of
    /// this cluster, offers both ALPNs.
    pub fn server_config(&self, config: &TransportConfig) -> Result<quinn::ServerConfig, TlsError> {
        let roots = Arc::new(self.roots()?);
        let chain = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
        let verifier = Arc::new(ClusterClientVerifier::new(chain, self.cluster.clone()));
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                self.identity.cert_chain.clone(),
                self.identity.key.clone_key(),
            )?;
        tls.alpn_protocols = vec![ALPN_RAFT.to_vec(), ALPN_CLIENT.to_vec()];
        tls.max_early_data_size = 0;
        let crypto = QuicServerConfig::try_from(tls)
            .map_err(|error| TlsError::NotQuic(error.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport(
            config,
            config.peer_uni_streams_max,
            config.client_bidi_streams_max,
        )));
        Ok(server)
    }

    /// The quinn client configuration a node dials its peers with (`flotilla-raft/1`).
    pub fn peer_client_config(
        &self,
        config: &TransportConfig,
    ) -> Result<quinn::ClientConfig, TlsError> {
        self.client_config_for(ALPN_RAFT, transport(config, config.peer_uni_streams_max, 0))
    }

    /// The quinn client configuration a client dials a node with (`flotilla-client/1`).
    pub fn client_client_config(
        &self,
        config: &TransportConfig,
    ) -> Result<quinn::ClientConfig, TlsError> {
        self.client_config_for(ALPN_CLIENT, transport(config, 0, 0))
    }

    fn client_config_for(
        &self,
        alpn: &[u8],
        transport: quinn::TransportConfig,
    ) -> Result<quinn::ClientConfig, TlsError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(
                self.identity.cert_chain.clone(),
                self.identity.key.clone_key(),
            )?;
        tls.alpn_protocols = vec![alpn.to_vec()];
        tls.enable_early_data = false;
        let crypto = QuicClientConfig::try_from(tls)
            .map_err(|error| TlsError::NotQuic(error.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(Arc::new(transport));
        Ok(client)
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(roots)
    }
}

/// The ring crypto provider with rustls' default (TLS 1.3) suites.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport(
    config: &TransportConfig,
    uni_streams_max: u32,
    bidi_streams_max: u32,
) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        u32::try_from(config.idle_timeout_ms).unwrap_or(u32::MAX),
    ));
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(Duration::from_millis(config.keep_alive_interval_ms)))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(uni_streams_max))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(bidi_streams_max))
        .ack_frequency_config(Some(ack_frequency(config)));
    transport
}

/// What this end asks its peer for: one acknowledgement per `ack_every_packets` ack-eliciting
/// packets, at most `ack_delay_ms_max` late. A packet that arrives two or more places out of
/// order is still acknowledged at once (quinn's default reordering threshold), so a loss is
/// reported to the sender without waiting.
fn ack_frequency(config: &TransportConfig) -> quinn::AckFrequencyConfig {
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(quinn::VarInt::from_u32(
        config.ack_every_packets.saturating_sub(1),
    ))
    .max_ack_delay(Some(Duration::from_millis(config.ack_delay_ms_max)));
    acks
}

/// The identity the peer's (already verified) certificate proves.
pub fn peer_identity(connection: &quinn::Connection) -> Result<PeerIdentity, TlsError> {
    let certificates = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(TlsError::NoCertificate)?;
    let end_entity = certificates.first().ok_or(TlsError::NoCertificate)?;
    PeerIdentity::from_certificate(end_entity)
}

/// The ALPN protocol the handshake settled on.
#[must_use]
pub fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()
        .and_then(|any| any.downcast::<HandshakeData>().ok())
        .and_then(|data| data.protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// quinn keeps its configuration private; its `Debug` output is the only window on what the
    /// endpoint will ask its peers for. (A quinn upgrade that changes the format fails this test
    /// on purpose: check the setting still reaches quinn, then adjust the strings.)
    #[test]
    fn peers_are_asked_for_the_configured_ack_frequency() {
        let config = TransportConfig {
            ack_every_packets: 7,
            ack_delay_ms_max: 3,
            ..TransportConfig::default()
        };
        let built = format!("{:?}", transport(&config, 8, 1));
        assert!(
            built.contains("ack_frequency_config: Some(AckFrequencyConfig { ack_eliciting_threshold: 6, max_ack_delay: Some(3ms)"),
            "{built}"
        );
    }
}
