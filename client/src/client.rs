//! The client itself: starts from configured endpoints, caches the range map (shard-manager
//! `Router`), sends each request to the cached leader of its key's group and follows the
//! replies: "not leader" -> the hinted leader; stale map or routing error -> refresh the map;
//! no answer -> another replica at random; all within a total deadline.
//!
//! Exactly once: every write (put, delete, compare-and-swap) goes in a session of its range
//! (`sessions.rs`; `docs/protocol/sessions.md`) and carries the same (session, sequence) on
//! every attempt, so the client retries it after any failure, a timeout included, and the
//! range applies it at most once: an acknowledged write was applied exactly once, and its
//! answer is that application's. A write fails with [`ClientError::OutcomeUnknown`] only when
//! an attempt may have applied it and then the deadline passed or its session expired in the
//! range; it was then applied once or not at all. Reads are retried freely.

#[cfg(feature = "nemesis")]
mod nemesis;
mod operator;

use crate::attempts::{Kind, Outcome as AttemptOutcome, Stop, Tries, Verdict};
use crate::config::ClientConfig;
use crate::connection::{CallError, NodeConnection};
use crate::endpoint::Endpoint;
use crate::error::{ClientError, MapFailure};
use crate::scan::Scan;
use crate::sessions::{NoTag, SessionBook};
use flotilla_api::{ApiError, Command, Reply, Request, Response, SessionTag};
use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::{
    Attempts, Directory, Next, RangeMap, Reply as RouteReply, Router, Target,
};
use flotilla_transport_quic::{TlsSetup, TransportConfig};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A client that may not open the session a write needs may not make that write: the refusal
/// names the command ("may not put"), not the session it would have taken.
fn denied_as(error: ClientError, command: &Command) -> ClientError {
    match error {
        ClientError::Refused(ApiError::PermissionDenied { who, .. }) => {
            let action = command.action().to_owned();
            ClientError::Refused(ApiError::PermissionDenied { who, action })
        }
        other => other,
    }
}

/// The response to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The state machine's response; for a write, that of its one application.
    pub response: Response,
}

/// What a compare-and-swap did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the key had the expected value and now has the new one.
    pub swapped: bool,
    /// The value the key had before (`None`: absent), so a caller can try again without a read.
    pub current: Option<Vec<u8>>,
}

/// One page of a scan, from one range.
#[derive(Debug)]
pub(crate) struct ScanPage {
    /// Key-value pairs in key order.
    pub(crate) pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the range has more pairs past the page.
    pub(crate) more: bool,
    /// The end of the range that answered (`None`: the last range).
    pub(crate) range_end: Option<Vec<u8>>,
}

impl ScanPage {
    /// Where the scan goes on after this page: just past its last key if the range has more,
    /// else at the next range; `None` when this was the last range.
    pub(crate) fn next_start(&self) -> Option<Vec<u8>> {
        match (self.more, self.pairs.last()) {
            (true, Some((last, _))) => {
                let mut next = last.clone();
                next.push(0);
                Some(next)
            }
            _ => self.range_end.clone(),
        }
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
    options: ClientConfig,
    router: Mutex<Router>,
    /// Where each known node listens (`host:port`), as an endpoint or the directory says.
    addresses: Mutex<BTreeMap<NodeId, String>>,
    connections: Mutex<BTreeMap<NodeId, Arc<tokio::sync::Mutex<Slot>>>>,
    sessions: Mutex<SessionBook>,
    /// One lock per group, so concurrent writes that find no session open one, not one each.
    openers: Mutex<BTreeMap<GroupId, Arc<tokio::sync::Mutex<()>>>>,
    #[cfg(feature = "nemesis")]
    nemesis: Mutex<nemesis::Faults>,
}

#[derive(Debug, Default)]
struct Slot {
    /// The open connection and the address (`host:port`, as known then) it was dialed at.
    connection: Option<(Arc<NodeConnection>, String)>,
    down_until: Option<Instant>,
}

impl Client {
    /// Loads the client's certificate and fetches the range map from the configured
    /// endpoints, starting at one chosen at random, until one answers. An endpoint without a
    /// node id is dialed as whichever node of the cluster listens there (its certificate names
    /// it).
    ///
    /// # Errors
    /// A configuration that breaks a rule, bad certificates, or no endpoint answered.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        let stem = format!("client-{}", config.name);
        let tls = crate::tls::load_tls(&config.tls_dir, &config.cluster_id, &stem)?;
        let addresses = config
            .endpoints
            .iter()
            .filter_map(|endpoint| Some((endpoint.node?, endpoint.address())))
            .collect();
        let placeholder = RangeMap::uniform(1, |_| vec![NodeId(0)]);
        let client = Self {
            inner: Arc::new(Inner {
                tls,
                transport: transport_config(config.attempt_timeout),
                router: Mutex::new(Router::new(placeholder, u32::MAX, random_seed())),
                addresses: Mutex::new(addresses),
                connections: Mutex::default(),
                sessions: Mutex::default(),
                openers: Mutex::default(),
                #[cfg(feature = "nemesis")]
                nemesis: Mutex::default(),
                options: config,
            }),
        };
        client.first_map().await?;
        Ok(client)
    }

