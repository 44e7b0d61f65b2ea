//! rustls mutual TLS for QUIC: the cluster CA as the only root, TLS 1.3 only, no 0-RTT, two ALPNs.
//!
//! Every node's endpoint serves both protocols: `flotilla-raft/1` (node to node, node
//! certificates only) and `flotilla-client/1` (client requests). The server requires a client
//! certificate on both.

use crate::certs::Identity;
use crate::config::TransportConfig;
use crate::connection_id::KeyedConnectionIds;
use crate::error::TlsError;
use crate::identity::{ClusterId, PeerIdentity};
use crate::verifier::{ClusterClientVerifier, ClusterNodeVerifier, Revocations};
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
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
        self.server_config_revoking(config, Arc::default())
    }

    /// `server_config`, also refusing in the handshake every certificate `revoked` names.
    pub fn server_config_revoking(
        &self,
        config: &TransportConfig,
        revoked: Arc<Revocations>,
    ) -> Result<quinn::ServerConfig, TlsError> {
        let alpn = vec![ALPN_RAFT.to_vec(), ALPN_CLIENT.to_vec()];
        let tls = self.cluster_server_tls(revoked, ClientAuth::Required, alpn)?;
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

    /// The rustls configuration of a node's HTTPS listener (HTTP/1.1 over TLS 1.3): the node's
    /// certificate, and a client certificate asked for but not required. One that is sent must
    /// chain to the cluster CA, name this cluster and not be `revoked`; whether a request
    /// needs one is for the listener to decide (the peer's certificates are in the session).
    pub fn https_server_config(
        &self,
        revoked: Arc<Revocations>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        self.cluster_server_tls(revoked, ClientAuth::Optional, vec![b"http/1.1".to_vec()])
    }

    /// A TLS 1.3 server configuration with the node's certificate, no early data, `alpn`, and
    /// client certificates checked against the cluster CA, this cluster and `revoked`
    /// (`auth` says whether one is required).
    fn cluster_server_tls(
        &self,
        revoked: Arc<Revocations>,
        auth: ClientAuth,
        alpn: Vec<Vec<u8>>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let roots = Arc::new(self.roots()?);
        let builder = WebPkiClientVerifier::builder_with_provider(roots, provider());
        let chain = match auth {
            ClientAuth::Required => builder.build()?,
            ClientAuth::Optional => builder.allow_unauthenticated().build()?,
        };
        let verifier = Arc::new(ClusterClientVerifier::revoking(
            chain,
            self.cluster.clone(),
            revoked,
        ));
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                self.identity.cert_chain.clone(),
                self.identity.key.clone_key(),
            )?;
        tls.alpn_protocols = alpn;
        tls.max_early_data_size = 0;
        Ok(tls)
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

    /// The quinn client configuration a client dials an address with when it does not know
    /// which node listens there (`flotilla-client/1`): any node certificate of this cluster
    /// is accepted, and the client learns the node's id from it
    /// ([`ClientSession::connect_to_any_node`](crate::ClientSession::connect_to_any_node)).
    pub fn client_client_config_any_node(
        &self,
        config: &TransportConfig,
    ) -> Result<quinn::ClientConfig, TlsError> {
        let chain =
            WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), provider())
                .build()?;
        let verifier = Arc::new(ClusterNodeVerifier::new(chain, self.cluster.clone()));
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(
                self.identity.cert_chain.clone(),
                self.identity.key.clone_key(),
            )?;
        tls.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
        tls.enable_early_data = false;
        let crypto = QuicClientConfig::try_from(tls)
            .map_err(|error| TlsError::NotQuic(error.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(Arc::new(transport(config, 0, 0)));
        Ok(client)
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

    /// The endpoint configuration of a node, with the two keys that let it reset, after a
    /// crash and restart, the connections its previous process held (RFC 9000 §10.3).
    ///
    /// A peer or client that still sends on such a connection reaches the restarted endpoint
    /// with a connection ID it issued before. To answer with a stateless reset, the endpoint
    /// must recognize that ID as one of its own (its IDs carry an HMAC tag, see
    /// `connection_id`; quinn drops packets whose ID does not verify) and compute the reset
    /// token the previous process announced (an HMAC of the ID under another key). Both keys are derived from the node's private key, so a restarted node has
    /// the same ones, and the sender drops the connection at once instead of waiting out its
    /// idle timeout. With quinn's defaults (random keys per endpoint) the restarted node could
    /// do neither: a dialing peer kept its dead connection, and clients theirs, for the whole
    /// idle timeout (10 s by default), leaving the groups the restarted node led again
    /// unreachable for that long. The keys are as secret as the private key; anyone holding
    /// the reset key could reset this node's connections.
    pub(crate) fn endpoint_config(&self) -> quinn::EndpointConfig {
        let mut endpoint = quinn::EndpointConfig::default();
        endpoint.reset_key(Arc::new(self.stateless_reset_key()));
        let connection_id_key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            self.derive(CONNECTION_ID_KEY_LABEL).as_ref(),
        );
        endpoint
            .cid_generator(move || Box::new(KeyedConnectionIds::new(connection_id_key.clone())));
        endpoint
    }

    /// The key of this node's stateless-reset tokens (see `endpoint_config`).
    fn stateless_reset_key(&self) -> ring::hmac::Key {
        ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            self.derive(RESET_KEY_LABEL).as_ref(),
        )
    }

    /// A secret for `label`, derived from the private key (never the private key itself).
    fn derive(&self, label: &[u8]) -> ring::hmac::Tag {
        let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.identity.key.secret_der());
        ring::hmac::sign(&secret, label)
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(roots)
    }
}

