//! The JSON API on the node's HTTP listener (`/v1/kv`, `docs/http-api.md`): get, put, delete,
//! compare-and-swap and scan over HTTPS, for callers with a certificate of the cluster CA.
//! Each call is checked against `[access]` for the caller's certificate, then run through one
//! cluster client per node (`http.api_client`), which follows leader hints and retries, and
//! makes each write exactly once.

mod answer;
mod body;
mod route;
mod tls;

pub(crate) use route::PREFIX;
pub(crate) use tls::{Https, starts_tls};

use crate::api::Request as ApiRequest;
use crate::client::{Client, ClientError, ClientOptions};
use crate::config::{Endpoint, HttpSettings};
use crate::encoding::Encoding;
use crate::reply::{Reply, try_execute};
use crate::server::{Caller, Gate};
use flotilla_storage::Command;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use route::Operation;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Pairs one scan asks the cluster for at most at a time, so that a scan of large values
/// overshoots `http.scan_bytes_max` by at most this many pairs.
const SCAN_PAGE_PAIRS_MAX: u32 = 64;

/// How the request reached the listener.
#[derive(Clone, Debug)]
pub(crate) enum Access {
    /// Plain HTTP: the observe endpoints only.
    Plain,
    /// TLS without a client certificate: the observe endpoints only.
    NoCertificate,
    /// TLS with a verified client certificate: the API too.
    Certificate(Caller),
}

/// The API of one node.
#[derive(Debug)]
pub(crate) struct Gateway {
    options: ClientOptions,
    /// Made at the first call (the cluster must be up, and the certificate may be added
    /// after the node started); a failed attempt is tried again by the next call.
    client: OnceCell<Client>,
    gate: Arc<Gate>,
    body_bytes_max: usize,
    request_timeout: Duration,
    scan_pairs_max: u32,
    scan_bytes_max: usize,
}

impl Gateway {
    /// The API of a node whose cluster `endpoints` reach, with the certificates in `tls_dir`,
    /// checking callers at `gate`.
    pub(crate) fn new(
        endpoints: Vec<Endpoint>,
        (tls_dir, cluster_id): (PathBuf, &str),
        settings: &HttpSettings,
        gate: Arc<Gate>,
    ) -> Self {
        let request_timeout = Duration::from_millis(settings.request_timeout_ms);
        let mut options = ClientOptions::new(endpoints, tls_dir, cluster_id, &settings.api_client);
        options.deadline = request_timeout;
        options.attempt_timeout = options.attempt_timeout.min(request_timeout);
        Self {
            options,
            client: OnceCell::new(),
            gate,
            body_bytes_max: settings.body_bytes_max,
            request_timeout,
            scan_pairs_max: settings.scan_pairs_max,
            scan_bytes_max: settings.scan_bytes_max,
        }
    }

    /// The answer to the API request `request`, made over `access`.
    pub(crate) async fn answer(
        &self,
        request: Request<Incoming>,
        access: &Access,
    ) -> Response<Full<Bytes>> {
        let caller = match access {
            Access::Certificate(caller) => caller,
            Access::Plain => {
                return answer::error(
                    StatusCode::FORBIDDEN,
                    "the API is served over HTTPS only, to a client certificate of the \
                     cluster's CA: use https:// on this port with the client's certificate \
                     and key",
                );
            }
            Access::NoCertificate => {
                return answer::error(
                    StatusCode::FORBIDDEN,
                    "the API needs a client certificate of the cluster's CA: send the \
                     client's certificate and key (curl --cert client-NAME.pem --key \
                     client-NAME.key)",
                );
            }
        };
        let uri = request.uri().clone();
        let call = match route::route(request.method(), uri.path(), uri.query()) {
            Ok(call) => call,
            Err(error) => return answer::error(error.status(), &error.to_string()),
        };
        let name = (call.operation.name(), call.operation.key());
        // Checked before the body is read: a caller who may not write sends none we read.
        let command = self.skeleton(&call.operation);
        if let Err(denied) = self.permitted(caller, &command) {
            return answer::refused(StatusCode::FORBIDDEN, name, call.encoding, denied);
        }
        let command = match self.with_body(command, request, call.encoding).await {
            Ok(command) => command,
            Err(error) => {
                return answer::refused(error.status(), name, call.encoding, error.to_string());
            }
        };
        match self.run(command).await {
            Ok((reply, next)) => answer::done(name, &reply, call.encoding, next.as_deref()),
            Err(error) => answer::failed(name, &error, call.encoding),
        }
    }

