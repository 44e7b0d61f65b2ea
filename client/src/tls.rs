//! The certificates a client (or a node) loads from its TLS directory, with errors that say
//! which `flotilla certs` command makes what is missing.

use flotilla_transport_quic::{CertError, ClusterId, Identity, TlsSetup};
use std::path::Path;

/// The TLS material of `stem` (`node-<id>` or `client-<name>`) in `dir`: the cluster CA
/// (`ca.pem`) and `<stem>.pem` / `<stem>.key`.
///
/// # Errors
/// A bad cluster id, or a file that is missing or does not parse, in words.
pub fn load_tls(dir: &Path, cluster_id: &str, stem: &str) -> Result<TlsSetup, TlsLoadError> {
    let cluster =
        ClusterId::new(cluster_id).ok_or_else(|| TlsLoadError::ClusterId(cluster_id.to_owned()))?;
    let ca_error = |source| TlsLoadError::Certificates {
        hint: format!(
            "a new CA and certificates: `flotilla certs --dir {}`",
            dir.display()
        ),
        source,
    };
    let ca = flotilla_transport_quic::load_ca(&dir.join("ca.pem")).map_err(ca_error)?;
    // The CA is there: what is missing is this identity's certificate, which the CA signs.
    let add = match (stem.strip_prefix("node-"), stem.strip_prefix("client-")) {
        (Some(node), _) => format!("--add-node {node}"),
        (_, Some(name)) => format!("--add-client {name}"),
        _ => String::new(),
    };
    let identity_error = |source| TlsLoadError::Certificates {
        hint: format!(
            "sign one with the cluster's CA: `flotilla certs --dir {} --cluster-id {cluster_id} {add}`",
            dir.display()
        ),
        source,
    };
    let identity = Identity::load(
        &dir.join(format!("{stem}.pem")),
        &dir.join(format!("{stem}.key")),
    )
    .map_err(identity_error)?;
    Ok(TlsSetup {
        cluster,
        ca,
        identity,
    })
}

/// Why a node's or a client's certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsLoadError {
    /// The cluster id cannot name certificates.
    #[error("`{0}` is not a valid cluster id (lowercase letters, digits and dashes)")]
    ClusterId(String),
    /// A certificate or key file is missing or unusable.
    #[error("{source} ({hint})")]
    Certificates {
        /// The command that makes what is missing.
        hint: String,
        /// What was wrong.
        source: CertError,
    },
}
