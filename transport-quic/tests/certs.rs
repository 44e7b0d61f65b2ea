//! Dev certificates: written with private keys at mode 0600, loadable, and naming the right
//! identities.
#![allow(clippy::unwrap_used)]

use flotilla_raft::NodeId;
use flotilla_transport_quic::{ClusterId, Identity, PeerIdentity, load_ca, write_dev_certs};
use std::os::unix::fs::PermissionsExt;

#[test]
fn dev_certs_are_written_loadable_and_keys_private() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClusterId::new("dev").unwrap();
    let files = write_dev_certs(dir.path(), &cluster, &[NodeId(1), NodeId(2)], &["ops"]).unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files.ca_key), 0o600);
    load_ca(&files.ca_certificate).unwrap();
    for (node, cert, key) in &files.nodes {
        assert_eq!(mode(key), 0o600);
        let identity = Identity::load(cert, key).unwrap();
        let parsed = PeerIdentity::from_certificate(&identity.cert_chain[0]).unwrap();
        assert_eq!(
            parsed,
            PeerIdentity::Node {
                node: *node,
                cluster: cluster.clone()
            }
        );
    }
    let (name, cert, key) = &files.clients[0];
    assert_eq!(mode(key), 0o600);
    let identity = Identity::load(cert, key).unwrap();
    let parsed = PeerIdentity::from_certificate(&identity.cert_chain[0]).unwrap();
    assert_eq!(
        parsed,
        PeerIdentity::Client {
            name: name.clone(),
            cluster
        }
    );
}

#[test]
fn a_bad_client_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClusterId::new("dev").unwrap();
    assert!(write_dev_certs(dir.path(), &cluster, &[], &["Not A Label"]).is_err());
}
