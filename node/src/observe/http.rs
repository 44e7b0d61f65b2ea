//! The HTTP listener: `GET /` (the status page), `/metrics`, `/health` and `/ready`, HTTP/1.1
//! through hyper, plain or over TLS on the same port (a connection's first byte tells which),
//! and over TLS with a client certificate the JSON API (`crate::gateway`). The observe
//! endpoints read request heads only and answer from the published snapshot; what a client can
//! make the listener hold is bounded by `[http]`: connections at once, head bytes, the time a
//! head (or a TLS handshake) may take, a connection's lifetime, and the API's own limits.

use super::Published;
use super::metrics::NodeMetrics;
use super::page::{Page, render};
use super::ready::readiness;
use super::requests::RequestStats;
use crate::config::HttpSettings;
use crate::gateway::{self, Access, Gateway, Https};
use flotilla_raft::NodeId;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// A pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The `Content-Type` of Prometheus' OpenMetrics text, which `prometheus-client` writes.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the listener answers from.
#[derive(Debug)]
pub(crate) struct View {
    /// The node serving it.
    node: NodeId,
    published: Arc<Published>,
    registry: Registry,
    /// `/ready` fails when the driver published nothing for this long.
    stale_after: Duration,
    /// Rows per table of the status page.
    status_rows_max: usize,
}

impl View {
    /// A view of what `node` published and of `requests`; `/ready` fails once the last
    /// publication is older than `stale_after`; the status page lists `status_rows_max` rows
    /// per table.
    pub(crate) fn new(
        (node, published): (NodeId, Arc<Published>),
        requests: Arc<RequestStats>,
        stale_after: Duration,
        status_rows_max: usize,
    ) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(NodeMetrics {
            published: Arc::clone(&published),
            requests,
        }));
        Self {
            node,
            published,
            registry,
            stale_after,
            status_rows_max,
        }
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        match request.uri().path() {
            "/" => self.status_page(),
            "/metrics" => self.metrics(),
            "/health" => text(StatusCode::OK, "ok\n".into()),
            "/ready" => {
                let latest = self.published.latest();
                match readiness(latest.as_ref(), Instant::now(), self.stale_after) {
                    Ok(()) => text(StatusCode::OK, "ready\n".into()),
                    Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
                }
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /, /metrics, /health or /ready\n".into(),
            ),
        }
    }

    fn status_page(&self) -> Response<Full<Bytes>> {
        self.published.want_map();
        let latest = self.published.latest();
        let page = Page {
            node: self.node,
            snapshot: latest.as_ref(),
            readiness: readiness(latest.as_ref(), Instant::now(), self.stale_after),
            rows_max: self.status_rows_max,
        };
        let mut response = Response::new(Full::new(Bytes::from(render(&page))));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let mut body = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut body, &self.registry) {
            tracing::warn!(%error, "the metrics could not be encoded");
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"));
        }
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
        response
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What the listener serves: the observe endpoints (`view`) to everyone, and over HTTPS
/// (`https`) with a client certificate the API (`gateway`) too.
#[derive(Debug)]
pub(crate) struct Served {
    /// The status page, metrics and probes.
    pub(crate) view: Arc<View>,
    /// The TLS configuration of connections that open with a handshake.
    pub(crate) https: Arc<Https>,
    /// The JSON API.
    pub(crate) gateway: Arc<Gateway>,
    /// What a client may make the listener hold.
    pub(crate) settings: HttpSettings,
}

impl Served {
    /// The answer to `request`, made over `access`.
    async fn answer(&self, request: Request<Incoming>, access: &Access) -> Response<Full<Bytes>> {
        if gateway::is_api(request.uri().path()) {
            return self.gateway.answer(request, access).await;
        }
        self.view.answer(&request)
    }
}

/// Serves `listener` until the task is aborted (which ends every connection with it).
pub(crate) async fn serve(listener: TcpListener, served: Arc<Served>) {
    let permits = Arc::new(Semaphore::new(served.settings.connections_max));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "the HTTP listener could not accept a connection");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // Past the limit the connection is closed unread: a probe retries.
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(
                limit = served.settings.connections_max,
                "HTTP connection refused: http.connections_max reached"
            );
            continue;
        };
        connections.spawn(serve_connection(stream, Arc::clone(&served), permit));
    }
}

/// Serves one connection, plain or TLS as its first byte says, for at most
/// `http.connection_lifetime_ms`.
async fn serve_connection(stream: TcpStream, served: Arc<Served>, _permit: OwnedSemaphorePermit) {
    let settings = &served.settings;
    let lifetime = Duration::from_millis(settings.connection_lifetime_ms);
    let head_timeout = Duration::from_millis(settings.header_read_timeout_ms);
    let connection = async {
        match gateway::starts_tls(&stream, head_timeout).await {
            Some(false) => serve_http(stream, Access::Plain, &served).await,
            Some(true) => match served.https.accept(stream, head_timeout).await {
                Some((stream, access)) => serve_http(stream, access, &served).await,
                None => Ok(()),
            },
            None => Ok(()),
        }
    };
    match tokio::time::timeout(lifetime, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "HTTP connection ended"),
        Err(_) => tracing::debug!("HTTP connection closed at http.connection_lifetime_ms"),
    }
}

/// HTTP/1.1 on `stream`, every request made over `access`.
async fn serve_http<S>(stream: S, access: Access, served: &Arc<Served>) -> Result<(), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let served = Arc::clone(served);
    let settings = served.settings.clone();
    let service = hyper::service::service_fn(move |request| {
        let served = Arc::clone(&served);
        let access = access.clone();
        async move { Ok::<_, Infallible>(served.answer(request, &access).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms))
        // At least 8192 bytes (hyper asserts it; the configuration is validated so).
        .max_buf_size(settings.header_bytes_max);
    builder
        .serve_connection(TokioIo::new(stream), service)
        .await
}