/// What the keys derived from a node's private key are for (each label gives another key).
const RESET_KEY_LABEL: &[u8] = b"flotilla quic stateless reset key v1";
const CONNECTION_ID_KEY_LABEL: &[u8] = b"flotilla quic connection id key v1";

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

/// The serial number of the peer's (already verified) certificate, leading zero bytes dropped.
#[must_use]
pub fn peer_serial(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let certificates = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())?;
    let end_entity = certificates.first()?;
    crate::der::serial_number(end_entity).map(<[u8]>::to_vec)
}

/// The ALPN protocol the handshake settled on.
#[must_use]
pub fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()
        .and_then(|any| any.downcast::<HandshakeData>().ok())
        .and_then(|data| data.protocol)
}

/// Whether a server asks for a client certificate and refuses a handshake without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    /// QUIC: every peer and client presents one.
    Required,
    /// HTTPS: asked for; whether a request needs one is the listener's decision.
    Optional,
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use rustls::server::danger::ClientCertVerifier;

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

    /// QUIC requires a client certificate; the HTTPS listener asks for one but serves a
    /// connection without (its API refuses such a caller). The cluster verifier must pass the
    /// chain verifier's choice on: rustls' default for a verifier is "required".
    #[test]
    fn the_cluster_verifier_requires_a_certificate_only_when_its_chain_verifier_does() {
        let cluster = ClusterId::new("c").expect("a valid cluster id");
        let ca = crate::ClusterCa::generate(&cluster).expect("a CA");
        let setup = TlsSetup {
            cluster: cluster.clone(),
            ca: ca.certificate(),
            identity: ca
                .node_identity(flotilla_raft::NodeId(1))
                .expect("an identity"),
        };
        let roots = || Arc::new(setup.roots().expect("roots"));
        let builder = || WebPkiClientVerifier::builder_with_provider(roots(), provider());
        let quic =
            ClusterClientVerifier::new(builder().build().expect("a verifier"), cluster.clone());
        assert!(quic.offer_client_auth() && quic.client_auth_mandatory());
        let optional = builder()
            .allow_unauthenticated()
            .build()
            .expect("a verifier");
        let https = ClusterClientVerifier::new(optional, cluster);
        assert!(https.offer_client_auth() && !https.client_auth_mandatory());
        let config = setup
            .https_server_config(Arc::default())
            .expect("an HTTPS configuration");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    /// Every CA gets a subject of its own, so a certificate of another CA of the same cluster
    /// is refused as one of an unknown issuer (alert `unknown_ca`), not as a bad signature:
    /// with one subject for all, the check took the trusted CA for the issuer and failed on
    /// its signature.
    #[test]
    fn another_cas_certificate_is_refused_as_an_unknown_issuer() {
        let cluster = ClusterId::new("same-cluster").expect("a valid cluster id");
        let ca_a = crate::ClusterCa::generate(&cluster).expect("a CA");
        let ca_b = crate::ClusterCa::generate(&cluster).expect("a CA");
        let trusting = |ca: &crate::ClusterCa| TlsSetup {
            cluster: cluster.clone(),
            ca: ca.certificate(),
            identity: ca
                .node_identity(flotilla_raft::NodeId(1))
                .expect("an identity"),
        };
        let (setup_a, setup_b) = (trusting(&ca_a), trusting(&ca_b));
        let subjects = |setup: &TlsSetup| {
            let roots = setup.roots().expect("roots").subjects();
            roots
                .iter()
                .map(|name| name.as_ref().to_vec())
                .collect::<Vec<_>>()
        };
        assert_ne!(subjects(&setup_a), subjects(&setup_b));
        let roots_b = Arc::new(setup_b.roots().expect("roots"));
        let chain = WebPkiClientVerifier::builder_with_provider(roots_b, provider())
            .build()
            .expect("a verifier");
        let verifier = ClusterClientVerifier::new(chain, cluster.clone());
        let from_a = &setup_a.identity.cert_chain[0];
        let now = rustls_pki_types::UnixTime::now();
        assert_eq!(
            verifier.verify_client_cert(from_a, &[], now).err(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        );
        let from_b = &setup_b.identity.cert_chain[0];
        assert!(verifier.verify_client_cert(from_b, &[], now).is_ok());
    }

    /// The reset key follows the private key: the same after a restart (the identity read
    /// again), different for another node, and not the private key itself.
    #[test]
    fn the_stateless_reset_key_survives_a_restart_and_differs_per_node() {
        let cluster = ClusterId::new("reset-test").expect("a valid cluster id");
        let ca = crate::ClusterCa::generate(&cluster).expect("a CA");
        let setup = |identity: Identity| TlsSetup {
            cluster: cluster.clone(),
            ca: ca.certificate(),
            identity,
        };
        let node = ca
            .node_identity(flotilla_raft::NodeId(1))
            .expect("an identity");
        let other = ca
            .node_identity(flotilla_raft::NodeId(2))
            .expect("an identity");
        let tag = |setup: &TlsSetup| {
            ring::hmac::sign(&setup.stateless_reset_key(), b"a connection id")
                .as_ref()
                .to_vec()
        };
        let before = setup(node.clone());
        let restarted = setup(node.clone());
        assert_eq!(tag(&before), tag(&restarted));
        assert_ne!(tag(&before), tag(&setup(other)));
        let raw = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, node.key.secret_der());
        assert_ne!(
            tag(&before),
            ring::hmac::sign(&raw, b"a connection id").as_ref().to_vec()
        );
    }
}
