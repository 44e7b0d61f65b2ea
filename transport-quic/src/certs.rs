//! Development certificates: a private cluster CA and node/client certificates made with rcgen,
//! in memory or written to a directory with private keys at mode 0600.
//!
//! `flotilla certs` calls [`write_dev_certs`]; tests call [`ClusterCa::generate`] directly.

use crate::error::CertError;
use crate::identity::{ClusterId, PeerIdentity, is_label};
use flotilla_raft::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// How long dev certificates are valid.
const VALIDITY_DAYS: i64 = 365;

/// A certificate chain and its private key: what a node or a client presents.
#[derive(Debug)]
pub struct Identity {
    /// The end-entity certificate first, then any intermediates.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The private key of the end-entity certificate.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Loads a PEM certificate chain and a PEM private key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CertError> {
        let cert_chain = CertificateDer::pem_file_iter(cert_path)
            .and_then(|items| items.collect::<Result<Vec<_>, _>>())
            .map_err(|error| pem_error(cert_path, &error))?;
        let key =
            PrivateKeyDer::from_pem_file(key_path).map_err(|error| pem_error(key_path, &error))?;
        Ok(Self { cert_chain, key })
    }
}

/// Loads a PEM CA certificate (the cluster's only trust root).
pub fn load_ca(path: &Path) -> Result<CertificateDer<'static>, CertError> {
    CertificateDer::from_pem_file(path).map_err(|error| pem_error(path, &error))
}

/// A private cluster CA that signs node and client certificates.
pub struct ClusterCa {
    cluster: ClusterId,
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new CA for `cluster`, with a fresh key and a subject of its own,
    /// `Flotilla CA <cluster> <16 random hex digits>`: certificate checks find an issuer by
    /// its name, so with one name for every CA a certificate from another CA was refused as
    /// a bad signature, not as signed by an unknown CA.
    pub fn generate(cluster: &ClusterId) -> Result<Self, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let suffix = random_hex()?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Flotilla CA {cluster} {suffix}"),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, OffsetDateTime::now_utc());
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        Ok(Self {
            cluster: cluster.clone(),
            certificate,
            key,
        })
    }

    /// The CA of `cluster` whose certificate is `certificate_path` (`ca.pem`) and whose key is
    /// `key_path` (`ca.key`), to sign more certificates; a key of another CA is refused. Its
    /// [`ClusterCa::certificate`] is an equivalent copy (same subject and key, new signature):
    /// nodes and clients keep trusting the original `ca.pem`.
    pub fn load(
        cluster: &ClusterId,
        certificate_path: &Path,
        key_path: &Path,
    ) -> Result<Self, CertError> {
        let original = load_ca(certificate_path)?;
        let name =
            crate::der::subject_common_name(&original).ok_or_else(|| CertError::CaSubject {
                path: certificate_path.to_owned(),
            })?;
        let key_pem = std::fs::read_to_string(key_path).map_err(|source| CertError::Io {
            path: key_path.to_owned(),
            source,
        })?;
        let key = KeyPair::from_pem(&key_pem)?;
        // rcgen signs under an issuer certificate: the same subject and key make certificates
        // that chain to the original (checked by `verify_chain`).
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        set_validity(&mut params, OffsetDateTime::now_utc());
        let certificate = params.self_signed(&key)?;
        let ca = Self {
            cluster: cluster.clone(),
            certificate,
            key,
        };
        let probe = ca.client_identity("probe")?;
        verify_chain(&original, &probe).map_err(|reason| CertError::CaKeyMismatch {
            certificate: certificate_path.to_owned(),
            key: key_path.to_owned(),
            reason,
        })?;
        Ok(ca)
    }

    /// The cluster this CA signs for.
    #[must_use]
    pub fn cluster(&self) -> &ClusterId {
        &self.cluster
    }

    /// The CA certificate: the one trust root every node and client loads.
    #[must_use]
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.certificate.der().clone()
    }

    /// A node certificate with SAN `node-<id>.<cluster>`, valid for a year from now.
    pub fn node_identity(&self, node: NodeId) -> Result<Identity, CertError> {
        let identity = PeerIdentity::Node {
            node,
            cluster: self.cluster.clone(),
        };
        let now = OffsetDateTime::now_utc();
        self.sign(
            &identity.san(),
            now - Duration::hours(1),
            now + Duration::days(VALIDITY_DAYS),
        )
    }

    /// A client certificate with SAN `client-<name>.<cluster>`, valid for a year from now.
    pub fn client_identity(&self, name: &str) -> Result<Identity, CertError> {
        if !is_label(name) {
            return Err(CertError::BadClientName {
                name: name.to_owned(),
            });
        }
        let identity = PeerIdentity::Client {
            name: name.to_owned(),
            cluster: self.cluster.clone(),
        };
        let now = OffsetDateTime::now_utc();
        self.sign(
            &identity.san(),
            now - Duration::hours(1),
            now + Duration::days(VALIDITY_DAYS),
        )
    }

    /// A certificate for any SAN and validity window (tests use it for expired or foreign certs).
    pub fn sign(
        &self,
        san: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Identity, CertError> {
        let (certificate, key) = self.sign_pem(san, not_before, not_after)?;
        let key =
            PrivateKeyDer::try_from(key.serialize_der()).map_err(|reason| CertError::Pem {
                path: PathBuf::new(),
                reason: reason.to_owned(),
            })?;
        Ok(Identity {
            cert_chain: vec![certificate.der().clone()],
            key,
        })
    }

    fn sign_pem(
        &self,
        san: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(rcgen::Certificate, KeyPair), CertError> {
        let mut params = CertificateParams::new(vec![san.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, san);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = extended_key_usages(san);
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.certificate, &self.key)?;
        Ok((certificate, key))
    }

    fn pem_pair(&self) -> (String, String) {
        (self.certificate.pem(), self.key.serialize_pem())
    }
}

/// 16 hex digits from the system's random source.
fn random_hex() -> Result<String, CertError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertError::Generate(rcgen::Error::RingUnspecified))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Nodes act as TLS server and client; clients only as TLS client, so their certificates cannot
/// serve as a node's server certificate.
fn extended_key_usages(san: &str) -> Vec<ExtendedKeyUsagePurpose> {
    match PeerIdentity::from_san(san) {
        Some(PeerIdentity::Client { .. }) => vec![ExtendedKeyUsagePurpose::ClientAuth],
        _ => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    }
}

