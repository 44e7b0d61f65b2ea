//! The Flotilla client: starts from configured endpoints, caches the range map (shard-manager
//! `Router`), sends each request to the cached leader of its key's group and follows the
//! replies: "not leader" -> the hinted leader; stale map or routing error -> refresh the map;
//! no answer -> another replica at random; all within a total deadline.
//!
//! Retry semantics: reads are retried freely. `put` and `delete` are retried after a timeout
//! because applying them twice leaves the same state, but the outcome is then marked
//! ambiguous (`Outcome::ambiguous_attempts` counts the attempts that may also have applied; the
//! returned previous value may come from such an attempt's effect).
//! `cas` is never retried after an attempt that may have applied: it fails with
//! [`ClientError::Ambiguous`], and the caller reads the key to learn what happened.

mod connection;

pub use connection::CallError;

use crate::api::{ApiError, NodeStatus, Reply, Request};
use crate::config::Endpoint;
use connection::NodeConnection;
use flotilla_raft::NodeId;
use flotilla_shard_manager::{
    Attempts, KeyRange, Next, RangeMap, Reply as RouteReply, Router, Target,
};
use flotilla_storage::{Command, Response};
use flotilla_transport_quic::{TlsSetup, TransportConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Pause before retrying a node that is busy or has no leader yet.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// A node that could not be dialed is not dialed again for this long.
const REDIAL_PAUSE: Duration = Duration::from_millis(500);

/// How a client reaches a cluster.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Nodes to start from (one is enough: the map names the others).
    pub endpoints: Vec<Endpoint>,
    /// `ca.pem`, `client-<name>.pem` and `client-<name>.key`.
    pub tls_dir: PathBuf,
    /// The cluster's id.
    pub cluster_id: String,
    /// This client's certificate name.
    pub name: String,
    /// How long one attempt waits for an answer.
    pub attempt_timeout: Duration,
    /// How long a request may take in all, retries included.
    pub deadline: Duration,
}

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// Certificates missing or invalid.
    #[error("tls: {0}")]
    Tls(String),
    /// No endpoint answered with a range map.
    #[error("no endpoint reachable: {0}")]
    NoEndpoint(String),
    /// The node refused the request for good (e.g. a key over the size limit).
    #[error("refused: {0}")]
    Refused(ApiError),
    /// A compare-and-swap attempt got no answer: it may or may not have been applied.
    #[error("the outcome is unknown: the request may or may not have been applied ({0})")]
    Ambiguous(CallError),
    /// Out of time or replicas. `ambiguous_attempts`: write attempts that may have been
    /// applied.
    #[error("gave up after {attempts} attempts: {reason}{}", ambiguity(*.ambiguous_attempts))]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last reason.
        reason: String,
        /// Write attempts that got no answer (timed out, lost with their connection, or of
        /// unknown outcome): each may have been applied. 0 for a read.
        ambiguous_attempts: u32,
    },
    /// Out of time while the range's replicas answered that they knew no leader: its group
    /// could not elect one (a majority of its replicas is down or cut off).
    #[error("no leader for range {range} after {attempts} attempts{}", ambiguity(*.ambiguous_attempts))]
    NoLeader {
        /// The range's keys.
        range: KeyRange,
        /// Attempts made.
        attempts: u32,
        /// Write attempts that may have been applied, as for `Unavailable`.
        ambiguous_attempts: u32,
    },
}

impl ClientError {
    /// Write attempts that got no answer and may have been applied (`Unavailable` and
    /// `NoLeader`); 0 for every other error.
    #[must_use]
    pub fn ambiguous_attempts(&self) -> u32 {
        match self {
            Self::Unavailable {
                ambiguous_attempts, ..
            }
            | Self::NoLeader {
                ambiguous_attempts, ..
            } => *ambiguous_attempts,
            _ => 0,
        }
    }
}

