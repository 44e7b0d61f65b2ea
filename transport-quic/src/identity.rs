//! Who is on the other end: the cluster id and the identity a certificate's SAN names.
//!
//! A node's certificate carries the DNS SAN `node-<id>.<cluster-id>`, a client's
//! `client-<name>.<cluster-id>`. Identity comes from the certificate, never from the address.

use crate::error::TlsError;
use flotilla_raft::NodeId;
use rustls_pki_types::CertificateDer;
use std::fmt;

/// The id of a cluster: one or more lowercase DNS labels, like `prod-eu` or `test.run7`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClusterId(String);

impl ClusterId {
    /// A cluster id, if `id` is a valid lowercase DNS name.
    #[must_use]
    pub fn new(id: &str) -> Option<Self> {
        let valid = !id.is_empty() && id.len() <= 200 && id.split('.').all(is_label);
        valid.then(|| Self(id.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `label` is a lowercase DNS label (letters, digits, inner hyphens, 1-63 bytes).
#[must_use]
pub fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(allowed)
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// The role and name a certificate proves, within one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerIdentity {
    /// A cluster node: may carry Raft batches.
    Node {
        /// The node's id.
        node: NodeId,
        /// Its cluster.
        cluster: ClusterId,
    },
    /// A client: may only use the client protocol.
    Client {
        /// The client's name.
        name: String,
        /// Its cluster.
        cluster: ClusterId,
    },
}

impl PeerIdentity {
    /// The cluster the identity belongs to.
    #[must_use]
    pub fn cluster(&self) -> &ClusterId {
        match self {
            Self::Node { cluster, .. } | Self::Client { cluster, .. } => cluster,
        }
    }

    /// The SAN that proves this identity.
    #[must_use]
    pub fn san(&self) -> String {
        match self {
            Self::Node { node, cluster } => node_san(*node, cluster),
            Self::Client { name, cluster } => format!("client-{name}.{cluster}"),
        }
    }

    /// Parses a SAN of the form `node-<id>.<cluster>` or `client-<name>.<cluster>`.
    #[must_use]
    pub fn from_san(san: &str) -> Option<Self> {
        let (first, rest) = san.split_once('.')?;
        let cluster = ClusterId::new(rest)?;
        if let Some(id) = first.strip_prefix("node-") {
            let canonical = !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && (id == "0" || !id.starts_with('0'));
            let node = NodeId(id.parse().ok().filter(|_| canonical)?);
            return Some(Self::Node { node, cluster });
        }
        let name = first
            .strip_prefix("client-")
            .filter(|name| is_label(name))?;
        Some(Self::Client {
            name: name.to_owned(),
            cluster,
        })
    }

    /// The one Flotilla identity in a (chain-verified) certificate; several are refused.
    pub fn from_certificate(certificate: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let parsed = webpki::EndEntityCert::try_from(certificate)
            .map_err(|error| TlsError::CertificateUnparsable(error.to_string()))?;
        let mut identities = parsed.valid_dns_names().filter_map(Self::from_san);
        match (identities.next(), identities.next()) {
            (Some(identity), None) => Ok(identity),
            _ => Err(TlsError::NoIdentity),
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.san())
    }
}

/// The SAN, and TLS server name, of node `node` in `cluster`.
#[must_use]
pub fn node_san(node: NodeId, cluster: &ClusterId) -> String {
    format!("node-{}.{cluster}", node.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_and_client_sans_roundtrip() {
        let cluster = ClusterId::new("test.c1").unwrap();
        let node = PeerIdentity::Node {
            node: NodeId(42),
            cluster: cluster.clone(),
        };
        let client = PeerIdentity::Client {
            name: "ops".to_owned(),
            cluster,
        };
        assert_eq!(node.san(), "node-42.test.c1");
        assert_eq!(PeerIdentity::from_san(&node.san()), Some(node));
        assert_eq!(PeerIdentity::from_san(&client.san()), Some(client));
    }

    #[test]
    fn malformed_sans_name_nobody() {
        for san in [
            "node-.c",
            "node-01.c",
            "node-x.c",
            "node-1",
            "client-.c",
            "client-A.c",
            "peer-1.c",
            "node-1.-c",
            "node-1.C",
        ] {
            assert_eq!(PeerIdentity::from_san(san), None, "{san}");
        }
    }

    #[test]
    fn cluster_ids_are_lowercase_dns_names() {
        assert!(ClusterId::new("prod-eu.zone1").is_some());
        for bad in ["", "Prod", "a..b", "-a", "a_b", "a."] {
            assert!(ClusterId::new(bad).is_none(), "{bad}");
        }
    }
}