    /// Fetches the first range map from the configured endpoints, starting at a random one,
    /// from the first node that answers (its replica's map: the meta group need not have a
    /// leader for a client to start; the first refresh reads it linearizably).
    async fn first_map(&self) -> Result<(), ClientError> {
        let endpoints = &self.inner.options.endpoints;
        let mut failures = Vec::new();
        for endpoint in rotated(endpoints) {
            let node = match endpoint.node {
                Some(node) => node,
                None => match self.dial_unnamed(endpoint).await {
                    Ok(node) => node,
                    Err(error) => {
                        let endpoint = endpoint.to_string();
                        failures.push(MapFailure::Dial { endpoint, error });
                        continue;
                    }
                },
            };
            match self.fetch_map(node, Request::RangeMap).await {
                Ok(()) => return Ok(()),
                Err(failure) => failures.push(failure),
            }
        }
        Err(ClientError::NoEndpoint(failures))
    }

    /// Dials the node at an endpoint given without its id, learns the id from its
    /// certificate, and keeps the connection and the address for it.
    async fn dial_unnamed(&self, endpoint: &Endpoint) -> Result<NodeId, CallError> {
        let address = endpoint.address();
        let resolved = resolve(&address).await.map_err(|reason| CallError::Dial {
            address: address.clone(),
            reason,
        })?;
        let (connection, node) = NodeConnection::connect_to_any_node(
            &self.inner.tls,
            &self.inner.transport,
            &address,
            resolved,
        )
        .await?;
        lock(&self.inner.addresses).insert(node, address.clone());
        let slot = Arc::clone(lock(&self.inner.connections).entry(node).or_default());
        slot.lock().await.connection = Some((Arc::new(connection), address));
        Ok(node)
    }

    /// The cached range map.
    #[must_use]
    pub fn map(&self) -> RangeMap {
        lock(&self.inner.router).map().clone()
    }

    /// Every node the client knows of, with its address (`host:port`).
    #[must_use]
    pub fn nodes(&self) -> Vec<(NodeId, String)> {
        lock(&self.inner.addresses)
            .iter()
            .map(|(node, address)| (*node, address.clone()))
            .collect()
    }

    /// The value of `key` (`None`: absent); a linearizable read.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ClientError> {
        let key = key.as_ref().to_vec();
        match self.read(Command::Get { key }).await?.0 {
            Response::Value(value) => Ok(value),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets `key` to `value`, exactly once; returns the value it replaced.
    ///
    /// # Errors
    /// See [`ClientError`]; after [`ClientError::OutcomeUnknown`] the put was applied once or
    /// not at all.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let (key, value) = (key.as_ref().to_vec(), value.as_ref().to_vec());
        written(self.command(Command::Put { key, value }).await?.response)
    }