fn set_validity(params: &mut CertificateParams, now: OffsetDateTime) {
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(VALIDITY_DAYS);
}

/// The files [`write_dev_certs`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCertFiles {
    /// `ca.pem`, the trust root.
    pub ca_certificate: PathBuf,
    /// `ca.key`, needed only to sign more certificates.
    pub ca_key: PathBuf,
    /// `(node-<id>.pem, node-<id>.key)` per node.
    pub nodes: Vec<(NodeId, PathBuf, PathBuf)>,
    /// `(client-<name>.pem, client-<name>.key)` per client.
    pub clients: Vec<(String, PathBuf, PathBuf)>,
}

/// Whether `identity`'s certificate chains to `ca` as a node would check it; why not otherwise.
fn verify_chain(ca: &CertificateDer<'static>, identity: &Identity) -> Result<(), String> {
    use rustls::server::WebPkiClientVerifier;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|error| error.to_string())?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
            .build()
            .map_err(|error| error.to_string())?;
    let end_entity = identity
        .cert_chain
        .first()
        .ok_or_else(|| "no certificate was made".to_owned())?;
    verifier
        .verify_client_cert(end_entity, &[], rustls_pki_types::UnixTime::now())
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// One certificate [`add_client_certs`] or [`add_node_certs`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertFiles {
    /// The client's name, or the node's id.
    pub name: String,
    /// `client-<name>.pem` or `node-<id>.pem`.
    pub certificate: PathBuf,
    /// `client-<name>.key` or `node-<id>.key` (mode 0600).
    pub key: PathBuf,
    /// The certificate's serial number in hex (what `[access] deny_serials` takes).
    pub serial_hex: String,
}

