//! Who may do what: the permission each client request needs, the role each certificate has,
//! and the decision, as pure functions of the configuration (`[access]`) and the identity the
//! connection's certificate proves. The server asks [`Policy::check`] for every request it reads.
//!
//! Roles are cumulative: `read-only` may read the range map, get and scan; `read-write` may also
//! put, delete, compare-and-swap and open the session writes need; `admin` may also ask a node's
//! status and every administrative request to come (membership, split, backup). Node
//! certificates always may send the requests nodes send each other on the client protocol, and
//! beyond them have `node_role` (none by default).

mod refusals;
mod settings;

pub use refusals::RefusalLog;
pub use settings::{AccessError, AccessSettings, Grant, parse_serial, to_hex};

use crate::api::Request;
use flotilla_raft::NodeId;
use flotilla_storage::Command;
use flotilla_transport_quic::{ClusterId, PeerIdentity, Revocations};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};

/// What a certificate may do; each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Nothing.
    None,
    /// Read the range map, get and scan.
    ReadOnly,
    /// Also put, delete, compare-and-swap (and open write sessions).
    ReadWrite,
    /// Also status and the administrative requests.
    Admin,
}

/// What one request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Learn the range map and the directory (every client needs it to route).
    Route,
    /// Read keys.
    Read,
    /// Write keys.
    Write,
    /// Status and administrative requests.
    Admin,
    /// A request nodes send each other on the client protocol.
    NodeToNode,
}

/// The keys a request touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys<'a> {
    /// None (the request is not about keys).
    None,
    /// One key.
    One(&'a [u8]),
    /// The keys `start <= key < end` (`end: None`: to the end of the key space).
    Span {
        /// The first key.
        start: &'a [u8],
        /// The end, exclusive.
        end: Option<&'a [u8]>,
    },
}

/// What a request needs, the keys it touches, and what it does in words ("put").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need<'a> {
    /// The permission.
    pub permission: Permission,
    /// The keys.
    pub keys: Keys<'a>,
    /// What the request does, as the verb of "may not ...".
    pub action: &'static str,
}

/// What `request` needs. One exhaustive match: a new request kind does not compile until it
/// is given a permission here.
#[must_use]
pub fn need(request: &Request) -> Need<'_> {
    let of = |permission, action| Need {
        permission,
        keys: Keys::None,
        action,
    };
    match request {
        Request::Kv { command, .. } | Request::Write { command, .. } => command_need(command),
        Request::OpenSession { .. } => of(Permission::Write, "open a write session"),
        Request::RangeMap | Request::RangeMapRead => of(Permission::Route, "read the range map"),
        Request::Status => of(Permission::Admin, "read the node's status"),
        Request::Admin(_) => of(Permission::Admin, "change the cluster's placement"),
        Request::Placement => of(Permission::Admin, "read the cluster's placement"),
        Request::Join { .. } => of(Permission::NodeToNode, "join the cluster"),
        Request::SetAddress { .. } => of(Permission::NodeToNode, "change a node's address"),
        Request::MetaSnapshot => of(Permission::NodeToNode, "read the meta group's snapshot"),
        Request::KnownDirectory { .. } => of(
            Permission::NodeToNode,
            "ask which data directory a node has",
        ),
        // A backup reads whole ranges, whatever keys a reader's grant names.
        Request::BackupOpen { .. } | Request::BackupChunk { .. } | Request::BackupClose { .. } => {
            of(Permission::Admin, "back up a range")
        }
        Request::Split { .. } => of(Permission::Admin, "split a range"),
        Request::Merge { .. } => of(Permission::Admin, "merge ranges"),
    }
}

/// What a key-value command needs (a read sent as a session write is served as a read).
#[must_use]
pub fn command_need(command: &Command) -> Need<'_> {
    let (permission, keys, action) = match command {
        Command::Get { key } => (Permission::Read, Keys::One(key), "get"),
        Command::Scan { start, end, .. } => (
            Permission::Read,
            Keys::Span {
                start,
                end: end.as_deref(),
            },
            "scan",
        ),
        Command::Put { key, .. } => (Permission::Write, Keys::One(key), "put"),
        Command::Delete { key } => (Permission::Write, Keys::One(key), "delete"),
        Command::CompareAndSwap { key, .. } => {
            (Permission::Write, Keys::One(key), "compare-and-swap")
        }
    };
    Need {
        permission,
        keys,
        action,
    }
}

impl Role {
    /// Whether this role has `permission`.
    #[must_use]
    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::Route | Permission::Read => self >= Self::ReadOnly,
            Permission::Write => self >= Self::ReadWrite,
            Permission::Admin | Permission::NodeToNode => self == Self::Admin,
        }
    }
}

/// A refused request: who, and what it may not do, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("permission denied: {who} may not {action}")]
pub struct Denied {
    /// `client "reader"` or `node 3`.
    pub who: String,
    /// `put`, or `put key "x" (its grant covers keys starting with "app/")`.
    pub action: String,
}

impl From<Denied> for crate::api::ApiError {
    fn from(denied: Denied) -> Self {
        Self::PermissionDenied {
            who: denied.who,
            action: denied.action,
        }
    }
}

/// A role and the key prefixes it is limited to (none: every key).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Scope {
    role: Role,
    prefixes: Vec<Vec<u8>>,
}

impl Scope {
    fn everywhere(role: Role) -> Self {
        Self {
            role,
            prefixes: Vec::new(),
        }
    }

    /// Whether every key of `keys` lies under one of the prefixes.
    fn covers(&self, keys: Keys<'_>) -> bool {
        if self.prefixes.is_empty() {
            return true;
        }
        self.prefixes.iter().any(|prefix| match keys {
            Keys::None => true,
            Keys::One(key) => key.starts_with(prefix),
            Keys::Span { start, end } => {
                start.starts_with(prefix)
                    && match (end, prefix_end(prefix)) {
                        (_, None) => true,
                        (Some(end), Some(limit)) => end <= limit.as_slice(),
                        (None, Some(_)) => false,
                    }
            }
        })
    }
}