    /// The command `operation` makes, a put's value and a compare-and-swap's values still
    /// empty (what it needs under `[access]` does not depend on them).
    fn skeleton(&self, operation: &Operation) -> Command {
        match operation {
            Operation::Get(key) => Command::Get { key: key.clone() },
            Operation::Delete(key) => Command::Delete { key: key.clone() },
            Operation::Put(key) => Command::Put {
                key: key.clone(),
                value: Vec::new(),
            },
            Operation::CompareAndSwap(key) => Command::CompareAndSwap {
                key: key.clone(),
                expected: None,
                new: None,
            },
            Operation::Scan { start, end, limit } => Command::Scan {
                start: start.clone(),
                end: end.clone(),
                limit: (*limit).min(self.scan_pairs_max),
            },
        }
    }

    /// `command` with the values of `request`'s body, for a put and a compare-and-swap.
    async fn with_body(
        &self,
        command: Command,
        request: Request<Incoming>,
        encoding: Encoding,
    ) -> Result<Command, body::BodyError> {
        let read = || body::read(request, self.body_bytes_max, self.request_timeout);
        Ok(match command {
            Command::Put { key, .. } => Command::Put {
                key,
                value: body::value(&read().await?, encoding)?,
            },
            Command::CompareAndSwap { key, .. } => {
                let swap = body::cas(&read().await?, encoding)?;
                Command::CompareAndSwap {
                    key,
                    expected: swap.expected,
                    new: swap.new,
                }
            }
            other => other,
        })
    }

    /// Whether `caller` may run `command` under `[access]`, as on the client protocol (and
    /// counted and logged with its refusals).
    fn permitted(&self, caller: &Caller, command: &Command) -> Result<(), String> {
        // The check reads only the command; the group and epoch are the cluster client's.
        let request = ApiRequest::Kv {
            group: flotilla_raft::GroupId(0),
            epoch: flotilla_shard_manager::RangeEpoch::default(),
            command: command.clone(),
        };
        self.gate
            .check(caller, &request)
            .map_err(|error| error.to_string())
    }

    /// Runs `command`: the reply, and for a scan cut short the key to continue from.
    async fn run(&self, command: Command) -> Result<(Reply, Option<Vec<u8>>), ClientError> {
        let client = self
            .client
            .get_or_try_init(|| Client::connect(self.options.clone()))
            .await?;
        match command {
            Command::Scan { start, end, limit } => {
                let deadline = Instant::now() + self.request_timeout;
                self.scan(client, (start, end.as_deref()), limit, deadline)
                    .await
            }
            command => Ok((try_execute(client, command).await?, None)),
        }
    }

    /// Up to `limit` pairs from `start` to `end`, across ranges, in pages of at most
    /// `SCAN_PAGE_PAIRS_MAX`, stopping once `http.scan_bytes_max` is reached; the key to
    /// continue from when pairs were left.
    async fn scan(
        &self,
        client: &Client,
        (start, end): (Vec<u8>, Option<&[u8]>),
        limit: u32,
        deadline: Instant,
    ) -> Result<(Reply, Option<Vec<u8>>), ClientError> {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut bytes = 0_usize;
        let mut cursor = start;
        loop {
            let wanted = (limit - pairs.len() as u32).min(SCAN_PAGE_PAIRS_MAX);
            let page = client.scan_limited(&cursor, end, wanted).await?;
            bytes += page
                .pairs
                .iter()
                .map(|(key, value)| key.len() + value.len())
                .sum::<usize>();
            pairs.extend(page.pairs);
            let Some((last, _)) = pairs.last().filter(|_| page.more) else {
                return Ok((Reply::Scan { pairs, more: false }, None));
            };
            cursor = [last.as_slice(), &[0]].concat();
            let full = pairs.len() as u32 >= limit || bytes >= self.scan_bytes_max;
            if full || Instant::now() >= deadline {
                return Ok((Reply::Scan { pairs, more: true }, Some(cursor)));
            }
        }
    }
}

/// Whether `path` is the API's (else the observe endpoints').
pub(crate) fn is_api(path: &str) -> bool {
    path.starts_with(PREFIX) || path == PREFIX.trim_end_matches('/')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_path_under_v1_is_the_apis_and_no_other() {
        for path in ["/v1", "/v1/", "/v1/kv", "/v1/kv/a", "/v1/other"] {
            assert!(is_api(path), "{path}");
        }
        for path in ["/", "/metrics", "/health", "/ready", "/v1x", "/v2/kv"] {
            assert!(!is_api(path), "{path}");
        }
    }
}