/// What the attempts of one request found so far.
#[derive(Debug)]
struct Tries {
    /// Attempts made.
    count: u32,
    /// Write attempts that may have been applied.
    ambiguous: u32,
    /// Whether the last replica that answered said it knew no leader.
    no_leader: bool,
}

impl Tries {
    /// The error of a request given up for `reason` on `range`: `NoLeader` if the replicas
    /// last said they knew no leader.
    fn give_up(&self, reason: String, range: Option<KeyRange>) -> ClientError {
        match range.filter(|_| self.no_leader) {
            Some(range) => ClientError::NoLeader {
                range,
                attempts: self.count,
                ambiguous_attempts: self.ambiguous,
            },
            None => ClientError::Unavailable {
                attempts: self.count,
                reason,
                ambiguous_attempts: self.ambiguous,
            },
        }
    }
}

/// The response to a request, and how many earlier attempts may also have applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The state machine's response.
    pub response: Response,
    /// A retried write: the earlier attempts that got no answer (timed out, lost with their
    /// connection, or of unknown outcome), each of which may have applied too. 0: none.
    pub ambiguous_attempts: u32,
}

impl Outcome {
    /// Whether an earlier attempt may also have applied the write.
    #[must_use]
    pub fn is_ambiguous(&self) -> bool {
        self.ambiguous_attempts > 0
    }
}

fn ambiguity(ambiguous_attempts: u32) -> String {
    match ambiguous_attempts {
        0 => String::new(),
        1 => " (an attempt may have been applied)".to_string(),
        count => format!(" ({count} attempts may have been applied)"),
    }
}

/// The pairs of a scan across ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Key-value pairs in key order.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the limit stopped the scan with keys left.
    pub more: bool,
}

/// A cluster client; cheap to clone, and one instance serves many concurrent tasks (their
/// requests share one pipelined connection per node).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tls: TlsSetup,
    transport: TransportConfig,
    options: ClientOptions,
    router: Mutex<Router>,
    addresses: Mutex<BTreeMap<NodeId, SocketAddr>>,
    connections: Mutex<BTreeMap<NodeId, Arc<tokio::sync::Mutex<Slot>>>>,
}

#[derive(Debug, Default)]
struct Slot {
    connection: Option<Arc<NodeConnection>>,
    down_until: Option<Instant>,
}

impl Client {
    /// Loads the client's certificate and fetches the range map from the first endpoint that
    /// answers.
    ///
    /// # Errors
    /// Bad certificates, or no endpoint answered.
    pub async fn connect(options: ClientOptions) -> Result<Self, ClientError> {
        let stem = format!("client-{}", options.name);
        let tls = crate::config::load_tls(&options.tls_dir, &options.cluster_id, &stem)
            .map_err(ClientError::Tls)?;
        // A client dials with its attempt timeout; the transport's answer timeout (which only
        // its peer dials use) must not exceed it, or the configuration is refused.
        let handshake_timeout_ms = options.attempt_timeout.as_millis().max(1) as u64;
        let defaults = TransportConfig::default();
        let transport = TransportConfig {
            handshake_timeout_ms,
            dial_answer_timeout_ms: defaults.dial_answer_timeout_ms.min(handshake_timeout_ms),
            ..defaults
        };
        let addresses = options
            .endpoints
            .iter()
            .map(|endpoint| (endpoint.node, endpoint.address))
            .collect();
        let placeholder = RangeMap::uniform(1, |_| vec![NodeId(0)]);
        let seed = u64::from(std::process::id()) ^ Instant::now().elapsed().as_nanos() as u64;
        let client = Self {
            inner: Arc::new(Inner {
                tls,
                transport,
                router: Mutex::new(Router::new(placeholder, u32::MAX, seed)),
                addresses: Mutex::new(addresses),
                connections: Mutex::default(),
                options,
            }),
        };
        client.refresh_map().await?;
        Ok(client)
    }

    /// The cached range map.
    #[must_use]
    pub fn map(&self) -> RangeMap {
        lock(&self.inner.router).map().clone()
    }

