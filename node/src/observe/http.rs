//! The HTTP listener: `GET /` (the status page), `/metrics`, `/health` and `/ready`, HTTP/1.1
//! through hyper. It reads
//! request heads only (never a body) and answers from the published snapshot, so what a client
//! can make it hold is bounded by `[http]`: connections at once, head bytes, the time a head
//! may take and a connection's lifetime.

use super::Published;
use super::metrics::NodeMetrics;
use super::page::{Page, render};
use super::ready::readiness;
use super::requests::RequestStats;
use crate::config::HttpSettings;
use flotilla_raft::NodeId;
use http_body_util::Full;
use hyper::body::Bytes;
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

    fn answer(&self, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
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

/// Serves `listener` until the task is aborted (which ends every connection with it).
pub(crate) async fn serve(listener: TcpListener, view: Arc<View>, settings: HttpSettings) {
    let permits = Arc::new(Semaphore::new(settings.connections_max));
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
                limit = settings.connections_max,
                "HTTP connection refused: http.connections_max reached"
            );
            continue;
        };
        connections.spawn(serve_connection(
            stream,
            Arc::clone(&view),
            settings,
            permit,
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    view: Arc<View>,
    settings: HttpSettings,
    _permit: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |request| {
        let response = view.answer(&request);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms))
        // At least 8192 bytes (hyper asserts it; the configuration is validated so).
        .max_buf_size(settings.header_bytes_max);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let lifetime = Duration::from_millis(settings.connection_lifetime_ms);
    match tokio::time::timeout(lifetime, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "HTTP connection ended"),
        Err(_) => tracing::debug!("HTTP connection closed at http.connection_lifetime_ms"),
    }
}
