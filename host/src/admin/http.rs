//! A minimal HTTP/1.1 server for the admin endpoint: one request per connection, GET only,
//! answered from [`Status`] and the Prometheus handle.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use super::Status;

/// Binds `address` and answers requests on a thread of its own; returns the bound address
/// (useful with port 0).
pub fn serve(
    address: SocketAddr,
    status: Arc<Status>,
    metrics: Option<PrometheusHandle>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("weir-admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &status, metrics.as_ref()) {
                    tracing::debug!(error = %e, "Admin request failed.");
                }
            }
        })?;
    Ok(bound)
}

fn answer(
    stream: TcpStream,
    status: &Status,
    metrics: Option<&PrometheusHandle>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let json = |value: serde_json::Value| (200, "application/json", value.to_string());
    let (code, content_type, body) = match (method, path) {
        ("GET", "/metrics") => match metrics {
            Some(handle) => (200, "text/plain; version=0.0.4", handle.render()),
            None => (503, "text/plain", "metrics are not recorded here\n".into()),
        },
        ("GET", "/healthz") => json(status.health()),
        ("GET", "/readyz") if status.ready() => (200, "text/plain", "ready\n".into()),
        ("GET", "/readyz") => (503, "text/plain", "not ready\n".into()),
        ("GET", "/plugins") => json(status.plugins()),
        ("GET", "/pipeline") => json(status.pipeline()),
        ("GET", _) => (404, "text/plain", "not found\n".into()),
        _ => (405, "text/plain", "only GET\n".into()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
