//! The server-side client-certificate check: the cluster CA's chain check, then the cluster id,
//! then the deny-list.
//!
//! rustls' `WebPkiClientVerifier` proves the certificate was signed by the cluster CA and is in
//! its validity window; this wrapper also refuses, during the handshake, any certificate whose
//! SAN names another cluster or no Flotilla identity at all, and any certificate the node's
//! [`Revocations`] name (by identity or by serial number), so a leaked key is shut out without
//! replacing the CA.

use crate::der;
use crate::identity::{ClusterId, PeerIdentity};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::HashSet;
use std::sync::Arc;

/// Certificates refused although the CA signed them: by the identity they prove (every
/// certificate of `client-leaked`, say) or by serial number (one certificate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    identities: HashSet<String>,
    serials: HashSet<Vec<u8>>,
}

impl Revocations {
    /// Refuses every certificate of `identities` and every certificate whose serial number is
    /// in `serials` (big-endian; leading zero bytes do not count).
    #[must_use]
    pub fn new(
        identities: impl IntoIterator<Item = PeerIdentity>,
        serials: impl IntoIterator<Item = Vec<u8>>,
    ) -> Self {
        Self {
            identities: identities.into_iter().map(|who| who.san()).collect(),
            serials: serials
                .into_iter()
                .map(|serial| der::strip_leading_zeros(&serial).to_vec())
                .collect(),
        }
    }

    /// Whether nothing is refused.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.serials.is_empty()
    }

    /// Whether a certificate proving `identity` with serial number `serial` is refused.
    #[must_use]
    pub fn refuses(&self, identity: &PeerIdentity, serial: Option<&[u8]>) -> bool {
        self.identities.contains(&identity.san())
            || serial.is_some_and(|serial| self.serials.contains(der::strip_leading_zeros(serial)))
    }
}

/// A client-certificate verifier that accepts only identities of one cluster, and none the
/// deny-list names.
#[derive(Debug)]
pub struct ClusterClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    cluster: ClusterId,
    revoked: Arc<Revocations>,
}

impl ClusterClientVerifier {
    /// Wraps a chain verifier (built on the cluster CA) with the cluster-id check.
    #[must_use]
    pub fn new(inner: Arc<dyn ClientCertVerifier>, cluster: ClusterId) -> Self {
        Self::revoking(inner, cluster, Arc::default())
    }

    /// `new`, also refusing the certificates `revoked` names.
    #[must_use]
    pub fn revoking(
        inner: Arc<dyn ClientCertVerifier>,
        cluster: ClusterId,
        revoked: Arc<Revocations>,
    ) -> Self {
        Self {
            inner,
            cluster,
            revoked,
        }
    }
}

impl ClientCertVerifier for ClusterClientVerifier {
    // Whether a certificate is asked for, and required, is the chain verifier's choice: QUIC
    // requires one, the node's HTTPS listener only asks (its API checks there was one).
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let identity = PeerIdentity::from_certificate(end_entity).map_err(|_| {
            Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })?;
        if identity.cluster() != &self.cluster {
            // The endpoint counts and logs the failed handshake (rate-limited); a line here
            // for every attempt would let a flood of them fill the log.
            tracing::debug!(peer = %identity, cluster = %self.cluster, "refused a certificate of another cluster");
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        }
        if self
            .revoked
            .refuses(&identity, der::serial_number(end_entity))
        {
            // Counted and logged by the endpoint under `Refusal::Revoked`, rate-limited.
            tracing::debug!(peer = %identity, "refused a revoked certificate (access deny-list)");
            return Err(Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server-certificate verifier for a client that dials an address without knowing which
/// node listens there: the certificate must chain to the cluster CA, be valid now, and name a
/// node of this cluster (`node-<id>.<cluster-id>`); whichever node that is, the client reads the
/// id from the certificate once the handshake is done. A client certificate, or a node
/// certificate of another cluster, is refused as not valid for the name.
#[derive(Debug)]
pub struct ClusterNodeVerifier {
    inner: Arc<WebPkiServerVerifier>,
    cluster: ClusterId,
}

impl ClusterNodeVerifier {
    /// Wraps a chain verifier (built on the cluster CA) with the node-of-this-cluster check.
    #[must_use]
    pub fn new(inner: Arc<WebPkiServerVerifier>, cluster: ClusterId) -> Self {
        Self { inner, cluster }
    }
}

impl ServerCertVerifier for ClusterNodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let not_a_node = || Error::InvalidCertificate(CertificateError::NotValidForName);
        let identity = PeerIdentity::from_certificate(end_entity).map_err(|_| not_a_node())?;
        let is_node_of_cluster =
            matches!(&identity, PeerIdentity::Node { cluster, .. } if cluster == &self.cluster);
        if !is_node_of_cluster {
            return Err(not_a_node());
        }
        // The name checked is the one the certificate itself carries, so what this adds to
        // the chain check is only what was checked above: it names a node of this cluster.
        let name = ServerName::try_from(identity.san()).map_err(|_| not_a_node())?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