/// The first key after every key starting with `prefix`; `None` if there is none (the prefix
/// is all 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The decisions of one `[access]` configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    grants: HashMap<String, Scope>,
    default_role: Role,
    node_role: Role,
    denied_clients: HashSet<String>,
    denied_nodes: HashSet<NodeId>,
    denied_serials: HashSet<Vec<u8>>,
}

impl Policy {
    /// The policy `settings` describe.
    ///
    /// # Errors
    /// The settings break a rule.
    pub fn new(settings: &AccessSettings) -> Result<Self, AccessError> {
        settings.validate()?;
        let grants = settings
            .grants
            .iter()
            .map(|grant| {
                let scope = Scope {
                    role: grant.role,
                    prefixes: grant
                        .prefixes
                        .iter()
                        .map(|p| p.as_bytes().to_vec())
                        .collect(),
                };
                (grant.client.clone(), scope)
            })
            .collect();
        Ok(Self {
            grants,
            default_role: settings.effective_default_role(),
            node_role: settings.node_role,
            denied_clients: settings.deny_clients.iter().cloned().collect(),
            denied_nodes: settings.deny_nodes.iter().copied().map(NodeId).collect(),
            denied_serials: settings.serials()?.into_iter().collect(),
        })
    }

    /// Whether `who` may send `request`.
    ///
    /// # Errors
    /// Why not, as the sentence the client shows.
    pub fn check(&self, who: &PeerIdentity, request: &Request) -> Result<(), Denied> {
        let need = need(request);
        let denied = |action: String| Denied {
            who: describe(who),
            action,
        };
        if self.denies_name(who) {
            return Err(denied(format!(
                "{} (its certificate is on the deny-list)",
                need.action
            )));
        }
        let scope = match who {
            PeerIdentity::Node { node, .. } if need.permission == Permission::NodeToNode => {
                // A node joins, or moves, only under the id its certificate names.
                return match request {
                    Request::Join { node: joining, .. }
                    | Request::SetAddress { node: joining, .. }
                        if joining != node =>
                    {
                        Err(denied(format!("{} as {joining}", need.action)))
                    }
                    _ => Ok(()),
                };
            }
            PeerIdentity::Node { .. } => Scope::everywhere(self.node_role),
            PeerIdentity::Client { name, .. } => self
                .grants
                .get(name)
                .cloned()
                .unwrap_or_else(|| Scope::everywhere(self.default_role)),
        };
        if !scope.role.allows(need.permission) {
            return Err(denied(need.action.to_owned()));
        }
        if !scope.covers(need.keys) {
            return Err(denied(outside_prefixes(&need, &scope)));
        }
        Ok(())
    }

    /// `check`, for a certificate with serial number `serial`, which may be on the deny-list.
    ///
    /// # Errors
    /// Why not, as the sentence the client shows.
    pub fn check_certificate(
        &self,
        who: &PeerIdentity,
        serial: Option<&[u8]>,
        request: &Request,
    ) -> Result<(), Denied> {
        if self.revokes(who, serial) {
            return Err(Denied {
                who: describe(who),
                action: format!(
                    "{} (its certificate is on the deny-list)",
                    need(request).action
                ),
            });
        }
        self.check(who, request)
    }

    /// Whether a certificate proving `who` with serial number `serial` is on the deny-list.
    #[must_use]
    pub fn revokes(&self, who: &PeerIdentity, serial: Option<&[u8]>) -> bool {
        self.denies_name(who)
            || serial.is_some_and(|serial| {
                self.denied_serials
                    .contains(flotilla_transport_quic::der::strip_leading_zeros(serial))
            })
    }

    /// The deny-list, for the TLS handshake of `cluster`'s certificates.
    #[must_use]
    pub fn revocations(&self, cluster: &ClusterId) -> Revocations {
        let clients = self.denied_clients.iter().map(|name| PeerIdentity::Client {
            name: name.clone(),
            cluster: cluster.clone(),
        });
        let nodes = self.denied_nodes.iter().map(|&node| PeerIdentity::Node {
            node,
            cluster: cluster.clone(),
        });
        Revocations::new(clients.chain(nodes), self.denied_serials.iter().cloned())
    }

    fn denies_name(&self, who: &PeerIdentity) -> bool {
        match who {
            PeerIdentity::Node { node, .. } => self.denied_nodes.contains(node),
            PeerIdentity::Client { name, .. } => self.denied_clients.contains(name),
        }
    }
}

/// `client "reader"` or `node 3`.
#[must_use]
pub fn describe(who: &PeerIdentity) -> String {
    match who {
        PeerIdentity::Node { node, .. } => format!("node {}", node.0),
        PeerIdentity::Client { name, .. } => format!("client {name:?}"),
    }
}

/// "put key "x" (its grant covers keys starting with "app/")".
fn outside_prefixes(need: &Need<'_>, scope: &Scope) -> String {
    let text = |bytes: &[u8]| format!("{:?}", String::from_utf8_lossy(bytes));
    let keys = match need.keys {
        Keys::None => String::new(),
        Keys::One(key) => format!(" key {}", text(key)),
        Keys::Span { start, end } => format!(
            " from {} to {}",
            text(start),
            end.map_or_else(|| "the end".to_owned(), text)
        ),
    };
    let prefixes: Vec<String> = scope.prefixes.iter().map(|p| text(p)).collect();
    format!(
        "{}{keys} (its grant covers keys starting with {})",
        need.action,
        prefixes.join(" or ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
