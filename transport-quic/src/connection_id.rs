//! The connection IDs a node's endpoint issues: 8 random bytes and an 8-byte HMAC tag of them,
//! under a key derived from the node's private key (`TlsSetup::endpoint_config`).
//!
//! A node restarted after a crash must recognize the IDs its previous process issued to answer
//! packets on them with a stateless reset, so the tag's key survives restarts. The random part
//! is 64 bits: RFC 9000 §10.3.2 asks that an ID whose reset token was revealed is not issued
//! again under the same reset key, and quinn's default generator (24 random bits and a keyed
//! hash) makes a restarted process likely to reissue some of its predecessor's IDs over time.
//! The tag is a filter for stray packets; the reset token (an HMAC under another key) is what
//! peers trust.

use quinn::{ConnectionId, ConnectionIdGenerator};
use quinn_proto::InvalidCid;
use ring::rand::SecureRandom;
use std::time::Duration;

const NONCE_BYTES: usize = 8;
const TAG_BYTES: usize = 8;

/// Issues and recognizes this node's connection IDs.
pub(crate) struct KeyedConnectionIds {
    key: ring::hmac::Key,
    random: ring::rand::SystemRandom,
}

impl KeyedConnectionIds {
    pub(crate) fn new(key: ring::hmac::Key) -> Self {
        Self {
            key,
            random: ring::rand::SystemRandom::new(),
        }
    }

    fn tag(&self, nonce: &[u8]) -> [u8; TAG_BYTES] {
        let mut tag = [0; TAG_BYTES];
        tag.copy_from_slice(&ring::hmac::sign(&self.key, nonce).as_ref()[..TAG_BYTES]);
        tag
    }
}

impl ConnectionIdGenerator for KeyedConnectionIds {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0; NONCE_BYTES + TAG_BYTES];
        // The system's random source fails only where TLS could not run either.
        self.random
            .fill(&mut bytes[..NONCE_BYTES])
            .expect("the operating system's random source");
        let tag = self.tag(&bytes[..NONCE_BYTES]);
        bytes[NONCE_BYTES..].copy_from_slice(&tag);
        ConnectionId::new(&bytes)
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        if cid.len() != NONCE_BYTES + TAG_BYTES {
            return Err(InvalidCid);
        }
        let (nonce, tag) = cid.split_at(NONCE_BYTES);
        if self.tag(nonce) == tag {
            Ok(())
        } else {
            Err(InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        NONCE_BYTES + TAG_BYTES
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(key: &[u8]) -> KeyedConnectionIds {
        KeyedConnectionIds::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key))
    }

    #[test]
    fn a_restarted_generator_with_the_same_key_recognizes_the_ids_and_no_other_does() {
        let mut before = generator(b"node key");
        let restarted = generator(b"node key");
        let other = generator(b"another node key");
        let ids: Vec<ConnectionId> = (0..100).map(|_| before.generate_cid()).collect();
        for id in &ids {
            assert_eq!(id.len(), restarted.cid_len());
            assert!(restarted.validate(id).is_ok());
            assert!(other.validate(id).is_err());
            let mut tampered = id.to_vec();
            tampered[0] ^= 1;
            assert!(restarted.validate(&ConnectionId::new(&tampered)).is_err());
        }
        let distinct: std::collections::BTreeSet<Vec<u8>> =
            ids.iter().map(|id| id.to_vec()).collect();
        assert_eq!(distinct.len(), ids.len(), "random parts repeat");
        assert!(restarted.validate(&ConnectionId::new(&[7; 8])).is_err());
    }
}