    /// Removes `key`, exactly once; returns the value it had.
    ///
    /// # Errors
    /// See [`ClientError`]; after [`ClientError::OutcomeUnknown`] the delete was applied once
    /// or not at all.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ClientError> {
        let key = key.as_ref().to_vec();
        written(self.command(Command::Delete { key }).await?.response)
    }

    /// Sets `key` to `new` (removes it if `None`) only if its value is `expected` (`None`: only
    /// if it is absent), exactly once; says whether it swapped, and the value it found.
    ///
    /// # Errors
    /// See [`ClientError`]; after [`ClientError::OutcomeUnknown`] the swap was applied once or
    /// not at all.
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<CasOutcome, ClientError> {
        let command = Command::CompareAndSwap {
            key: key.as_ref().to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.map(<[u8]>::to_vec),
        };
        match self.command(command).await?.response {
            Response::CompareAndSwap { swapped, current } => Ok(CasOutcome { swapped, current }),
            other => Err(unexpected(&other)),
        }
    }

    /// The pairs whose keys lie in `keys`, in key order, across as many ranges as it takes,
    /// fetched a page at a time as [`Scan`] is read; each page is a linearizable read of one
    /// range.
    ///
    /// ```no_run
    /// # async fn pairs(client: &flotilla_client::Client) -> Result<(), flotilla_client::ClientError> {
    /// let mut scan = client.scan(b"user/".to_vec()..b"user0".to_vec());
    /// while let Some((key, value)) = scan.next().await? {
    ///     println!("{key:?} = {value:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn scan(&self, keys: impl RangeBounds<Vec<u8>>) -> Scan {
        Scan::new(self.clone(), keys)
    }

    /// Runs one single-key command (get, put, delete, cas; scans go through [`Client::scan`]).
    /// A write is applied exactly once when this returns `Ok`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn command(&self, command: Command) -> Result<Outcome, ClientError> {
        if matches!(command, Command::Get { .. } | Command::Scan { .. }) {
            let (response, _) = self.read(command).await?;
            return Ok(Outcome { response });
        }
        #[cfg(feature = "nemesis")]
        if !lock(&self.inner.nemesis).sessions {
            return self.write_without_session(command).await;
        }
        self.write(command).await
    }

    /// One page of a scan: at most `limit` pairs from `start` on, below `end`, from the one
    /// range that holds `start`; also whether that range has more past the page, and where
    /// the range ends (`None`: the last range).
    pub(crate) async fn scan_page(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
    ) -> Result<ScanPage, ClientError> {
        let command = Command::Scan {
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            limit,
        };
        let (response, range_end) = self.read(command).await?;
        let Response::Scan { pairs, more } = response else {
            return Err(unexpected(&response));
        };
        Ok(ScanPage {
            pairs,
            more,
            range_end,
        })
    }

    /// The pairs with `start <= key < end` (`end: None`: to the end), at most `limit`, across
    /// as many ranges as it takes; each range's part is linearizable.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn scan_limited(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
    ) -> Result<ScanResult, ClientError> {
        // One pair past the limit tells whether there are more.
        let wanted = u64::from(limit) + 1;
        let mut pairs = Vec::new();
        let mut cursor = start.to_vec();
        while (pairs.len() as u64) < wanted && end.is_none_or(|end| cursor.as_slice() < end) {
            let page = self
                .scan_page(&cursor, end, page_limit(wanted, pairs.len()))
                .await?;
            let next = page.next_start();
            pairs.extend(page.pairs);
            match next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        let more = pairs.len() > limit as usize;
        pairs.truncate(limit as usize);
        Ok(ScanResult { pairs, more })
    }

    /// Fetches the range map and directory, read linearizably from the meta group's leader
    /// (`call_meta_leader`: each node in turn, following the leader a refusal names), so the
    /// map holds every change recorded before the call. With no leader to answer, from the
    /// first node that answers from its own replica, starting at a random one (which may lag;
    /// a cached map newer than what comes is kept).
    ///
    /// # Errors
    /// `NoEndpoint` listing why each node failed to answer from its replica.
    pub async fn refresh_map(&self) -> Result<(), ClientError> {
        match self.call_meta_leader(Request::RangeMapRead).await {
            Ok(Reply::RangeMap { map, directory }) => {
                self.install_map(map, &directory);
                return Ok(());
            }
            Ok(other) => tracing::debug!(?other, "a linearizable map read answered otherwise"),
            Err(error) => tracing::debug!(%error, "no meta leader answered the map read"),
        }
        let mut failures = Vec::new();
        for (node, _) in rotated(&self.nodes()) {
            match self.fetch_map(*node, Request::RangeMap).await {
                Ok(()) => return Ok(()),
                Err(failure) => failures.push(failure),
            }
        }
        Err(ClientError::NoEndpoint(failures))
    }

    /// Asks `node` for the range map and directory (`request`: `RangeMapRead` or `RangeMap`),
    /// and takes them.
    async fn fetch_map(&self, node: NodeId, request: Request) -> Result<(), MapFailure> {
        let timeout = self.inner.options.attempt_timeout;
        match self.call(node, request, timeout).await {
            Ok(Ok(Reply::RangeMap { map, directory })) => {
                self.install_map(map, &directory);
                Ok(())
            }
            Ok(Ok(_)) => Err(MapFailure::Unexpected { node: node.0 }),
            Ok(Err(error)) => Err(MapFailure::Refused {
                node: node.0,
                error,
            }),
            Err(error) => Err(MapFailure::Call {
                node: node.0,
                error,
            }),
        }
    }

    /// Takes a range map and the addresses its directory gives.
    fn install_map(&self, map: RangeMap, directory: &Directory) {
        let mut addresses = lock(&self.inner.addresses);
        for peer in directory.nodes() {
            if let Some(address) = directory.address(peer) {
                addresses.insert(peer, address.to_owned());
            }
        }
        let mut router = lock(&self.inner.router);
        if router
            .map()
            .ranges()
            .any(|range| range.replicas == [NodeId(0)])
        {
            *router = Router::new(map, u32::MAX, random_seed());
        } else {
            router.update_map(map);
        }
    }

    /// Routes and retries one read; also returns the end of the range that served it.
    async fn read(&self, command: Command) -> Result<(Response, Option<Vec<u8>>), ClientError> {
        let key = command_key(&command).to_vec();
        let deadline = Instant::now() + self.inner.options.deadline;
        let answered = self
            .attempt_loop(&key, Kind::Idempotent, deadline, |target| {
                self.read_request(target, &command)
            })
            .await
            .map_err(stop_error)?;
        Ok((answered.response, answered.range_end))
    }

    /// A write in a session of its range, retried with one tag until answered. A range that no
    /// longer knows the session refused it: if no attempt may have applied it, it goes again in
    /// a new session; otherwise its outcome is unknown.
    async fn write(&self, command: Command) -> Result<Outcome, ClientError> {
        let key = command_key(&command).to_vec();
        let deadline = Instant::now() + self.inner.options.deadline;
        loop {
            let tag = self
                .tag_for(&key, deadline)
                .await
                .map_err(|error| denied_as(error, &command))?;
            let result = self
                .attempt_loop(&key, Kind::Tagged, deadline, |target| Request::Write {
                    group: target.group,
                    epoch: target.epoch,
                    tag: lock(&self.inner.sessions).refresh(tag),
                    command: command.clone(),
                })
                .await;
            lock(&self.inner.sessions).finish(tag);
            let answered = result.map_err(stop_error)?;
            match answered.response {
                Response::SessionExpired { session } => {
                    lock(&self.inner.sessions).expired(session);
                    if answered.maybe_applied {
                        return Err(ClientError::OutcomeUnknown {
                            attempts: answered.attempts,
                            reason: format!("{session} expired in the range"),
                        });
                    }
                }
                Response::Retired { sequence } => {
                    // The range has its client awaiting no more than a later write: a bug.
                    return Err(ClientError::OutcomeUnknown {
                        attempts: answered.attempts,
                        reason: format!("the range retired sequence {sequence} while awaited"),
                    });
                }
                response => return Ok(Outcome { response }),
            }
        }
    }

    /// A tag for a new write on `key`: a sequence in the session of its range, opening one if
    /// the client has none there, waiting while the session's window is full.
    async fn tag_for(&self, key: &[u8], deadline: Instant) -> Result<SessionTag, ClientError> {
        loop {
            if Instant::now() >= deadline {
                return Err(ClientError::Unavailable {
                    attempts: 0,
                    reason: "the deadline passed before the write could be sent".into(),
                });
            }
            let group = lock(&self.inner.router).map().lookup(key).group;
            let issued = lock(&self.inner.sessions).issue(group);
            match issued {
                Ok(tag) => return Ok(tag),
                Err(NoTag::NoSession) => self.open_session(key, group, deadline).await?,
                Err(NoTag::WindowFull) => tokio::time::sleep(self.inner.options.retry_pause).await,
            }
        }
    }

    /// Opens a session in `group` (the range of `key`) unless another task just did.
    async fn open_session(
        &self,
        key: &[u8],
        group: GroupId,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        let opener = Arc::clone(lock(&self.inner.openers).entry(group).or_default());
        let _opening = opener.lock().await;
        if lock(&self.inner.sessions).holds(group) {
            return Ok(());
        }
        // Opening twice only leaves a session unused (it expires): retried like a read.
        let answered = self
            .attempt_loop(key, Kind::Idempotent, deadline, |target| {
                Request::OpenSession {
                    group: target.group,
                    epoch: target.epoch,
                }
            })
            .await
            .map_err(stop_error)?;
        match answered.response {
            Response::SessionOpened { session, limits } => {
                lock(&self.inner.sessions).opened(session, limits);
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Sends attempts of one request until one is answered: "not leader" -> the hinted leader;
    /// a stale map or routing error -> refresh the map; no answer -> another replica, unless
    /// `kind` says the request may not be sent again after an attempt that may have applied.
    async fn attempt_loop(
        &self,
        key: &[u8],
        kind: Kind,
        deadline: Instant,
        request: impl Fn(&Target) -> Request,
    ) -> Result<Answered, Stop> {
        let mut attempts = Attempts::default();
        let mut tries = Tries::default();
        let mut target = lock(&self.inner.router).route(key, &mut attempts);
        loop {
            tries.attempt();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let reason = format!("the deadline of {:?} passed", self.inner.options.deadline);
                return Err(tries.give_up_on(reason, Some(target.keys.clone())));
            }
            let attempt = request(&target);
            let timeout = left.min(self.inner.options.attempt_timeout);
            let reply = self.call(target.node, attempt.clone(), timeout).await;
            #[cfg(feature = "nemesis")]
            let reply = self.lose_answer(&attempt, reply);
            #[cfg(feature = "nemesis")]
            self.after_attempt(key, &attempt, &reply);
            let route_reply = match tries.judge(kind, self.outcome(reply)) {
                Verdict::Done(response) => {
                    let mut router = lock(&self.inner.router);
                    router.on_reply(key, &target, RouteReply::Done, &mut attempts);
                    return Ok(Answered {
                        response,
                        range_end: target.keys.end.clone(),
                        attempts: tries.count(),
                        maybe_applied: tries.maybe_applied(),
                    });
                }
                Verdict::Stop(stop) => return Err(stop),
                Verdict::Retry { route, pause } => {
                    if pause {
                        tokio::time::sleep(self.inner.options.retry_pause).await;
                    }
                    route
                }
            };
            target = self
                .next_target(key, &target, route_reply, &mut attempts)
                .await
                .map_err(|reason| tries.give_up(reason))?;
        }
    }

    /// One attempt's reply as the attempt rules see it; a leader's address a refusal names is
    /// learned on the way.
    fn outcome(&self, reply: Result<Result<Reply, ApiError>, CallError>) -> AttemptOutcome {
        match reply {
            Ok(answer) => {
                if let Err(ApiError::NotLeader {
                    leader, address, ..
                }) = &answer
                {
                    self.learn_address(*leader, address.as_deref());
                }
                AttemptOutcome::Answered(answer)
            }
            Err(error @ (CallError::Connect { .. } | CallError::Dial { .. })) => {
                tracing::debug!(%error, "attempt not sent");
                AttemptOutcome::NotSent
            }
            Err(error) if error.is_final_and_not_sent() => AttemptOutcome::Unsendable(error),
            Err(error) => AttemptOutcome::NoAnswer {
                reason: error.to_string(),
            },
        }
    }

    /// Where the next attempt goes after `reply`, refreshing the map if the router asks.
    async fn next_target(
        &self,
        key: &[u8],
        target: &Target,
        reply: RouteReply,
        attempts: &mut Attempts,
    ) -> Result<Target, String> {
        let next = lock(&self.inner.router).on_reply(key, target, reply, attempts);
        match next {
            Next::Retry { target, pause, .. } => {
                if pause {
                    tokio::time::sleep(self.inner.options.retry_pause).await;
                }
                Ok(target)
            }
            Next::RefreshMap => {
                // A map no node answered for is no reason to give up: the request goes on with
                // the cached one until its deadline.
                if let Err(error) = self.refresh_map().await {
                    tracing::debug!(%error, "the range map could not be refreshed");
                }
                Ok(lock(&self.inner.router).route(key, attempts))
            }
            // `Done` answers `RouteReply::Done` only, which the loop returns on before.
            Next::Done => Ok(target.clone()),
            Next::Fail(error) => Err(error.to_string()),
        }
    }

    /// The request for one attempt of a read: a scan is clamped to the end of the target's
    /// range.
    fn read_request(&self, target: &Target, command: &Command) -> Request {
        let range_end = &target.keys.end;
        let command = match command {
            Command::Scan { start, end, limit } => Command::Scan {
                start: start.clone(),
                end: match (end, range_end) {
                    (Some(end), Some(range_end)) => Some(end.min(range_end).clone()),
                    (end, None) => end.clone(),
                    (None, range_end) => range_end.clone(),
                },
                limit: *limit,
            },
            other => other.clone(),
        };
        Request::Kv {
            group: target.group,
            epoch: target.epoch,
            command,
        }
    }

    fn learn_address(&self, leader: Option<NodeId>, address: Option<&str>) {
        if let (Some(leader), Some(address)) = (leader, address.filter(|text| !text.is_empty())) {
            lock(&self.inner.addresses).insert(leader, address.to_owned());
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
        let refused = |reason: &str| CallError::Connect {
            node: node.0,
            reason: reason.into(),
        };
        let address = lock(&self.inner.addresses)
            .get(&node)
            .cloned()
            .ok_or_else(|| refused("address unknown"))?;
        // A node that moved is dialed at its new address: the connection to the old one
        // would only time out (no peer there answers it, not even with a reset).
        if let Some((connection, _)) = slot
            .connection
            .as_ref()
            .filter(|(connection, dialed)| !connection.is_closed() && *dialed == address)
        {
            return Ok(Arc::clone(connection));
        }
        if slot.down_until.is_some_and(|until| Instant::now() < until) {
            return Err(refused("recently unreachable"));
        }
        // A host name is resolved at every dial, so a node that moved to a new IP under its
        // name is found there.
        let dialed = match resolve(&address).await {
            Ok(resolved) => {
                NodeConnection::connect(&self.inner.tls, &self.inner.transport, node, resolved)
                    .await
            }
            Err(reason) => Err(refused(&reason)),
        };
        match dialed {
            Ok(connection) => {
                let connection = Arc::new(connection);
                slot.connection = Some((Arc::clone(&connection), address));
                slot.down_until = None;
                Ok(connection)
            }
            Err(error) => {
                slot.connection = None;
                slot.down_until = Some(Instant::now() + self.inner.options.redial_pause);
                Err(error)
            }
        }
    }
}

/// The transport settings of a client that waits `attempt_timeout` for an attempt.
fn transport_config(attempt_timeout: Duration) -> TransportConfig {
    // A client dials with its attempt timeout; the transport's answer timeout (which only
    // its peer dials use) must not exceed it, or the configuration is refused.
    let handshake_timeout_ms = u64::try_from(attempt_timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let defaults = TransportConfig::default();
    TransportConfig {
        handshake_timeout_ms,
        dial_answer_timeout_ms: defaults.dial_answer_timeout_ms.min(handshake_timeout_ms),
        ..defaults
    }
}

/// The first address `address` (`host:port`) resolves to.
async fn resolve(address: &str) -> Result<SocketAddr, String> {
    let mut resolved = tokio::net::lookup_host(address)
        .await
        .map_err(|error| format!("{address} does not resolve: {error}"))?;
    resolved
        .next()
        .ok_or_else(|| format!("{address} resolves to no address"))
}

/// A random number, different in every client: the router's seed, and where a client starts.
/// (The std hasher's keys are random per process, and per `RandomState` after the first.)
fn random_seed() -> u64 {
    RandomState::new().hash_one(Instant::now())
}

/// `items` from a random one on, wrapping around: each client starts at another node.
fn rotated<T>(items: &[T]) -> impl Iterator<Item = &T> {
    let start = usize::try_from(random_seed() % items.len().max(1) as u64).unwrap_or(0);
    items.iter().cycle().skip(start).take(items.len())
}

/// The limit of the next page of a scan that wants `wanted` pairs and has `found`: what is
/// left, saturated at `u32::MAX`. (Cast, the `limit + 1` of a `u32::MAX` scan wrapped to 0
/// and the scan answered no pairs and `more: false`.)
fn page_limit(wanted: u64, found: usize) -> u32 {
    let left = wanted.saturating_sub(found as u64);
    u32::try_from(left).unwrap_or(u32::MAX)
}

fn command_key(command: &Command) -> &[u8] {
    command.key()
}

/// The value a put or a delete replaced.
fn written(response: Response) -> Result<Option<Vec<u8>>, ClientError> {
    match response {
        Response::Written { previous } => Ok(previous),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(response: &Response) -> ClientError {
    ClientError::Refused(ApiError::Unavailable(format!(
        "unexpected response {response:?}"
    )))
}

/// The error a stopped request reports.
fn stop_error(stop: Stop) -> ClientError {
    match stop {
        Stop::Refused(error) => ClientError::Refused(error),
        Stop::NotSent(error) => ClientError::NotSent(error),
        Stop::NoLeader { range, attempts } => ClientError::NoLeader { range, attempts },
        Stop::GaveUp {
            attempts,
            reason,
            maybe_applied: true,
        } => ClientError::OutcomeUnknown { attempts, reason },
        Stop::GaveUp {
            attempts, reason, ..
        } => ClientError::Unavailable { attempts, reason },
    }
}

/// An answered request and how it got there.
#[derive(Debug)]
struct Answered {
    response: Response,
    /// The end of the range that answered (a scan goes on from there).
    range_end: Option<Vec<u8>>,
    attempts: u32,
    /// Whether an earlier attempt got no answer: for a write, it may have applied too (for a
    /// write in a session, only as this answer's one application).
    maybe_applied: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use flotilla_transport_quic::{ClusterCa, ClusterId, QuicTransport, TlsAlert, Transport};

    #[test]
    fn a_scan_page_limit_saturates_instead_of_wrapping() {
        let wanted = |limit: u32| u64::from(limit) + 1;
        assert_eq!(page_limit(wanted(u32::MAX), 0), u32::MAX);
        assert_eq!(page_limit(wanted(u32::MAX), 10), u32::MAX - 9);
        assert_eq!(page_limit(wanted(10), 0), 11);
        assert_eq!(page_limit(wanted(10), 11), 0);
        assert_eq!(page_limit(wanted(0), 0), 1);
    }

    const CLUSTER: &str = "alert-test";

    /// A node of `CLUSTER` on loopback, trusting `ca`.
    async fn node(ca: &ClusterCa) -> QuicTransport {
        let tls = TlsSetup {
            cluster: ca.cluster().clone(),
            ca: ca.certificate(),
            identity: ca.node_identity(NodeId(1)).unwrap(),
        };
        let address = "127.0.0.1:0".parse().unwrap();
        QuicTransport::bind(NodeId(1), address, tls, TransportConfig::default())
            .await
            .unwrap()
    }

    /// A client of another CA than the node's: the node refuses it in the TLS handshake, and
    /// the client says so, naming the alert, instead of "the connection closed before the
    /// answer". A real handshake, in process.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_refused_by_the_node_names_the_tls_alert() {
        let cluster = ClusterId::new(CLUSTER).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (node_dir, other_dir) = (dir.path().join("node"), dir.path().join("other"));
        flotilla_transport_quic::write_dev_certs(&node_dir, &cluster, &[NodeId(1)], &[]).unwrap();
        flotilla_transport_quic::write_dev_certs(&other_dir, &cluster, &[], &["ops"]).unwrap();
        // The client trusts the node's CA (it accepts the node), but its own certificate is
        // from another CA.
        std::fs::copy(node_dir.join("ca.pem"), other_dir.join("ca.pem")).unwrap();
        let tls = crate::tls::load_tls(&node_dir, CLUSTER, "node-1").unwrap();
        let address = "127.0.0.1:0".parse().unwrap();
        let node = QuicTransport::bind(NodeId(1), address, tls, TransportConfig::default())
            .await
            .unwrap();
        let endpoint = Endpoint {
            node: Some(NodeId(1)),
            ..Endpoint::from(node.local_address().unwrap())
        };
        let options = ClientConfig::new(vec![endpoint], other_dir, CLUSTER, "ops");
        let error = Client::connect(options).await.unwrap_err();
        let ClientError::NoEndpoint(failures) = &error else {
            panic!("expected no endpoint, got {error}");
        };
        let [MapFailure::Call { error: call, .. }] = failures.as_slice() else {
            panic!("expected one failed call, got {error}");
        };
        assert!(
            matches!(
                call,
                CallError::Refused {
                    alert: TlsAlert { code: 48, .. },
                    ..
                }
            ),
            "{call:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("node 1 refused this client's connection")
                && message.contains("TLS alert unknown_ca (48)"),
            "{message}"
        );
        // The node counts it (by reason) once its side of the handshake has ended.
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.counters().refused_unknown_ca == 0 {
            assert!(
                Instant::now() < deadline,
                "the node did not count the refusal"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(node.counters().refused_unknown_ca, 1);
    }

    /// An expired client certificate is named as expired, and a request on the refused
    /// connection is a final error that was not sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_client_certificate_is_named_and_final() {
        let ca = ClusterCa::generate(&ClusterId::new(CLUSTER).unwrap()).unwrap();
        let node = node(&ca).await;
        let now = time::OffsetDateTime::now_utc();
        let expired = ca
            .sign(
                &format!("client-ops.{CLUSTER}"),
                now - time::Duration::days(10),
                now - time::Duration::days(1),
            )
            .unwrap();
        let tls = TlsSetup {
            cluster: ca.cluster().clone(),
            ca: ca.certificate(),
            identity: expired,
        };
        let address = node.local_address().unwrap();
        let config = TransportConfig::default();
        let answer = async {
            let connection = NodeConnection::connect(&tls, &config, NodeId(1), address).await?;
            connection
                .call(Request::RangeMap, Duration::from_secs(10))
                .await
        };
        let error = answer.await.unwrap_err();
        assert!(error.is_final_and_not_sent(), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("TLS alert certificate_expired (45)"),
            "{message}"
        );
    }
}