    /// Every node the client knows of, with its address.
    #[must_use]
    pub fn nodes(&self) -> Vec<(NodeId, SocketAddr)> {
        lock(&self.inner.addresses)
            .iter()
            .map(|(node, address)| (*node, *address))
            .collect()
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        match self
            .execute(Command::Get { key: key.to_vec() })
            .await?
            .0
            .response
        {
            Response::Value(value) => Ok(value),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs one single-key command (get, put, delete, cas; scans go through [`Client::scan`]).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn command(&self, command: Command) -> Result<Outcome, ClientError> {
        Ok(self.execute(command).await?.0)
    }

    /// The pairs with `start <= key < end` (`end: None`: to the end), at most `limit`, across
    /// as many ranges as it takes; each range's part is linearizable.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
    ) -> Result<ScanResult, ClientError> {
        // One pair past the limit tells whether there are more.
        let wanted = limit as usize + 1;
        let mut pairs = Vec::new();
        let mut cursor = start.to_vec();
        while pairs.len() < wanted && end.is_none_or(|end| cursor.as_slice() < end) {
            let command = Command::Scan {
                start: cursor.clone(),
                end: end.map(<[u8]>::to_vec),
                limit: (wanted - pairs.len()) as u32,
            };
            let (outcome, range_end) = self.execute(command).await?;
            let Response::Scan { pairs: found, more } = outcome.response else {
                return Err(unexpected(&outcome.response));
            };
            let last = found.last().map(|(key, _)| key.clone());
            pairs.extend(found);
            cursor = match (more, last, range_end) {
                (true, Some(mut last), _) => {
                    last.push(0);
                    last
                }
                (_, _, Some(range_end)) => range_end,
                (_, _, None) => break,
            };
        }
        let more = pairs.len() > limit as usize;
        pairs.truncate(limit as usize);
        Ok(ScanResult { pairs, more })
    }

    /// The status of every node the client knows, in node order.
    pub async fn statuses(&self) -> Vec<(NodeId, Result<NodeStatus, ClientError>)> {
        let mut statuses = Vec::new();
        for (node, _) in self.nodes() {
            statuses.push((node, self.status(node).await));
        }
        statuses
    }

    /// The status of one node.
    ///
    /// # Errors
    /// The node did not answer.
    pub async fn status(&self, node: NodeId) -> Result<NodeStatus, ClientError> {
        match self
            .call(node, Request::Status, self.inner.options.attempt_timeout)
            .await
        {
            Ok(Ok(Reply::Status(status))) => Ok(status),
            Ok(Ok(_)) => Err(ClientError::Refused(ApiError::Unavailable(
                "unexpected reply".into(),
            ))),
            Ok(Err(error)) => Err(ClientError::Refused(error)),
            Err(error) => Err(unavailable(1, &error)),
        }
    }

    /// Fetches the range map and directory from the first node that answers.
    ///
    /// # Errors
    /// `NoEndpoint` listing why each node failed.
    pub async fn refresh_map(&self) -> Result<(), ClientError> {
        let mut failures = Vec::new();
        for (node, _) in self.nodes() {
            match self
                .call(node, Request::RangeMap, self.inner.options.attempt_timeout)
                .await
            {
                Ok(Ok(Reply::RangeMap { map, directory })) => {
                    let mut addresses = lock(&self.inner.addresses);
                    for peer in directory.nodes() {
                        if let Some(Ok(address)) = directory.address(peer).map(str::parse) {
                            addresses.insert(peer, address);
                        }
                    }
                    let mut router = lock(&self.inner.router);
                    if router
                        .map()
                        .ranges()
                        .any(|range| range.replicas == [NodeId(0)])
                    {
                        *router = Router::new(map, u32::MAX, u64::from(std::process::id()));
                    } else {
                        router.update_map(map);
                    }
                    return Ok(());
                }
                Ok(other) => failures.push(format!("node {}: {other:?}", node.0)),
                Err(error) => failures.push(format!("node {}: {error}", node.0)),
            }
        }
        Err(ClientError::NoEndpoint(failures.join("; ")))
    }

    /// Routes and retries one command; also returns the end of the range that served it.
    async fn execute(&self, command: Command) -> Result<(Outcome, Option<Vec<u8>>), ClientError> {
        let key = command_key(&command).to_vec();
        let deadline = Instant::now() + self.inner.options.deadline;
        let mut attempts = Attempts::default();
        let mut tries = Tries {
            count: 1,
            ambiguous: 0,
            no_leader: false,
        };
        let mut target = lock(&self.inner.router).route(&key, &mut attempts);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let reason = format!("the deadline of {:?} passed", self.inner.options.deadline);
                return Err(tries.give_up(reason, self.keys_of(&target)));
            }
            let (request, range_end) = self.request_for(&target, &command);
            let timeout = left.min(self.inner.options.attempt_timeout);
            let reply = match self.call(target.node, request, timeout).await {
                Ok(Ok(Reply::Kv(response))) => {
                    let mut router = lock(&self.inner.router);
                    router.on_reply(&key, &target, RouteReply::Done, &mut attempts);
                    return Ok((
                        Outcome {
                            response,
                            ambiguous_attempts: tries.ambiguous,
                        },
                        range_end,
                    ));
                }
                other => self.route_reply(other, &command, &mut tries).await?,
            };
            tries.count += 1;
            let next = lock(&self.inner.router).on_reply(&key, &target, reply, &mut attempts);
            target = match next {
                Next::Retry { target, .. } => target,
                Next::RefreshMap => {
                    if let Err(error) = self.refresh_map().await {
                        return Err(tries.give_up(error.to_string(), None));
                    }
                    lock(&self.inner.router).route(&key, &mut attempts)
                }
                Next::Done => continue,
                Next::Fail(error) => {
                    return Err(tries.give_up(error.to_string(), self.keys_of(&target)));
                }
            };
        }
    }

    /// What an attempt's answer other than a served command means for routing: which reply to
    /// give the router, after any pause; or the error that ends the request.
    async fn route_reply(
        &self,
        answer: Result<Result<Reply, ApiError>, CallError>,
        command: &Command,
        tries: &mut Tries,
    ) -> Result<RouteReply, ClientError> {
        let write = !matches!(command, Command::Get { .. } | Command::Scan { .. });
        Ok(match answer {
            Ok(Ok(_)) => {
                return Err(ClientError::Refused(ApiError::Unavailable(
                    "unexpected reply".into(),
                )));
            }
            Ok(Err(ApiError::NotLeader {
                leader, address, ..
            })) => {
                self.learn_address(leader, address.as_deref());
                tries.no_leader = leader.is_none();
                if leader.is_none() {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                RouteReply::NotLeader {
                    leader_hint: leader,
                }
            }
            Ok(Err(ApiError::StaleEpoch { .. } | ApiError::NotServed { .. })) => {
                tries.no_leader = false;
                RouteReply::StaleRoute
            }
            Ok(Err(ApiError::Busy | ApiError::Dropped | ApiError::Unavailable(_))) => {
                tries.no_leader = false;
                tokio::time::sleep(RETRY_PAUSE).await;
                RouteReply::NotLeader { leader_hint: None }
            }
            Ok(Err(ApiError::OutcomeUnknown)) => {
                if matches!(command, Command::CompareAndSwap { .. }) {
                    return Err(ClientError::Refused(ApiError::OutcomeUnknown));
                }
                tries.ambiguous += u32::from(write);
                RouteReply::Timeout
            }
            Ok(Err(error)) => return Err(ClientError::Refused(error)),
            Err(error @ CallError::Connect { .. }) => {
                tracing::debug!(%error, "attempt not sent");
                tokio::time::sleep(RETRY_PAUSE).await;
                RouteReply::NotLeader { leader_hint: None }
            }
            Err(error) => {
                if matches!(command, Command::CompareAndSwap { .. }) {
                    return Err(ClientError::Ambiguous(error));
                }
                tries.ambiguous += u32::from(write);
                RouteReply::Timeout
            }
        })
    }

    /// The keys of `target`'s range, as the cached map has them.
    fn keys_of(&self, target: &Target) -> Option<KeyRange> {
        let router = lock(&self.inner.router);
        router
            .map()
            .range(target.range)
            .map(|range| range.keys.clone())
    }

    /// The request for one attempt: a scan is clamped to the end of the target's range.
    fn request_for(&self, target: &Target, command: &Command) -> (Request, Option<Vec<u8>>) {
        let router = lock(&self.inner.router);
        let range_end = router
            .map()
            .range(target.range)
            .and_then(|range| range.keys.end.clone());
        let command = match command {
            Command::Scan { start, end, limit } => Command::Scan {
                start: start.clone(),
                end: match (end, &range_end) {
                    (Some(end), Some(range_end)) => Some(end.min(range_end).clone()),
                    (end, None) => end.clone(),
                    (None, range_end) => range_end.clone(),
                },
                limit: *limit,
            },
            other => other.clone(),
        };
        let request = Request::Kv {
            group: target.group,
            epoch: target.epoch,
            command,
        };
        (request, range_end)
    }

    fn learn_address(&self, leader: Option<NodeId>, address: Option<&str>) {
        if let (Some(leader), Some(Ok(address))) = (leader, address.map(str::parse)) {
            lock(&self.inner.addresses).insert(leader, address);
        }
    }

    /// Sends one request to one node, with no routing or retry (for tools and tests).
    ///
    /// # Errors
    /// The node could not be reached or did not answer within the attempt timeout.
    pub async fn request(
        &self,
        node: NodeId,
        request: Request,
    ) -> Result<Result<Reply, ApiError>, CallError> {
        self.call(node, request, self.inner.options.attempt_timeout)
            .await
    }

    /// One attempt at `node`: dial if needed, send, wait.
    async fn call(
        &self,
        node: NodeId,
        request: Request,
        timeout: Duration,
    ) -> Result<Result<Reply, ApiError>, CallError> {
        let connection = self.connection(node).await?;
        connection.call(request, timeout).await
    }

    async fn connection(&self, node: NodeId) -> Result<Arc<NodeConnection>, CallError> {
        let slot = Arc::clone(lock(&self.inner.connections).entry(node).or_default());
        let mut slot = slot.lock().await;
        if let Some(connection) = slot
            .connection
            .as_ref()
            .filter(|connection| !connection.is_closed())
        {
            return Ok(Arc::clone(connection));
        }
        let refused = |reason: &str| CallError::Connect {
            node: node.0,
            reason: reason.into(),
        };
        if slot.down_until.is_some_and(|until| Instant::now() < until) {
            return Err(refused("recently unreachable"));
        }
        let address = lock(&self.inner.addresses)
            .get(&node)
            .copied()
            .ok_or_else(|| refused("address unknown"))?;
        match NodeConnection::connect(&self.inner.tls, &self.inner.transport, node, address).await {
            Ok(connection) => {
                let connection = Arc::new(connection);
                slot.connection = Some(Arc::clone(&connection));
                slot.down_until = None;
                Ok(connection)
            }
            Err(error) => {
                slot.connection = None;
                slot.down_until = Some(Instant::now() + REDIAL_PAUSE);
                Err(error)
            }
        }
    }
}

fn command_key(command: &Command) -> &[u8] {
    match command {
        Command::Get { key } | Command::Put { key, .. } | Command::Delete { key } => key,
        Command::CompareAndSwap { key, .. } => key,
        Command::Scan { start, .. } => start,
    }
}

fn unexpected(response: &Response) -> ClientError {
    ClientError::Refused(ApiError::Unavailable(format!(
        "unexpected response {response:?}"
    )))
}

fn unavailable(attempts: u32, error: &CallError) -> ClientError {
    ClientError::Unavailable {
        attempts,
        reason: error.to_string(),
        ambiguous_attempts: 0,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
