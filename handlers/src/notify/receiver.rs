//! A local stand-in for Slack and PagerDuty in tests: listens on 127.0.0.1,
//! records every request (when, where, what) and answers from a script.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    retry_after: Option<u64>,
    body: &'static str,
}

impl Reply {
    pub fn new(status: u16, body: &'static str) -> Self {
        Self { status, retry_after: None, body }
    }

    pub fn retry_after(self, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..self }
    }
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

struct Shared {
    script: Vec<Reply>,
    received: Mutex<Vec<Received>>,
}

/// Stops listening when dropped.
pub struct Receiver {
    base: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Receiver {
    /// Answers the n-th request with `script[n]`, and any beyond the script
    /// with its last reply.
    pub async fn start(script: Vec<Reply>) -> Self {
        assert!(!script.is_empty(), "a receiver needs at least one reply");
        let shared = Arc::new(Shared { script, received: Mutex::new(Vec::new()) });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, shared, server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(State(shared): State<Arc<Shared>>, uri: Uri, body: String) -> Response {
    let at = Instant::now();
    let reply = {
        let mut received = shared.received.lock().unwrap();
        let reply = shared.script.get(received.len()).or(shared.script.last()).cloned().unwrap();
        received.push(Received { at, path: uri.path().to_owned(), body });
        reply
    };
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    if let Some(seconds) = reply.retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
