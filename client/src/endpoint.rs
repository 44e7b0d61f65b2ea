//! Where a client starts: `host:port`, optionally with the node's id in front (`3@host:port`).
//! The host is a name or an IP address; a name is resolved when the client dials, and again
//! whenever it dials anew.

use flotilla_raft::NodeId;
use std::fmt;
use std::str::FromStr;

/// A node to start from: a host name or IP address and a port, and the node's id if known.
/// Without an id, the client learns it from the node's certificate when it connects.
///
/// Written `host:port`, `[ipv6]:port`, or `id@host:port`:
///
/// ```
/// use flotilla_client::Endpoint;
///
/// let endpoint: Endpoint = "db1.example:7000".parse()?;
/// assert_eq!(endpoint.node, None);
/// let endpoint: Endpoint = "3@[::1]:7000".parse()?;
/// assert_eq!(endpoint.address(), "[::1]:7000");
/// # Ok::<(), flotilla_client::EndpointError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The node's id, if known (its certificate names it in any case).
    pub node: Option<NodeId>,
    /// A host name or an IP address (an IPv6 address without brackets).
    pub host: String,
    /// The node's QUIC port.
    pub port: u16,
}

/// Why text is not an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No `:port` at the end.
    #[error("`{0}` has no port: write host:port, e.g. db1.example:7000")]
    NoPort(String),
    /// The port is not a number from 1 to 65535.
    #[error("`{port}` in `{text}` is not a port (1 to 65535)")]
    BadPort {
        /// The endpoint as written.
        text: String,
        /// The port as written.
        port: String,
    },
    /// The host is empty or holds characters no host name has.
    #[error("`{host}` in `{text}` is not a host name or an IP address")]
    BadHost {
        /// The endpoint as written.
        text: String,
        /// The host as written.
        host: String,
    },
    /// The part before `@` is not a node id.
    #[error("`{id}` in `{text}` is not a node id (a positive integer)")]
    BadNodeId {
        /// The endpoint as written.
        text: String,
        /// The id as written.
        id: String,
    },
}

impl Endpoint {
    /// The endpoint `host:port` of a node whose id is not known.
    #[must_use]
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            node: None,
            host: host.to_owned(),
            port,
        }
    }

    /// `host:port` as a resolver takes it (an IPv6 address in brackets).
    #[must_use]
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl From<std::net::SocketAddr> for Endpoint {
    fn from(address: std::net::SocketAddr) -> Self {
        Self::new(&address.ip().to_string(), address.port())
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Self, EndpointError> {
        let (node, address) = match text.split_once('@') {
            Some((id, address)) => (Some(node_id(text, id)?), address),
            None => (None, text),
        };
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| EndpointError::NoPort(text.to_owned()))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| EndpointError::BadPort {
                text: text.to_owned(),
                port: port.to_owned(),
            })?;
        let host = host
            .strip_prefix('[')
            .and_then(|host| host.strip_suffix(']'))
            .unwrap_or(host);
        if !is_host(host) {
            return Err(EndpointError::BadHost {
                text: text.to_owned(),
                host: host.to_owned(),
            });
        }
        Ok(Self {
            node,
            host: host.to_owned(),
            port,
        })
    }
}

fn node_id(text: &str, id: &str) -> Result<NodeId, EndpointError> {
    id.parse::<u64>()
        .ok()
        .filter(|id| *id != 0)
        .map(NodeId)
        .ok_or_else(|| EndpointError::BadNodeId {
            text: text.to_owned(),
            id: id.to_owned(),
        })
}

/// Whether `host` may be a DNS name or an IP address: not empty, and only letters, digits, `.`,
/// `-`, `_` and (IPv6) `:`.
fn is_host(host: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    !host.is_empty() && host.chars().all(allowed)
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.node {
            Some(node) => write!(f, "{}@{}", node.0, self.address()),
            None => f.write_str(&self.address()),
        }
    }
}

/// Parses a comma-separated list of endpoints.
///
/// # Errors
/// The first entry that is not an endpoint.
pub fn parse_endpoints(text: &str) -> Result<Vec<Endpoint>, EndpointError> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(Endpoint::from_str)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_names_addresses_and_optional_ids() {
        let parse = |text: &str| text.parse::<Endpoint>();
        assert_eq!(
            parse("db1.example:7000"),
            Ok(Endpoint::new("db1.example", 7000))
        );
        let with_id = parse("3@10.0.0.3:7000").unwrap();
        assert_eq!(
            (with_id.node, with_id.host.as_str()),
            (Some(NodeId(3)), "10.0.0.3")
        );
        assert_eq!(parse("[::1]:7").unwrap().host, "::1");
        for text in ["3@[::1]:7000", "db1.example:7000", "127.0.0.1:1"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn malformed_endpoints_are_refused_with_what_is_wrong() {
        let error = |text: &str| text.parse::<Endpoint>().unwrap_err().to_string();
        assert!(error("db1.example").contains("has no port"));
        assert!(error("db1.example:0").contains("is not a port"));
        assert!(error("db1.example:x").contains("is not a port"));
        assert!(error(":7000").contains("is not a host name"));
        assert!(error("db 1:7000").contains("is not a host name"));
        assert!(error("0@db1:7000").contains("is not a node id"));
        assert!(error("x@db1:7000").contains("is not a node id"));
    }
}
