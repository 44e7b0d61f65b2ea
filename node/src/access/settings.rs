//! The `[access]` section of the node configuration: which role each client certificate has,
//! what node certificates may do on the client protocol, the deny-list, and the refusal log's
//! limits; and its validation, with each rule broken as a sentence.

use super::Role;
use flotilla_transport_quic::identity::is_label;
use serde::Deserialize;
use std::collections::BTreeSet;

/// The bytes of a certificate serial number at most (RFC 5280 §4.1.2.2).
const SERIAL_BYTES_MAX: usize = 20;
/// The longest refusal-log interval (an hour): longer hides attacks from the log for too long.
const REFUSAL_LOG_INTERVAL_MS_LIMIT: u64 = 3_600_000;
/// The most client names the refusal log may track at once (each a few dozen bytes).
const REFUSAL_LOG_CLIENTS_LIMIT: usize = 1_000_000;

/// Who may do what (`docs/security.md`, "Who may do what").
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    /// The role of a client certificate no grant names. Unset: `admin` while `grants` is empty
    /// (every certificate the CA signed may do everything, as before roles existed), `none`
    /// once any grant is configured.
    pub default_role: Option<Role>,
    /// The role of node certificates on the client protocol, besides the node-to-node requests
    /// every node may send (asking a peer about a data directory at bootstrap).
    pub node_role: Role,
    /// One grant per client name.
    pub grants: Vec<Grant>,
    /// Client names whose every certificate is refused.
    pub deny_clients: Vec<String>,
    /// Node ids whose every certificate is refused on the client protocol and between nodes.
    pub deny_nodes: Vec<u64>,
    /// Serial numbers (hex, as `openssl x509 -serial` prints them; colons allowed) of single
    /// certificates that are refused.
    pub deny_serials: Vec<String>,
    /// At most one refusal line per client name per this many milliseconds; the lines between
    /// are counted and the next line says how many.
    pub refusal_log_interval_ms: u64,
    /// Client names the refusal log tracks at once; refusals of further names in the same
    /// interval are counted, not logged.
    pub refusal_log_clients_max: usize,
}

/// The role one client name has, on all keys or on keys starting with one of `prefixes`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The client's name (its certificate is `client-<name>`).
    pub client: String,
    /// What it may do.
    pub role: Role,
    /// The key prefixes its reads and writes are limited to (UTF-8); absent or empty: all keys.
    /// Status and other administrative requests are not about keys: an `admin` grant with
    /// prefixes still allows them.
    #[serde(default)]
    pub prefixes: Vec<String>,
}

/// A rule of the `[access]` section that the configuration breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// A grant or deny entry names no valid client.
    #[error("{what} names client {name:?}, which is not a client name (a lowercase DNS label)")]
    BadClientName {
        /// Where: "a grant" or "deny_clients".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// Two grants name one client.
    #[error("client {0:?} has two grants; give each client one grant (with several prefixes)")]
    DuplicateGrant(String),
    /// A grant's prefix is empty or given twice.
    #[error("the grant of client {client:?} has an empty or repeated prefix {prefix:?}")]
    BadPrefix {
        /// The client.
        client: String,
        /// The prefix.
        prefix: String,
    },
    /// A deny-list names something twice.
    #[error("{what} names {name} twice")]
    DuplicateDenial {
        /// Which list.
        what: &'static str,
        /// What is named twice.
        name: String,
    },
    /// `deny_nodes` names node 0.
    #[error("deny_nodes names node 0; node ids start at 1")]
    NodeZero,
    /// A serial number is not hex, is empty or is longer than 20 bytes.
    #[error("deny_serials entry {0:?} is not a certificate serial number (1 to 20 bytes of hex)")]
    BadSerial(String),
    /// The refusal log's interval is out of range.
    #[error("refusal_log_interval_ms must be 1 to {REFUSAL_LOG_INTERVAL_MS_LIMIT}, not {0}")]
    LogInterval(u64),
    /// The refusal log's name count is out of range.
    #[error("refusal_log_clients_max must be 1 to {REFUSAL_LOG_CLIENTS_LIMIT}, not {0}")]
    LogClients(usize),
}