/// Signs one more client certificate per name with the CA already in `dir` (`ca.pem`,
/// `ca.key`), which is kept; an existing certificate file is never overwritten.
pub fn add_client_certs(
    dir: &Path,
    cluster: &ClusterId,
    names: &[&str],
) -> Result<Vec<ClientCertFiles>, CertError> {
    for name in names {
        if !is_label(name) {
            return Err(CertError::BadClientName {
                name: (*name).to_owned(),
            });
        }
    }
    let identities: Vec<PeerIdentity> = names
        .iter()
        .map(|name| PeerIdentity::Client {
            name: (*name).to_owned(),
            cluster: cluster.clone(),
        })
        .collect();
    add_certs(dir, cluster, &identities)
}

/// Signs a certificate for each new node id with the CA already in `dir` (`ca.pem`,
/// `ca.key`), which is kept; an existing certificate file is never overwritten. A node that
/// joins a running cluster needs one.
pub fn add_node_certs(
    dir: &Path,
    cluster: &ClusterId,
    nodes: &[NodeId],
) -> Result<Vec<ClientCertFiles>, CertError> {
    let identities: Vec<PeerIdentity> = nodes
        .iter()
        .map(|node| PeerIdentity::Node {
            node: *node,
            cluster: cluster.clone(),
        })
        .collect();
    add_certs(dir, cluster, &identities)
}

/// Signs a certificate for each identity with the CA in `dir`, refusing to overwrite a file.
fn add_certs(
    dir: &Path,
    cluster: &ClusterId,
    identities: &[PeerIdentity],
) -> Result<Vec<ClientCertFiles>, CertError> {
    let ca = ClusterCa::load(cluster, &dir.join("ca.pem"), &dir.join("ca.key"))?;
    let mut written = Vec::new();
    for identity in identities {
        let (name, stem) = match identity {
            PeerIdentity::Client { name, .. } => (name.clone(), format!("client-{name}")),
            PeerIdentity::Node { node, .. } => (node.0.to_string(), format!("node-{}", node.0)),
        };
        for extension in ["pem", "key"] {
            let path = dir.join(format!("{stem}.{extension}"));
            if path.exists() {
                return Err(CertError::Exists { path });
            }
        }
        let (certificate, key) = write_identity(dir, &stem, &ca, &identity.san())?;
        let serial_hex = load_ca(&certificate)
            .ok()
            .and_then(|der| crate::der::serial_number(&der).map(hex))
            .unwrap_or_default();
        written.push(ClientCertFiles {
            name,
            certificate,
            key,
            serial_hex,
        });
    }
    Ok(written)
}

