//! The API's connections, bounded: at most `MAX_CONNECTIONS` are served at once (one more is
//! answered 503 and closed at once, never queued), a request's headers must arrive within
//! `HEADER_TIMEOUT` (a client that trickles them, or idles on a kept-alive connection, is
//! disconnected), and no connection lives longer than `MAX_CONNECTION_AGE`. So no number of idle,
//! slow or hostile clients can grow the recorder's memory or file descriptors without bound.
//! What is served is the axum router of `api`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 128;
/// How long a client may take to send a request's headers (or to start the next one).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection is kept longer than this (a client reconnects).
pub(crate) const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

const LOG_EVERY: Duration = Duration::from_secs(60);

/// Serve `app` on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, app: axum::Router) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut refused_logged: Option<Instant> = None;
    let mut refused = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                tracing::warn!("the API could not accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if refused_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                refused_logged = Some(Instant::now());
                tracing::warn!(
                    refused,
                    "the API has {MAX_CONNECTIONS} connections open: refusing more (503) until some close"
                );
            }
            // Never waits on the client: what does not fit in the socket buffer is not sent.
            let _ = stream.try_write(refusal().as_bytes());
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(MAX_CONNECTION_AGE, conn).await;
            drop(permit);
        });
    }
}

/// The whole answer to a connection over the bound.
fn refusal() -> String {
    let body = format!(
        "{{\"error\":\"the API serves at most {MAX_CONNECTIONS} connections at once: try again\"}}\n"
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_well_formed_response() {
        let text = refusal();
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("content-length");
        assert_eq!(body.len(), length);
        let v: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON body");
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("at most 128"))
        );
    }
}
