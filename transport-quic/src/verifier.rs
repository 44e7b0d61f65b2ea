//! The server-side client-certificate check: the cluster CA's chain check, then the cluster id.
//!
//! rustls' `WebPkiClientVerifier` proves the certificate was signed by the cluster CA and is in
//! its validity window; this wrapper also refuses, during the handshake, any certificate whose
//! SAN names another cluster or no Flotilla identity at all.

use crate::identity::{ClusterId, PeerIdentity};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::sync::Arc;

/// A client-certificate verifier that accepts only identities of one cluster.
#[derive(Debug)]
pub struct ClusterClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    cluster: ClusterId,
}

impl ClusterClientVerifier {
    /// Wraps a chain verifier (built on the cluster CA) with the cluster-id check.
    #[must_use]
    pub fn new(inner: Arc<dyn ClientCertVerifier>, cluster: ClusterId) -> Self {
        Self { inner, cluster }
    }
}

impl ClientCertVerifier for ClusterClientVerifier {
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