/// `bytes` in lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Creates a CA and one certificate per node and client in `dir` (created if missing); every
/// private key is written with mode 0600. An existing CA is never replaced: every certificate
/// it signed would stop working (`CaExists`; remove `ca.pem` and `ca.key` first to mean it).
pub fn write_dev_certs(
    dir: &Path,
    cluster: &ClusterId,
    nodes: &[NodeId],
    clients: &[&str],
) -> Result<DevCertFiles, CertError> {
    for file in ["ca.pem", "ca.key"] {
        let path = dir.join(file);
        if path.exists() {
            return Err(CertError::CaExists { path });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let ca = ClusterCa::generate(cluster)?;
    let (ca_pem, ca_key_pem) = ca.pem_pair();
    let ca_certificate = write_file(&dir.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
    let ca_key = write_file(&dir.join("ca.key"), ca_key_pem.as_bytes(), 0o600)?;
    let mut files = DevCertFiles {
        ca_certificate,
        ca_key,
        nodes: Vec::new(),
        clients: Vec::new(),
    };
    for node in nodes {
        let san = PeerIdentity::Node {
            node: *node,
            cluster: cluster.clone(),
        }
        .san();
        let (cert, key) = write_identity(dir, &format!("node-{}", node.0), &ca, &san)?;
        files.nodes.push((*node, cert, key));
    }
    for name in clients {
        if !is_label(name) {
            return Err(CertError::BadClientName {
                name: (*name).to_owned(),
            });
        }
        let san = PeerIdentity::Client {
            name: (*name).to_owned(),
            cluster: cluster.clone(),
        }
        .san();
        let (cert, key) = write_identity(dir, &format!("client-{name}"), &ca, &san)?;
        files.clients.push(((*name).to_owned(), cert, key));
    }
    Ok(files)
}

fn write_identity(
    dir: &Path,
    stem: &str,
    ca: &ClusterCa,
    san: &str,
) -> Result<(PathBuf, PathBuf), CertError> {
    let now = OffsetDateTime::now_utc();
    let (certificate, key) = ca.sign_pem(
        san,
        now - Duration::hours(1),
        now + Duration::days(VALIDITY_DAYS),
    )?;
    let cert = write_file(
        &dir.join(format!("{stem}.pem")),
        certificate.pem().as_bytes(),
        0o644,
    )?;
    let key = write_file(
        &dir.join(format!("{stem}.key")),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    Ok((cert, key))
}

/// Writes `bytes` to `path` with `mode`, restricting the mode before any byte is written.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, CertError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io_error = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_error)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    Ok(path.to_owned())
}

fn pem_error(path: &Path, error: &rustls_pki_types::pem::Error) -> CertError {
    CertError::Pem {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A client added later chains to the CA `write_dev_certs` made, which stays as it was;
    /// nothing is overwritten, and a key of another CA is refused.
    #[test]
    fn clients_are_added_under_the_existing_ca() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = ClusterId::new("add-test").unwrap();
        write_dev_certs(dir.path(), &cluster, &[NodeId(1)], &["admin"]).unwrap();
        let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let added = add_client_certs(dir.path(), &cluster, &["reader", "writer"]).unwrap();
        assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
        let ca = load_ca(&dir.path().join("ca.pem")).unwrap();
        for files in &added {
            let identity = Identity::load(&files.certificate, &files.key).unwrap();
            verify_chain(&ca, &identity).unwrap();
            let serial = crate::der::serial_number(&identity.cert_chain[0]).unwrap();
            assert_eq!(files.serial_hex, hex(serial));
        }
        assert_ne!(added[0].serial_hex, added[1].serial_hex);
        let again = add_client_certs(dir.path(), &cluster, &["reader"]).unwrap_err();
        assert!(matches!(again, CertError::Exists { .. }), "{again}");
        let other = tempfile::tempdir().unwrap();
        write_dev_certs(other.path(), &cluster, &[], &[]).unwrap();
        std::fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
        let mismatch = add_client_certs(dir.path(), &cluster, &["late"]).unwrap_err();
        assert!(
            matches!(mismatch, CertError::CaKeyMismatch { .. }),
            "{mismatch}"
        );
    }

    /// A node that joins later gets its certificate from the existing CA, which a second
    /// `write_dev_certs` refuses to replace.
    #[test]
    fn nodes_are_added_under_the_existing_ca_which_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = ClusterId::new("add-test").unwrap();
        write_dev_certs(dir.path(), &cluster, &[NodeId(1)], &[]).unwrap();
        let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let replaced = write_dev_certs(dir.path(), &cluster, &[NodeId(1)], &[]).unwrap_err();
        assert!(matches!(replaced, CertError::CaExists { .. }), "{replaced}");
        assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
        let added = add_node_certs(dir.path(), &cluster, &[NodeId(4)]).unwrap();
        assert_eq!(added[0].certificate, dir.path().join("node-4.pem"));
        let identity = Identity::load(&added[0].certificate, &added[0].key).unwrap();
        verify_chain(&load_ca(&dir.path().join("ca.pem")).unwrap(), &identity).unwrap();
        let named = PeerIdentity::from_certificate(&identity.cert_chain[0]).unwrap();
        assert_eq!(
            named,
            PeerIdentity::Node {
                node: NodeId(4),
                cluster
            }
        );
        let again = add_node_certs(
            dir.path(),
            &ClusterId::new("add-test").unwrap(),
            &[NodeId(1)],
        );
        assert!(matches!(again, Err(CertError::Exists { .. })));
    }
}
