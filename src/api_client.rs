//! The operator API as the CLI reaches it: one HTTP client carrying the
//! bearer token, and the mapping of its answers to exit codes. A 4xx is
//! refused input (65) and prints the API's own message; a 5xx or no answer
//! at all is 1.

use std::fmt;
use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Failure;

/// How long one call may take: the API answers from the store, so anything
/// slower is an outage to report, not to wait out.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `PICKET_API_TOKEN`; its `Debug` never shows the value.
struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug)]
pub struct ApiClient {
    base: reqwest::Url,
    token: Option<Token>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the API at `base` (PICKET_API_URL); the token, if any, is
    /// read from PICKET_API_TOKEN only, never from a flag that `ps` would show.
    pub fn from_env(base: &str) -> Result<Self, Failure> {
        let base = reqwest::Url::parse(base)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| Failure::Config(anyhow!("PICKET_API_URL {base:?} is not an http(s) URL")))?;
        let token = std::env::var("PICKET_API_TOKEN").ok().filter(|t| !t.is_empty()).map(Token);
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("picket/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Runtime(anyhow!("cannot build the HTTP client: {}", e.without_url())))?;
        Ok(Self { base, token, http })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send(self.http.get(self.url(path)?)).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, Failure> {
        self.send(self.http.post(self.url(path)?).json(body)).await
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, Failure> {
        let relative = path.trim_start_matches('/');
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(relative).map_err(|e| Failure::Config(anyhow!("{path}: not a URL path: {e}")))
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, Failure> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(&token.0),
            None => request,
        };
        let unreachable = |e: reqwest::Error| {
            Failure::Runtime(anyhow!(
                "the API at {} did not answer: {}",
                self.base,
                protocol::error_chain(&e.without_url())
            ))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                Failure::Runtime(anyhow!("the API at {} answered {status} with unexpected JSON: {e}", self.base))
            });
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        let error = anyhow!("{status}: {message}");
        Err(if status.is_client_error() { Failure::Data(error) } else { Failure::Runtime(error) })
    }
}