impl AccessSettings {
    /// Checks every rule.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self) -> Result<(), AccessError> {
        self.check_grants()?;
        self.check_denials()?;
        if !(1..=REFUSAL_LOG_INTERVAL_MS_LIMIT).contains(&self.refusal_log_interval_ms) {
            return Err(AccessError::LogInterval(self.refusal_log_interval_ms));
        }
        if !(1..=REFUSAL_LOG_CLIENTS_LIMIT).contains(&self.refusal_log_clients_max) {
            return Err(AccessError::LogClients(self.refusal_log_clients_max));
        }
        Ok(())
    }

    /// The role of clients without a grant (see `default_role`).
    #[must_use]
    pub fn effective_default_role(&self) -> Role {
        match (self.default_role, self.grants.is_empty()) {
            (Some(role), _) => role,
            (None, true) => Role::Admin,
            (None, false) => Role::None,
        }
    }

    /// The denied serial numbers as bytes, leading zeros dropped.
    ///
    /// # Errors
    /// An entry that is not a serial number.
    pub fn serials(&self) -> Result<Vec<Vec<u8>>, AccessError> {
        self.deny_serials
            .iter()
            .map(|text| parse_serial(text).ok_or_else(|| AccessError::BadSerial(text.clone())))
            .collect()
    }

    fn check_grants(&self) -> Result<(), AccessError> {
        let mut clients = BTreeSet::new();
        for grant in &self.grants {
            if !is_label(&grant.client) {
                return Err(AccessError::BadClientName {
                    what: "a grant",
                    name: grant.client.clone(),
                });
            }
            if !clients.insert(grant.client.as_str()) {
                return Err(AccessError::DuplicateGrant(grant.client.clone()));
            }
            let mut prefixes = BTreeSet::new();
            for prefix in &grant.prefixes {
                if prefix.is_empty() || !prefixes.insert(prefix) {
                    return Err(AccessError::BadPrefix {
                        client: grant.client.clone(),
                        prefix: prefix.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn check_denials(&self) -> Result<(), AccessError> {
        if let Some(name) = self.deny_clients.iter().find(|name| !is_label(name)) {
            return Err(AccessError::BadClientName {
                what: "deny_clients",
                name: name.clone(),
            });
        }
        if self.deny_nodes.contains(&0) {
            return Err(AccessError::NodeZero);
        }
        let serials = self.serials()?;
        let nodes: Vec<String> = self.deny_nodes.iter().map(u64::to_string).collect();
        let hex: Vec<String> = serials.iter().map(|serial| to_hex(serial)).collect();
        for (what, names) in [
            ("deny_clients", &self.deny_clients),
            ("deny_nodes", &nodes),
            ("deny_serials", &hex),
        ] {
            let mut seen = BTreeSet::new();
            if let Some(name) = names.iter().find(|name| !seen.insert(*name)) {
                return Err(AccessError::DuplicateDenial {
                    what,
                    name: name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A serial number written in hex, with or without colons (`1A:2B`, `1a2b`), leading zero
/// bytes dropped; `None` if it is not 1 to 20 bytes of hex.
#[must_use]
pub fn parse_serial(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|&byte| byte != b':')
        .map(|byte| {
            char::from(byte)
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
        })
        .collect::<Option<_>>()?;
    if digits.is_empty() {
        return None;
    }
    // An odd count of digits has an implied leading zero.
    let padded: Vec<u8> = std::iter::repeat_n(0, digits.len() % 2)
        .chain(digits)
        .collect();
    let bytes: Vec<u8> = padded
        .chunks_exact(2)
        .map(|pair| pair.iter().fold(0, |byte, digit| (byte << 4) | digit))
        .collect();
    let bytes = flotilla_transport_quic::der::strip_leading_zeros(&bytes).to_vec();
    (!bytes.is_empty() && bytes.len() <= SERIAL_BYTES_MAX).then_some(bytes)
}

/// `bytes` in lowercase hex.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
