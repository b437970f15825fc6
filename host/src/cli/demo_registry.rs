//! The demo's own schema registry (`weir demo --format avro`): serves the demo's one schema by
//! id over the Confluent API's `GET /schemas/ids/{id}`, on a free port of 127.0.0.1, while the
//! demo runs. Anything else is a 404.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Result;

/// A running registry of one schema.
pub struct DemoRegistry {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DemoRegistry {
    /// Serves the Avro `schema` as `id`.
    pub fn start(id: u32, schema: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let body = serde_json::json!({ "schema": schema }).to_string();
        let path = format!("/schemas/ids/{id}");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    // A client that goes away mid-request changes nothing for the next one.
                    let _ = answer(stream, &path, &body);
                }
            }
        });
        Ok(DemoRegistry {
            url,
            stop,
            thread: Some(thread),
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for DemoRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream` and answers it: `body` for `GET path`, else 404.
fn answer(stream: TcpStream, path: &str, body: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let found = request_line.split_whitespace().take(2).eq(["GET", path]);
    let (status, body) = if found {
        ("200 OK", body)
    } else {
        (
            "404 Not Found",
            r#"{"error_code":40403,"message":"Schema not found"}"#,
        )
    };
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
