//! The admin endpoint's HTTP/1.1 server (hyper, on a single-threaded Tokio runtime of its own
//! thread): connections are served concurrently, so a slow or idle client cannot hold up a
//! probe. GET only, answered from [`Status`] and the Prometheus handle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;

use super::Status;

/// How long a client may take to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server answers from.
struct Endpoint {
    status: Arc<Status>,
    metrics: Option<PrometheusHandle>,
}

/// Binds `address` and answers requests on a thread of its own; returns the bound address
/// (useful with port 0).
pub fn serve(
    address: SocketAddr,
    status: Arc<Status>,
    metrics: Option<PrometheusHandle>,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let endpoint = Arc::new(Endpoint { status, metrics });
    std::thread::Builder::new()
        .name("weir-admin".into())
        .spawn(move || runtime.block_on(accept(listener, endpoint)))?;
    Ok(bound)
}

async fn accept(listener: std::net::TcpListener, endpoint: Arc<Endpoint>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "The admin endpoint cannot listen.");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "Accepting an admin connection failed.");
                continue;
            }
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = endpoint.answer(request.method(), request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "Admin request failed.");
            }
        });
    }
}

impl Endpoint {
    fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let status = &self.status;
        let json = |code, value: serde_json::Value| (code, "application/json", value.to_string());
        let text = |code, body: &str| (code, "text/plain", body.to_string());
        let (code, content_type, body) = match (method, path) {
            (&Method::GET, "/metrics") => match &self.metrics {
                Some(handle) => {
                    let mut text = handle.render();
                    text.push_str(&crate::partition_gauges::render());
                    text.push_str(&super::process_metrics::render(status.started_unix));
                    (StatusCode::OK, "text/plain; version=0.0.4", text)
                }
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "metrics are not recorded here\n",
                ),
            },
            (&Method::GET, "/healthz") => match status.health() {
                (true, body) => json(StatusCode::OK, body),
                (false, body) => json(StatusCode::SERVICE_UNAVAILABLE, body),
            },
            (&Method::GET, "/readyz") if status.ready() => text(StatusCode::OK, "ready\n"),
            (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            (&Method::GET, "/plugins") => json(StatusCode::OK, status.plugins()),
            (&Method::GET, "/pipeline") => json(StatusCode::OK, status.pipeline()),
            (&Method::GET, _) => text(StatusCode::NOT_FOUND, "not found\n"),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n"),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = code;
        response.headers_mut().insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        response
    }
}
